package main

import (
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moltctl/moltctl/cmd/moltctl/internal/render"
)

// progressOut is where a command's progress goes: stderr, whether it is a
// terminal, and the environment (TERM, NO_COLOR).
type progressOut struct {
	w      io.Writer
	tty    bool
	getenv func(string) string
}

func stderrProgress(cmd *cobra.Command) progressOut {
	w := cmd.ErrOrStderr()
	return progressOut{w: w, tty: render.IsTerminal(w), getenv: os.Getenv}
}

// renderer is the progress renderer (cmd/moltctl/internal/render): the live
// view of docker compose headed title on a terminal, plain lines starting
// with prefix otherwise.
func (p progressOut) renderer(title, prefix string) *render.Progress {
	o := render.OptionsFor(p.tty, p.getenv)
	o.Size = render.TerminalSize(p.w)
	o.Title, o.Prefix, o.Bytes = title, prefix, humanBytes
	return render.New(p.w, o)
}

// migrate is the renderer of migrate's progress: the live view on a
// terminal, plain "migrate: ..." lines otherwise, none (nil) with --quiet.
func (p progressOut) migrate(o *migrateOptions) *render.Progress {
	if o.quiet {
		return nil
	}
	title := "Migrating"
	switch {
	case o.resume:
		title = "Resuming the migration"
	case o.rollback:
		title = "Rolling back the migration"
	}
	return p.renderer(title, "migrate")
}

// steps is the renderer of remount's, up's and snapshot's steps: shown only
// on a terminal and when the result is not JSON (nil otherwise), plain lines
// starting with prefix under TERM=dumb.
func (p progressOut) steps(json bool, title, prefix string) *render.Progress {
	if json || !p.tty {
		return nil
	}
	return p.renderer(title, prefix)
}

// compactBytes is humanBytes without the blank: 412.3MiB.
func compactBytes(n int64) string { return strings.ReplaceAll(humanBytes(n), " ", "") }
