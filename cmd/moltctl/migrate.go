package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/engine"
	"github.com/moltctl/moltctl/internal/migrate"
)

type migrateOptions struct {
	dryRun      bool
	json        bool
	owner       string
	volumeNames []string
	services    []string
}

func newMigrateCmd(g *globalOptions) *cobra.Command {
	o := &migrateOptions{}
	cmd := &cobra.Command{
		Use:   "migrate --dry-run [OPTIONS] [SERVICE...]",
		Short: "Move host directory bind mounts into named volumes (plan with --dry-run)",
		Long: `migrate turns every host directory bind mount of the project (or of the given
services) into a named volume owned by the user the service runs as, and rewrites
the compose files that declare the mounts. With --dry-run it prints the plan and the
diff of every compose file that would change, and changes nothing.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.services = args
			return runMigrate(cmd, g, o)
		},
		ValidArgsFunction: func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
			project, err := compose.Load(cmd.Context(), g.compose)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return project.ServiceNames(), cobra.ShellCompDirectiveNoFileComp
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan and the compose file diff, change nothing")
	f.BoolVar(&o.json, "json", false, "print the plan as JSON")
	f.StringVar(&o.owner, "owner", "", "owner of the migrated data: uid:gid or user[:group] of the image (default: the service's user, else the image's USER, else the directory's owner)")
	f.StringArrayVar(&o.volumeNames, "volume-name", nil, "volume key for a host directory, SOURCE=KEY (repeatable)")
	return cmd
}

func runMigrate(cmd *cobra.Command, g *globalOptions, o *migrateOptions) error {
	if !o.dryRun {
		return errors.New("migrate: only --dry-run is implemented so far")
	}
	names := map[string]string{}
	for _, nv := range o.volumeNames {
		src, key, ok := strings.Cut(nv, "=")
		if !ok || src == "" || key == "" {
			return fmt.Errorf("migrate: --volume-name %q: want SOURCE=KEY", nv)
		}
		names[src] = key
	}
	ctx := cmd.Context()
	project, err := compose.Load(ctx, g.compose)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var eng migrate.Engine
	c, connErr := engine.Connect(ctx, g.engine)
	if connErr == nil {
		defer c.Close()
		eng = c
	}
	plan, err := migrate.Prepare(ctx, eng, project, migrate.PlanOptions{
		Services: o.services, Owner: o.owner, VolumeNames: names,
	})
	if err != nil {
		if errors.Is(err, migrate.ErrNoEngine) {
			return fmt.Errorf("migrate: %w (%v)", err, connErr)
		}
		return fmt.Errorf("migrate: %w", err)
	}
	w := cmd.OutOrStdout()
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	}
	printPlan(w, plan)
	return nil
}

func printPlan(w io.Writer, p *migrate.Plan) {
	fmt.Fprintf(w, "Project %s: %d director%s to convert into named volumes, %d bind mount%s kept.\n",
		p.Project, len(p.Conversions), plural(len(p.Conversions), "y", "ies"), len(p.Kept), plural(len(p.Kept), "", "s"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(p.Conversions) > 0 {
		fmt.Fprintln(tw, "\nSOURCE\tVOLUME\tOWNER\tSERVICE:TARGET")
		for _, c := range p.Conversions {
			vol := c.Volume + " (" + c.Name + ")"
			if c.Empty {
				vol += " nocopy"
			}
			for i, m := range c.Mounts {
				st := m.Service + ":" + m.Target
				if m.ReadOnly {
					st += ":ro"
				}
				if i == 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Source, vol, c.Owner, st)
				} else {
					fmt.Fprintf(tw, "\t\t\t%s\n", st)
				}
			}
		}
	}
	if len(p.Kept) > 0 {
		fmt.Fprintln(tw, "\nKEPT\tSERVICE:TARGET\tWHY")
		for _, k := range p.Kept {
			fmt.Fprintf(tw, "%s\t%s:%s\t%s\n", k.Source, k.Service, k.Target, k.Reason)
		}
	}
	tw.Flush()
	if len(p.Services) > 0 {
		fmt.Fprintf(w, "\nServices to recreate: %s\n", strings.Join(p.Services, ", "))
	}
	for _, e := range p.Edits {
		fmt.Fprintf(w, "\n%s", e.Diff())
	}
	if len(p.Conversions) == 0 {
		fmt.Fprintln(w, "\nNothing to convert.")
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
