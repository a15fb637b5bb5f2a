package main

import (
	"bytes"
	"testing"
)

func TestProgressWiring(t *testing.T) {
	xterm := func(k string) string { return map[string]string{"TERM": "xterm"}[k] }
	var buf bytes.Buffer
	plain := progressOut{w: &buf, getenv: xterm}
	term := progressOut{w: &buf, tty: true, getenv: xterm}
	if p := plain.migrate(&migrateOptions{quiet: true}); p != nil || p.Func() != nil {
		t.Errorf("--quiet: got a renderer, want none (and no progress.Func)")
	}
	for _, tc := range []struct {
		name  string
		o     migrateOptions
		title string
	}{
		{"run", migrateOptions{}, "Migrating"},
		{"resume", migrateOptions{resume: true}, "Resuming the migration"},
		{"rollback", migrateOptions{rollback: true}, "Rolling back the migration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := plain.migrate(&tc.o)
			if p == nil || p.Func() == nil {
				t.Fatal("got no renderer")
			}
			if o := p.Options(); o.TTY || o.Title != tc.title || o.Prefix != "migrate" || o.Bytes(1536) != "1.5 KiB" {
				t.Errorf("not on a terminal: got %+v, want plain lines prefixed migrate, title %q, humanBytes", o, tc.title)
			}
			if o := term.migrate(&tc.o).Options(); !o.TTY || !o.Color || o.Title != tc.title {
				t.Errorf("on a terminal: got %+v, want the live view in colour, title %q", o, tc.title)
			}
		})
	}
	// remount, up and snapshot: the live view on a terminal only, never with --json.
	if p := plain.steps(false, "Up", "up"); p != nil {
		t.Errorf("up not on a terminal: got a renderer, want none")
	}
	if p := term.steps(true, "Up", "up"); p != nil {
		t.Errorf("up --json on a terminal: got a renderer, want none")
	}
	if p := term.steps(false, "Remounting app", "app"); p == nil || !p.Options().TTY || p.Options().Title != "Remounting app" {
		t.Errorf("remount on a terminal: got %+v, want the live view titled Remounting app", p)
	}
	dumb := progressOut{w: &buf, tty: true, getenv: func(string) string { return "dumb" }}
	if p := dumb.steps(false, "Up", "up"); p == nil || p.Options().TTY || p.Options().Prefix != "up" {
		t.Errorf("up on a terminal with TERM=dumb: got %+v, want plain lines prefixed up", p)
	}
}
