package main

import (
	"bytes"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMigrateProgressModes(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	var buf bytes.Buffer
	if p := migrateProgress(&buf, &migrateOptions{quiet: true}, env()); p != nil {
		t.Errorf("--quiet: got a renderer, want none")
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
			p := migrateProgress(&buf, &tc.o, env("TERM", "xterm"))
			if p == nil {
				t.Fatal("got no renderer")
			}
			if o := p.Options(); o.TTY || o.Title != tc.title || o.Prefix != "migrate" || o.Bytes(1536) != "1.5 KiB" {
				t.Fatalf("on a buffer: got %+v, want plain lines prefixed migrate, title %q, humanBytes", o, tc.title)
			}
		})
	}
	// remount, up and snapshot: nothing on a buffer or with --json.
	if p := terminalProgress(&buf, false, env("TERM", "xterm"), "Up", "up"); p != nil {
		t.Errorf("on a buffer: got a renderer for up, want none")
	}
}

// openPTY opens a pseudo-terminal and returns its terminal end.
func openPTY(tb testing.TB) *os.File {
	tb.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		tb.Fatalf("opening /dev/ptmx: %v", err)
	}
	tb.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		tb.Fatalf("unlocking the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		tb.Fatalf("getting the pty number: %v", err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		tb.Fatalf("opening the pty: %v", err)
	}
	tb.Cleanup(func() { pts.Close() })
	return pts
}

func TestMigrateProgressOnTerminal(t *testing.T) {
	pts := openPTY(t)
	if err := unix.IoctlSetWinsize(int(pts.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: 101, Row: 33}); err != nil {
		t.Fatal(err)
	}
	xterm := func(k string) string { return map[string]string{"TERM": "xterm"}[k] }
	o := migrateProgress(pts, &migrateOptions{}, xterm).Options()
	if !o.TTY || !o.Color {
		t.Errorf("on a pty: got TTY %v colour %v, want both", o.TTY, o.Color)
	}
	if cols, rows := o.Size(); cols != 101 || rows != 33 {
		t.Errorf("got size %dx%d, want 101x33", cols, rows)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if p := migrateProgress(w, &migrateOptions{}, xterm); p.Options().TTY {
		t.Errorf("on a pipe: got the live view, want plain lines")
	}

	p := terminalProgress(pts, false, xterm, "Remounting app", "app")
	if p == nil || !p.Options().TTY || p.Options().Title != "Remounting app" {
		t.Errorf("remount on a pty: got %+v, want the live view titled Remounting app", p)
	}
	if p := terminalProgress(pts, true, xterm, "Up", "up"); p != nil {
		t.Errorf("up --json on a pty: got a renderer, want none")
	}
	if p := terminalProgress(pts, false, func(string) string { return "dumb" }, "Up", "up"); p == nil || p.Options().TTY || p.Options().Prefix != "up" {
		t.Errorf("up on a pty with TERM=dumb: got %+v, want plain lines prefixed up", p)
	}
}
