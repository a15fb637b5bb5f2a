package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/internal/remount"
)

// rebaseFlags are --rebase and --rebase-conflicts, shared by up and remount.
type rebaseFlags struct {
	on        bool
	conflicts string
}

func (f *rebaseFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.on, "rebase", false, "when the service's image changed, carry the writable layer (added, changed, deleted paths) onto the new image")
	fl.StringVar(&f.conflicts, "rebase-conflicts", remount.ConflictsImage,
		"at a path both the layer and the new image changed, which wins: image (default: the new image stays consistent; the layer's version stays in the previous snapshot) or layer")
}

func (f *rebaseFlags) validate(cmd *cobra.Command) error {
	if f.conflicts != remount.ConflictsImage && f.conflicts != remount.ConflictsLayer {
		return fmt.Errorf("--rebase-conflicts %q: want image or layer", f.conflicts)
	}
	if cmd.Flags().Changed("rebase-conflicts") && !f.on {
		return errors.New("--rebase-conflicts needs --rebase")
	}
	return nil
}

// rebaseAdvice names --rebase after a refusal for a changed image.
func rebaseAdvice(err error) string {
	if errors.Is(err, remount.ErrImageChanged) {
		return " (or carry the writable layer onto the new image with --rebase)"
	}
	return ""
}

func printRebase(w io.Writer, indent string, r *remount.RebaseResult) {
	if r == nil {
		return
	}
	fmt.Fprintf(w, "%srebase onto %.19s: %d added, %d changed, %d deleted; %d conflicts, the %s wins\n",
		indent, r.NewImage, r.Added, r.Changed, r.Deleted, len(r.Conflicts), r.Policy)
	for _, c := range r.Conflicts {
		fmt.Fprintf(w, "%s  conflict %q: the layer %s it and the new image changed it: the %s wins\n", indent, c.Path, c.Layer, c.Winner)
	}
}
