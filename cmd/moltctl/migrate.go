package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/cmd/moltctl/internal/render"
	"github.com/moltctl/moltctl/internal/engine"
	"github.com/moltctl/moltctl/internal/migrate"
	"github.com/moltctl/moltctl/internal/remount"
	"github.com/moltctl/moltctl/internal/volumes"
)

type migrateOptions struct {
	dryRun      bool
	json        bool
	owner       []string
	volumeNames []string
	exclude     []string
	include     []string
	services    []string
	yes         bool
	quiet       bool
	resume      bool
	rollback    bool
	copyBack    bool
	keepOwner   bool
	verify      string
	waitTimeout time.Duration

	// parsed from owner in PreRunE: the plain form, and SOURCE=OWNER
	ownerAll      string
	ownerBySource map[string]string
	// parsed from volumeNames in PreRunE: SOURCE=KEY
	volumeNameBySource map[string]string
}

func newMigrateCmd(g *globalOptions) *cobra.Command {
	o := &migrateOptions{}
	cmd := &cobra.Command{
		Use:   "migrate [OPTIONS] [SERVICE...]",
		Short: "Move host directory bind mounts into named volumes (plan with --dry-run)",
		Long: `migrate turns every host directory bind mount of the project (or of the given
services) into a named volume owned by the user the service runs as, and rewrites
the compose files that declare the mounts. With --dry-run it prints the plan and the
diff of every compose file that would change, and changes nothing. Without it, it
creates the volumes, copies while the services run, stops them, copies what changed,
verifies, rewrites the compose files and remounts the services (keeping their
writable layers). An interrupted migration is finished with --resume or undone
with --rollback.`,
		PreRunE: func(cmd *cobra.Command, args []string) error {
			return o.validate()
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.services = args
			return runMigrate(cmd, g, o)
		},
		ValidArgsFunction: func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
			project, err := g.project(cmd.Context())
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return project.ServiceNames(), cobra.ShellCompDirectiveNoFileComp
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan and the compose file diff, change nothing")
	f.BoolVar(&o.json, "json", false, "print the plan as JSON")
	f.StringArrayVar(&o.owner, "owner", nil, "owner of the migrated data: UID:GID or USER[:GROUP] of the image for all, or SOURCE=OWNER for one directory (repeatable; default: the service's user, else the image's USER, else MOLTCTL_USER, PUID/PGID or USERMAP_UID/USERMAP_GID of a root image, else the directory's owner)")
	f.StringArrayVar(&o.volumeNames, "volume-name", nil, "volume key for a host directory, SOURCE=KEY (repeatable)")
	f.StringArrayVar(&o.exclude, "exclude", nil, "keep the host directory SOURCE (and what is below it) a bind mount (repeatable)")
	f.StringArrayVar(&o.include, "include", nil, "convert SOURCE although it is a build context or read-only everywhere (repeatable)")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no progress lines")
	f.BoolVar(&o.resume, "resume", false, "finish an interrupted migration from its journal")
	f.BoolVar(&o.rollback, "rollback", false, "undo the last migration: restore the compose files, put the services back on their binds")
	f.BoolVar(&o.copyBack, "copy-back", false, "with --rollback: copy what the services wrote to the volumes back into the bind directories (the previous content is kept beside each)")
	f.BoolVar(&o.keepOwner, "keep-owner", false, "keep the files' numeric owners instead of the planned owner")
	f.StringVar(&o.verify, "verify", "delta", `content hashes to compare: "delta" (of what the delta pass copied; metadata of everything) or "full" (of every file)`)
	f.DurationVar(&o.waitTimeout, "wait-timeout", remount.DefaultWaitTimeout, "how long each remounted container must keep running (or has to turn healthy)")
	cmd.MarkFlagsMutuallyExclusive("resume", "rollback", "dry-run")
	return cmd
}

func runMigrate(cmd *cobra.Command, g *globalOptions, o *migrateOptions) error {
	if !o.dryRun {
		return runMigrateReal(cmd, g, o)
	}
	return runMigrateDryRun(cmd, g, o, o.volumeNameBySource)
}

// validate checks and parses the flags before anything runs, under --dry-run too.
func (o *migrateOptions) validate() error {
	if o.copyBack && !o.rollback {
		return errors.New("migrate: --copy-back needs --rollback")
	}
	if o.verify != "delta" && o.verify != "full" {
		return fmt.Errorf("migrate: --verify %q: want delta or full", o.verify)
	}
	names, err := migrateVolumeNames(o)
	if err != nil {
		return err
	}
	o.volumeNameBySource = names
	return o.parseOwners()
}

// parseOwners splits --owner into the plain form (at most once) and
// SOURCE=OWNER (once per source).
func (o *migrateOptions) parseOwners() error {
	o.ownerBySource = map[string]string{}
	for _, v := range o.owner {
		src, owner, per := strings.Cut(v, "=")
		switch {
		case !per && o.ownerAll != "":
			return fmt.Errorf("migrate: --owner %q: the owner for all directories is already %q (use SOURCE=OWNER for one directory)", v, o.ownerAll)
		case !per && v == "":
			return errors.New("migrate: --owner \"\": want UID:GID, USER[:GROUP] or SOURCE=OWNER")
		case !per:
			o.ownerAll = v
		case src == "" || owner == "":
			return fmt.Errorf("migrate: --owner %q: want SOURCE=UID:GID or SOURCE=USER[:GROUP]", v)
		case o.ownerBySource[src] != "":
			return fmt.Errorf("migrate: --owner %q: %q already has owner %q", v, src, o.ownerBySource[src])
		default:
			o.ownerBySource[src] = owner
		}
	}
	return nil
}

// migrateVolumeNames parses --volume-name SOURCE=KEY (and checks that
// --exclude and --include name something).
func migrateVolumeNames(o *migrateOptions) (map[string]string, error) {
	for flag, list := range map[string][]string{"--exclude": o.exclude, "--include": o.include} {
		for _, s := range list {
			if strings.TrimSpace(s) == "" {
				return nil, fmt.Errorf("migrate: %s %q: want a SOURCE directory", flag, s)
			}
		}
	}
	names := map[string]string{}
	for _, nv := range o.volumeNames {
		src, key, ok := strings.Cut(nv, "=")
		if !ok || src == "" || key == "" {
			return nil, fmt.Errorf("migrate: --volume-name %q: want SOURCE=KEY", nv)
		}
		names[src] = key
	}
	return names, nil
}

func runMigrateDryRun(cmd *cobra.Command, g *globalOptions, o *migrateOptions, names map[string]string) error {
	ctx := cmd.Context()
	project, err := g.project(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var eng migrate.Engine
	c, connErr := engine.Connect(ctx, g.engine)
	if connErr == nil {
		defer c.Close()
		eng = c
		// The sources' inspection and the free space use one helper image:
		// imported once, removed at the end unless it was there before.
		if present, err := volumes.HelperPresent(ctx, c, volumes.HelperOptions{}); err == nil && !present {
			defer volumes.RemoveHelper(context.WithoutCancel(ctx), c, volumes.HelperOptions{})
		}
	}
	plan, err := migrate.Prepare(ctx, eng, project, migrate.PlanOptions{
		Services: o.services, Owner: o.ownerAll, Owners: o.ownerBySource, VolumeNames: names, Exclude: o.exclude, Include: o.include,
		KeepHelper: true,
	})
	if err != nil {
		if errors.Is(err, migrate.ErrNoEngine) {
			err = fmt.Errorf("%w (%v)", err, connErr)
		}
		return fmt.Errorf("migrate: %w", migrateAdvice(err, o))
	}
	switch {
	case connErr != nil:
		plan.SpaceError = "the Docker Engine is unreachable"
	case len(plan.Conversions) > 0:
		if err := migrate.MeasureSpace(ctx, c, plan, volumes.HelperOptions{}, true); err != nil {
			plan.SpaceError = err.Error()
		}
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
	fmt.Fprintf(w, "Project %s: %d director%s to convert into named volumes (%s, %d %s), %d bind mount%s kept.\n",
		p.Project, len(p.Conversions), plural(len(p.Conversions), "y", "ies"), humanBytes(p.Bytes), p.Files, plural(int(p.Files), "file", "files"),
		len(p.Kept), plural(len(p.Kept), "", "s"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(p.Conversions) > 0 {
		fmt.Fprintln(tw, "\nSOURCE\tVOLUME\tOWNER\tSIZE\tSERVICE:TARGET")
		for _, c := range p.Conversions {
			vol := c.Volume + " (" + c.Name + ")"
			if c.Empty {
				vol += " nocopy"
			}
			owner := c.Owner
			if c.OwnerFrom != migrate.OwnerFromUnknown {
				owner += " (" + c.OwnerFrom + ")"
			}
			for i, m := range c.Mounts {
				st := m.Service + ":" + m.Target
				if m.ReadOnly {
					st += ":ro"
				}
				if i == 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Source, vol, owner, humanBytes(c.Bytes), st)
				} else {
					fmt.Fprintf(tw, "\t\t\t\t%s\n", st)
				}
			}
			for _, x := range c.Exclude {
				fmt.Fprintf(tw, "  without %s/\t\t\t\t(a volume of its own: left out, its directory kept empty as the mount point)\n", x)
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
	printPlanNotes(w, p)
	if len(p.Inactive) > 0 {
		fmt.Fprintf(w, "Services of inactive profiles (rewritten, not recreated; they start on the volumes): %s\n", strings.Join(p.Inactive, ", "))
	}
	for _, e := range p.Edits {
		fmt.Fprintf(w, "\n%s", e.Diff())
	}
	if len(p.Conversions) == 0 {
		fmt.Fprintln(w, "\nNothing to convert.")
	}
}

// printPlanNotes prints what the plan's table does not show: the images an
// unknown owner needs, the free space, the variables that stop applying.
func printPlanNotes(w io.Writer, p *migrate.Plan) {
	var notes []string
	if p.NoEngine {
		notes = append(notes, "Owner unknown: no Docker Engine answered to read the images' users from. Before migrating, start it, or give the owner with --owner SOURCE=UID:GID.")
	}
	if len(p.MissingImages) > 0 {
		notes = append(notes, fmt.Sprintf("Owner unknown: image%s not present locally: %s. Before migrating, pull or build %s (docker compose pull, docker compose build), or give the owner with --owner SOURCE=UID:GID.",
			plural(len(p.MissingImages), "", "s"), strings.Join(p.MissingImages, ", "), plural(len(p.MissingImages), "it", "them")))
	}
	switch {
	case len(p.Conversions) == 0:
	case p.Space != nil:
		verdict := "fits"
		if !p.Space.Fits() {
			verdict = "DOES NOT FIT: migrate will refuse"
		}
		notes = append(notes, fmt.Sprintf("Free space where the engine keeps its volumes: %s; needed %s + %s margin: %s.",
			humanBytes(p.Space.Free), humanBytes(p.Space.Needed), humanBytes(p.Space.Margin), verdict))
	case p.SpaceError != "":
		notes = append(notes, fmt.Sprintf("Free space where the engine keeps its volumes: unknown (%s); needed %s + %s margin.",
			p.SpaceError, humanBytes(p.Bytes), humanBytes(migrate.SpaceMargin(p.Bytes))))
	}
	for _, c := range p.Conversions {
		for _, m := range c.Mounts {
			if len(m.Variables) > 0 {
				vars := "${" + strings.Join(m.Variables, "}, ${") + "}"
				notes = append(notes, fmt.Sprintf("Note: the source %q of %s:%s was written with %s; after the rewrite %s no longer appl%s to this mount (it uses volume %s).",
					c.Source, m.Service, m.Target, vars, plural(len(m.Variables), "that variable", "those variables"), plural(len(m.Variables), "ies", "y"), c.Volume))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// runMigrateReal runs, resumes or rolls back the migration (one library call)
// and prints progress on stderr and the report on stdout.
func runMigrateReal(cmd *cobra.Command, g *globalOptions, o *migrateOptions) error {
	names := o.volumeNameBySource
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	opts := migrate.RunOptions{
		Plan: migrate.PlanOptions{Services: o.services, Owner: o.ownerAll, Owners: o.ownerBySource, VolumeNames: names,
			Exclude: o.exclude, Include: o.include},
		KeepOwner: o.keepOwner, VerifyFull: o.verify == "full", WaitTimeout: o.waitTimeout, CopyBack: o.copyBack,
	}
	pr := stderrProgress(cmd).migrate(o)
	opts.Progress = pr.Func()
	if !o.resume && !o.rollback && !o.yes {
		if in, ok := cmd.InOrStdin().(io.Writer); !ok || !render.IsTerminal(in) {
			return errors.New("migrate: not a terminal to confirm on: pass --yes (or look first with --dry-run)")
		}
		fmt.Fprintf(stderr, "Migrate the project's bind mounts into named volumes? The affected services stop for the final copy. [y/N] ")
		var answer string
		fmt.Fscanln(cmd.InOrStdin(), &answer)
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errors.New("migrate: not confirmed, nothing changed")
		}
	}
	project, err := g.project(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	opts.Project = project
	eng, err := engine.Connect(ctx, g.engine)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer eng.Close()
	do := migrate.Run
	switch {
	case o.resume:
		do = migrate.Resume
	case o.rollback:
		do = migrate.Rollback
	}
	pr.Start()
	rep, err := do(ctx, eng, opts)
	pr.Close(err)
	if err != nil {
		return fmt.Errorf("migrate: %w", migrateAdvice(err, o))
	}
	return printMigrateReport(cmd.OutOrStdout(), stderr, o, rep)
}

func printMigrateReport(w, stderr io.Writer, o *migrateOptions, rep *migrate.Report) error {
	for _, warn := range rep.Warnings {
		fmt.Fprintf(stderr, "migrate: warning: %s\n", warn)
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	switch {
	case rep.Nothing:
		fmt.Fprintf(w, "Project %s: nothing to migrate.\n", rep.Project)
		return nil
	case rep.RolledBack:
		files, services := "untouched", "none remounted"
		if len(rep.Files) > 0 {
			files = "restored: " + strings.Join(rep.Files, ", ")
		}
		if len(rep.Services) > 0 {
			services = "back on their binds: " + strings.Join(rep.Services, ", ")
		}
		fmt.Fprintf(w, "Project %s: rolled back; compose files %s; services %s.\n", rep.Project, files, services)
		return nil
	}
	fmt.Fprintf(w, "Project %s migrated in %s, downtime %s.\n", rep.Project, rep.Total.Round(time.Millisecond), rep.Downtime.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tVOLUME\tOWNER\tFULL PASS\tDELTA\tVERIFIED")
	for _, v := range rep.Volumes {
		full, delta, ver := "-", "-", "-"
		if v.Full != nil {
			full = fmt.Sprintf("%d %s, %s", v.Full.Files, plural(int(v.Full.Files), "file", "files"), humanBytes(v.Full.Bytes))
		}
		if v.Delta != nil {
			delta = fmt.Sprintf("+%d ~%d -%d", len(v.Delta.Added), len(v.Delta.Changed), len(v.Delta.Removed))
		}
		if v.Verify != nil {
			ver = fmt.Sprintf("%d %s", v.Verify.Entries, plural(v.Verify.Entries, "entry", "entries"))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Source, v.Name, v.Owner, full, delta, ver)
	}
	tw.Flush()
	if len(rep.Services) > 0 {
		fmt.Fprintf(w, "Services remounted onto the volumes (writable layers kept): %s\n", strings.Join(rep.Services, ", "))
	}
	if len(rep.Files) > 0 {
		fmt.Fprintf(w, "Compose files rewritten (previous content in FILE.moltctl-backup): %s\n", strings.Join(rep.Files, ", "))
	}
	return nil
}

func humanBytes(n int64) string { return migrate.HumanBytes(n) }
