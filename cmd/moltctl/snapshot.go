package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/internal/remount"
)

type snapshotOptions struct {
	services []string
	json     bool
}

func newSnapshotCmd(g *globalOptions) *cobra.Command {
	o := &snapshotOptions{}
	cmd := &cobra.Command{
		Use:   "snapshot [OPTIONS] [SERVICE...]",
		Short: "Commit the writable layers of service containers into versioned snapshot images, recreating nothing",
		Long: `snapshot commits the writable layer of each service's container, running (paused for
the commit) or stopped, into the service's next snapshot image
moltctl-snapshot/<project>-<service>:<n>. Nothing is stopped or recreated. A service whose
container is gone (removed, or left behind by an engine's switch to the containerd image
store) is brought back on its latest snapshot with the compose file's config by
moltctl remount SERVICE.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.services = args
			return runSnapshot(cmd, g, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as JSON")
	return cmd
}

func runSnapshot(cmd *cobra.Command, g *globalOptions, o *snapshotOptions) error {
	ctx := cmd.Context()
	project, eng, err := g.connect(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer eng.Close()
	pr := stderrProgress(cmd).steps(o.json, "Snapshotting", "snapshot")
	pr.Start()
	rep, err := remount.Snapshot(ctx, eng, remount.SnapshotOptions{Project: project, Services: o.services, Progress: pr.Func()})
	pr.Close(err)
	if err != nil {
		return fmt.Errorf("snapshot: %w", remountAdvice(err, "remount the service with moltctl remount --flatten first"))
	}
	return printSnapshot(cmd.OutOrStdout(), o, rep)
}

func printSnapshot(w io.Writer, o *snapshotOptions, rep *remount.SnapshotReport) error {
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tCONTAINER\tSNAPSHOT\tLAYERS\tCOMMIT")
	for _, s := range rep.Snapshots {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", s.Service, s.Container, s.Snapshot, s.Layers, s.Commit.Round(time.Millisecond))
	}
	tw.Flush()
	for _, n := range rep.NoContainer {
		fmt.Fprintf(w, "%s: no container, nothing to snapshot\n", n)
	}
	return nil
}
