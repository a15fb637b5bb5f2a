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

type statusOptions struct {
	services []string
	json     bool
}

func newStatusCmd(g *globalOptions) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [OPTIONS] [SERVICE...]",
		Short: "Show each service's container, snapshot, writable layer and whether compose up would discard it",
		RunE: func(cmd *cobra.Command, args []string) error {
			o.services = args
			return runStatus(cmd, g, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the report as JSON")
	return cmd
}

func runStatus(cmd *cobra.Command, g *globalOptions, o *statusOptions) error {
	ctx := cmd.Context()
	project, eng, err := g.connect(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer eng.Close()
	rep, err := remount.Status(ctx, eng, remount.StatusOptions{
		Project: project, Services: o.services,
	})
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	w := cmd.OutOrStdout()
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tCONTAINER\tSTATE\tIMAGE\tSNAPSHOT AGE\tLAYERS\tWRITABLE\tCOMPOSE UP\tMOLTCTL UP")
	for _, c := range rep.Containers {
		age := "-"
		if c.Snapshot {
			age = c.SnapshotAge.String()
		}
		up := "keeps it"
		if c.WouldRecreate {
			up = "recreates it (layer lost): " + c.Remount
		}
		if c.ID == "" {
			up = "-"
		}
		layers, writable := fmt.Sprint(c.Layers), statusSize(c.WritableBytes)
		if c.ID == "" {
			layers, writable = "-", "-"
		}
		moltUp := c.Up
		if moltUp == "" {
			moltUp = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Service, c.Container, c.State, c.Image, age, layers, writable, up, moltUp)
	}
	tw.Flush()
	for _, c := range rep.Containers {
		if len(c.BakedEnv)+len(c.BakedLabels) > 0 {
			fmt.Fprintf(w, "%s: baked into its snapshot, no longer in the compose config (remount --flatten drops them): env %s; labels %s\n",
				c.Container, statusKeys(c.BakedEnv), statusKeys(c.BakedLabels))
		}
	}
	printStatusSnapshots(w, rep.Snapshots)
	if rep.Interrupted != "" {
		fmt.Fprintf(w, "an interrupted remount of %s stopped after step %q: run moltctl remount %s --resume or --rollback\n",
			rep.InterruptedService, rep.Interrupted, rep.InterruptedService)
	}
	return nil
}

func statusKeys(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func statusSize(n int64) string {
	return compactBytes(n) // cmd's one byte formatter (migrate.HumanBytes), compact
}

func printStatusSnapshots(w io.Writer, ss []remount.SnapshotSummary) {
	if len(ss) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSNAPSHOT\tCREATED\tIN USE")
	for _, s := range ss {
		use := ""
		if s.InUse {
			use = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Service, s.Tag, s.Created.Local().Format(time.DateTime), use)
	}
	tw.Flush()
}
