package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/internal/remount"
)

type remountOptions struct {
	service     string
	keep        int
	flatten     bool
	waitTimeout time.Duration
	dryRun      bool
	resume      bool
	rollback    bool
	json        bool
	rebase      rebaseFlags
}

func newRemountCmd(g *globalOptions) *cobra.Command {
	o := &remountOptions{}
	cmd := &cobra.Command{
		Use:   "remount [OPTIONS] SERVICE",
		Short: "Recreate a service's container with its current compose config, keeping its writable layer",
		Long: `remount stops the service's container, commits its writable layer into a versioned
snapshot image, lets docker compose create the container with the compose file's current
config, and runs that container on the snapshot. A failure rolls back; an interrupted
remount is finished with --resume or undone with --rollback.`,
		Args: cobra.ExactArgs(1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if err := validateKeep(o.keep); err != nil {
				return fmt.Errorf("remount: %w", err)
			}
			if err := o.rebase.validate(cmd); err != nil {
				return fmt.Errorf("remount: %w", err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.service = args[0]
			return runRemount(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.keep, "keep", 2, "snapshots of the service to keep, the running one included (minimum 2)")
	f.BoolVar(&o.flatten, "flatten", false, "snapshot as one layer with the base image's config (drops baked env keys and labels, resets the layer depth)")
	f.DurationVar(&o.waitTimeout, "wait-timeout", remount.DefaultWaitTimeout, "how long the new container must keep running (or has to turn healthy)")
	f.BoolVar(&o.dryRun, "dry-run", false, "check and print the plan without changing anything")
	f.BoolVar(&o.resume, "resume", false, "finish an interrupted remount of SERVICE")
	f.BoolVar(&o.rollback, "rollback", false, "undo an interrupted remount of SERVICE")
	f.BoolVar(&o.json, "json", false, "print the result as JSON")
	o.rebase.register(cmd)
	cmd.MarkFlagsMutuallyExclusive("resume", "rollback")
	cmd.MarkFlagsMutuallyExclusive("rebase", "resume")
	cmd.MarkFlagsMutuallyExclusive("rebase", "rollback")
	return cmd
}

func runRemount(cmd *cobra.Command, g *globalOptions, o *remountOptions) error {
	ctx := cmd.Context()
	project, eng, err := g.connect(ctx)
	if err != nil {
		return fmt.Errorf("remount: %w", err)
	}
	defer eng.Close()
	pr := stderrProgress(cmd).steps(o.json, "Remounting "+o.service, o.service)
	opts := remount.Options{
		Project: project, Service: o.service,
		Keep: o.keep, Flatten: o.flatten, WaitTimeout: o.waitTimeout, DryRun: o.dryRun,
		Rebase: o.rebase.on, RebaseConflicts: o.rebase.conflicts, Progress: pr.Func(),
	}
	do := remount.Run
	switch {
	case o.resume:
		do = remount.Resume
	case o.rollback:
		do = remount.Rollback
	}
	pr.Start()
	res, err := do(ctx, eng, opts)
	pr.Close(err)
	if err != nil {
		return fmt.Errorf("remount: %w", remountAdvice(err, "use --flatten"))
	}
	return printRemount(cmd.OutOrStdout(), o, res)
}

func printRemount(w io.Writer, o *remountOptions, res *remount.Result) error {
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	if res.DryRun {
		fmt.Fprintf(w, "would remount %s:\n", res.Service)
		for _, s := range res.Plan {
			fmt.Fprintf(w, "  %s\n", s)
		}
		for _, j := range res.Joined {
			fmt.Fprintf(w, "then %s:\n", j.Service)
			for _, s := range j.Plan {
				fmt.Fprintf(w, "  %s\n", s)
			}
		}
		return nil
	}
	if o.rollback {
		fmt.Fprintf(w, "%s\n", strings.Join(res.Plan, "; "))
		return nil
	}
	if res.Restored {
		fmt.Fprintf(w, "restored %s: it had no container; %s (%.12s) runs its latest snapshot %s (%d layers) with the compose config\n",
			res.Service, res.Container, res.NewID, res.Snapshot, res.Layers)
		return nil
	}
	snap := res.Snapshot
	if res.Rebase != nil && res.Rebase.Image != "" {
		snap = res.Rebase.Image + " (rebased; previous layer in " + res.Snapshot + ")"
	}
	fmt.Fprintf(w, "remounted %s: container %s (%.12s) runs snapshot %s (%d layers)\n", res.Service, res.Container, res.NewID, snap, res.Layers)
	printRebase(w, "  ", res.Rebase)
	for _, j := range res.Joined {
		fmt.Fprintf(w, "  then %s: container %s (%.12s) runs snapshot %s (%d layers)\n", j.Service, j.Container, j.NewID, j.Snapshot, j.Layers)
	}
	fmt.Fprintf(w, "  commit %s, downtime %s, total %s\n", res.Commit.Round(time.Millisecond), res.Downtime.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	if len(res.Pruned) > 0 {
		fmt.Fprintf(w, "  removed old snapshots: %s\n", strings.Join(res.Pruned, ", "))
	}
	if len(res.LeftoverEnv)+len(res.LeftoverLabels) > 0 {
		fmt.Fprintf(w, "  baked into the snapshot but no longer in the compose config (they persist; --flatten drops them):\n")
		if len(res.LeftoverEnv) > 0 {
			fmt.Fprintf(w, "    env keys: %s\n", strings.Join(res.LeftoverEnv, ", "))
		}
		if len(res.LeftoverLabels) > 0 {
			fmt.Fprintf(w, "    labels: %s\n", strings.Join(res.LeftoverLabels, ", "))
		}
	}
	return nil
}
