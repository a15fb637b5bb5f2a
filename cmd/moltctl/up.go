package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/internal/remount"
)

type upOptions struct {
	services    []string
	dryRun      bool
	json        bool
	keep        int
	waitTimeout time.Duration
	rebase      rebaseFlags
}

func newUpCmd(g *globalOptions) *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up [OPTIONS] [SERVICE...]",
		Short: "docker compose up -d that remounts, instead of recreating, containers with a non-empty writable layer",
		Long: `up converges the project as docker compose up -d does: it creates what is missing, starts
what is stopped and leaves what is current. A container compose would recreate is recreated
by compose when its writable layer is empty, and remounted (moltctl remount, with the services
that join it, in dependency order, rolled back on failure) when it is not. A service with no
container but a snapshot (moltctl snapshot, e.g. before an engine's store switch) comes back on
its latest snapshot with its layers instead of a fresh container. A container whose
image changed under a non-empty layer is refused before anything changes, unless --rebase
carries the layer onto the new image (see moltctl remount --help).`,
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if err := validateKeep(o.keep); err != nil {
				return fmt.Errorf("up: %w", err)
			}
			if err := o.rebase.validate(cmd); err != nil {
				return fmt.Errorf("up: %w", err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.services = args
			return runUp(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.dryRun, "dry-run", false, "print what up would do per service (create, restore, start, keep, recreate, remount, rebase) and change nothing")
	f.BoolVar(&o.json, "json", false, "print the result as JSON")
	f.IntVar(&o.keep, "keep", 2, "snapshots of each remounted service to keep, the running one included (minimum 2)")
	f.DurationVar(&o.waitTimeout, "wait-timeout", remount.DefaultWaitTimeout, "how long each remounted container must keep running (or has to turn healthy)")
	o.rebase.register(cmd)
	return cmd
}

func runUp(cmd *cobra.Command, g *globalOptions, o *upOptions) error {
	ctx := cmd.Context()
	project, eng, err := g.connect(ctx)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	defer eng.Close()
	pr := stderrProgress(cmd).steps(o.json, "Up", "up")
	pr.Start()
	res, err := remount.Up(ctx, eng, remount.UpOptions{
		Project: project, Services: o.services,
		DryRun: o.dryRun, Keep: o.keep, WaitTimeout: o.waitTimeout,
		Rebase: o.rebase.on, RebaseConflicts: o.rebase.conflicts, Progress: pr.Func(),
	})
	pr.Close(err)
	if err != nil {
		return fmt.Errorf("up: %w", remountAdvice(err, "remount the service with moltctl remount --flatten first"))
	}
	return printUp(cmd.OutOrStdout(), o, res)
}

func printUp(w io.Writer, o *upOptions, res *remount.UpResult) error {
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "SERVICE\tCONTAINER\tDONE"
	if res.DryRun {
		head = "SERVICE\tCONTAINER\tWOULD"
	}
	fmt.Fprintln(tw, head+"\tLAYER CHANGES")
	for _, p := range res.Plan {
		changes := "-"
		if p.Action == remount.UpRecreate || p.Action == remount.UpRemount || p.Action == remount.UpRebase {
			changes = fmt.Sprint(p.Changes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Service, p.Container, p.Action, changes)
	}
	tw.Flush()
	if res.DryRun {
		for _, p := range res.Plan {
			if p.Action == remount.UpRestore {
				fmt.Fprintf(w, "would restore %s on its latest snapshot %s (%d layers)\n", p.Service, p.From, p.Layers)
			}
		}
	}
	for _, r := range res.Rebases {
		fmt.Fprintf(w, "would rebase %s:\n", r.Service)
		printRebase(w, "  ", r.Rebase)
	}
	for _, r := range res.Remounted {
		if r.Restored {
			fmt.Fprintf(w, "restored %s on its latest snapshot %s (%d layers)\n", r.Service, r.Snapshot, r.Layers)
			continue
		}
		names := []string{r.Service}
		for _, j := range r.Joined {
			names = append(names, j.Service)
		}
		fmt.Fprintf(w, "remounted %s (writable layers kept), downtime %s\n", strings.Join(names, ", "), r.Downtime.Round(time.Millisecond))
		printRebase(w, "  ", r.Rebase)
	}
	return nil
}
