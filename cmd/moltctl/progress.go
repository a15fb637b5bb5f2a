package main

import (
	"io"
	"strings"

	"github.com/moltctl/moltctl/cmd/moltctl/internal/render"
)

// newRenderer is the progress renderer on stderr (cmd/moltctl/internal/render):
// the live view of docker compose headed title when stderr is a terminal,
// plain lines starting with prefix otherwise.
func newRenderer(stderr io.Writer, getenv func(string) string, title, prefix string) *render.Progress {
	o := render.OptionsFor(remountIsTerminal(stderr), getenv)
	o.Size = render.TerminalSize(stderr)
	o.Title, o.Prefix, o.Bytes = title, prefix, humanBytes
	return render.New(stderr, o)
}

// migrateProgress is the renderer of migrate's progress on stderr: the live
// view when stderr is a terminal, plain "migrate: ..." lines otherwise, none
// (nil) with --quiet.
func migrateProgress(stderr io.Writer, o *migrateOptions, getenv func(string) string) *render.Progress {
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
	return newRenderer(stderr, getenv, title, "migrate")
}

// terminalProgress is the renderer of remount's, up's and snapshot's steps:
// shown only when stderr is a terminal and the result is not JSON (nil
// otherwise), plain lines starting with prefix under TERM=dumb.
func terminalProgress(stderr io.Writer, json bool, getenv func(string) string, title, prefix string) *render.Progress {
	if json || !remountIsTerminal(stderr) {
		return nil
	}
	return newRenderer(stderr, getenv, title, prefix)
}

// compactBytes is humanBytes without the blank: 412.3MiB.
func compactBytes(n int64) string { return strings.ReplaceAll(humanBytes(n), " ", "") }
