package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/migrate"
	"github.com/moltctl/moltctl/internal/progress"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

// at sets the clock to d after its start.
func (c *fakeClock) at(d time.Duration) { c.t = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(d) }

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

const (
	mib = 1 << 20
	gib = 1 << 30
)

// step is an event at a time.
type step struct {
	at time.Duration
	e  progress.Event
}

func ev(at time.Duration, e progress.Event) step { return step{at, e} }

// copyStart is the start of a pass copying src into vol, as internal/migrate
// reports it (each pass a group: the delta pass runs the volumes side by side).
func copyStart(at time.Duration, pass, src, vol string) step {
	return ev(at, progress.Event{Step: progress.Copy, Target: vol, Source: src, Pass: pass, Group: "copy " + pass})
}

// copyEv is a copy's running totals, as internal/volumes reports them.
func copyEv(at time.Duration, vol, pass string, bytes, total, files, totalFiles int64) step {
	return ev(at, progress.Event{Step: progress.Copy, Phase: progress.Running, Target: vol, Pass: pass,
		Bytes: bytes, TotalBytes: total, Files: files, TotalFiles: totalFiles})
}

// copyEnd is a copy's end with its final totals.
func copyEnd(at time.Duration, pass, src, vol string, bytes, files int64) step {
	e := copyStart(at, pass, src, vol)
	e.e.Phase, e.e.Bytes, e.e.Files = progress.Done, bytes, files
	return e
}

// fullPass: plan, create, and a full pass of 1 GiB and 100,000 files of
// volume v that copies 100 MiB and 10,000 files a second, from 0.24 s to 4.24 s.
func fullPass() []step {
	s := []step{
		ev(0, progress.Event{Step: progress.Plan, Count: 1, Targets: []string{"app"}}),
		ev(ms(40), progress.Event{Step: progress.Create, Target: "v"}),
		copyStart(ms(240), "full", "/src", "v"),
	}
	for i := int64(1); i <= 4; i++ {
		s = append(s, copyEv(ms(240)+time.Duration(i)*time.Second, "v", "full", i*100*mib, gib, i*10000, 100000))
	}
	return s
}

// run feeds the events to a renderer on a fake clock and returns it with its output.
func run(tb testing.TB, o Options, steps []step) (*Progress, *bytes.Buffer, *fakeClock) {
	tb.Helper()
	clock := &fakeClock{}
	clock.at(0)
	o.Now = clock.Now
	o.Bytes = migrate.HumanBytes
	var buf bytes.Buffer
	p := New(&buf, o)
	for _, s := range steps {
		clock.at(s.at)
		p.Event(s.e)
	}
	return p, &buf, clock
}

// screen is a small terminal: it applies what the live view writes (text,
// \r, \n, cursor up, erase line and erase below, cursor show/hide, colours)
// and fails on anything else.
type screen struct {
	tb       testing.TB
	rows     int // the cursor must never go above a screen this tall
	lines    [][]rune
	row, col int
	frames   int
}

func (s *screen) write(out string) {
	s.tb.Helper()
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRuneInString(out[i:])
		i += n
		switch {
		case r == '\x1b':
			if i >= len(out) || out[i] != '[' {
				s.tb.Fatalf("escape without [ at %d in %q", i, out)
			}
			j := i + 1
			for j < len(out) && (out[j] == '?' || out[j] == ';' || (out[j] >= '0' && out[j] <= '9')) {
				j++
			}
			if j >= len(out) {
				s.tb.Fatalf("unterminated escape in %q", out[i:])
			}
			arg, cmd := out[i+1:j], out[j]
			i = j + 1
			switch {
			case cmd == 'A':
				n, err := strconv.Atoi(arg)
				if err != nil {
					n = 1
				}
				if n > s.rows-1 {
					s.tb.Errorf("cursor up %d lines: above a screen of %d rows", n, s.rows)
				}
				s.row = max(s.row-n, 0)
			case cmd == 'K':
				s.line()
				s.lines[s.row] = s.lines[s.row][:min(s.col, len(s.lines[s.row]))]
			case cmd == 'J':
				s.line()
				s.lines[s.row] = s.lines[s.row][:min(s.col, len(s.lines[s.row]))]
				s.lines = s.lines[:s.row+1]
			case cmd == 'm':
			case arg == "?25" && cmd == 'l':
				s.frames++
			case arg == "?25" && cmd == 'h':
			default:
				s.tb.Fatalf("unexpected escape %q", "ESC["+arg+string(cmd))
			}
		case r == '\r':
			s.col = 0
		case r == '\n':
			s.row, s.col = s.row+1, 0
		case r < 0x20 || r == 0x7f:
			s.tb.Fatalf("unexpected control character %q", r)
		default:
			s.line()
			for len(s.lines[s.row]) <= s.col {
				s.lines[s.row] = append(s.lines[s.row], ' ')
			}
			s.lines[s.row][s.col] = r
			s.col++
		}
	}
}

func (s *screen) line() {
	for len(s.lines) <= s.row {
		s.lines = append(s.lines, nil)
	}
}

// text is the screen's lines, trailing blanks trimmed, the empty last one dropped.
func (s *screen) text() []string {
	var out []string
	for _, l := range s.lines {
		out = append(out, strings.TrimRight(string(l), " "))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

func show(tb testing.TB, rows int, out string) *screen {
	tb.Helper()
	s := &screen{tb: tb, rows: rows}
	s.write(out)
	return s
}

func bar(n, width int) string {
	if n >= width {
		return "[" + strings.Repeat("=", width) + "]"
	}
	return "[" + strings.Repeat("=", n) + ">" + strings.Repeat(" ", width-n-1) + "]"
}

// row is a step line of the live view at 120 columns: the detail after the
// step, the status and timer ending at column 119.
func row(icon, step, detail, status, timer string) string {
	left := " " + icon + " " + step + " " + detail
	right := status + strings.Repeat(" ", 6-len(status)) + fmt.Sprintf("%5s", timer)
	return left + strings.Repeat(" ", 119-utf8.RuneCountInString(left)-len(right)) + right
}

func TestProgressLiveView(t *testing.T) {
	size := func() (int, int) { return 120, 40 }
	p, buf, clock := run(t, Options{TTY: true, Size: size, Title: "Migrating"}, fullPass())

	// 0 s: the first frame; 0.04 s (create): none, too soon; 0.24 s (copy
	// starts) and every report a second apart: one each.
	s := show(t, 40, buf.String())
	if s.frames != 6 {
		t.Errorf("got %d frames, want 6 (one per event, but none within 100ms of the previous)", s.frames)
	}
	want := []string{
		"[+] Migrating 2/3",
		row("✔", "Plan  ", "1 volume(s), services app", "Done", "0.0s"),
		row("✔", "Create", "v", "Done", "0.2s"),
		row(spinner[0], "Copy  ", "full pass /src -> v", "", "4.0s"),
		"   " + bar(19, 50) + "  400.0MiB/1.0GiB  40,000/100,000 files  100.0MiB/s  ETA 7s",
	}
	if got := s.text(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got screen\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	clock.at(ms(4500))
	p.Event(progress.Event{Step: progress.Stop, Targets: []string{"app"}})
	clock.at(ms(5000))
	p.Close(nil)
	s = show(t, 40, buf.String())
	want = []string{
		"[+] Migrating 4/4",
		row("✔", "Plan  ", "1 volume(s), services app", "Done", "0.0s"),
		row("✔", "Create", "v", "Done", "0.2s"),
		row("✔", "Copy  ", "full pass /src -> v", "Done", "4.0s"),
		"   40,000 files, 400.0MiB in 4.0s, 100.0MiB/s",
		row("✔", "Stop  ", "app", "Done", "0.5s"),
	}
	if got := s.text(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("after Close: got screen\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	before := buf.Len()
	p.Event(progress.Event{Step: "late"})
	p.Close(nil)
	if buf.Len() != before {
		t.Errorf("after Close, an event and a second Close wrote %q, want nothing", buf.String()[before:])
	}
}

func TestProgressLiveViewColors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		color bool
		want  []string
	}{
		{"colors", true, []string{"\x1b[32m✔\x1b[0m", "\x1b[32mDone\x1b[0m", "\x1b[34m0.2s\x1b[0m", "\x1b[33m" + spinner[0] + "\x1b[0m", "\x1b[31m✘\x1b[0m", "\x1b[31mError\x1b[0m"}},
		{"NO_COLOR", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, buf, clock := run(t, Options{TTY: true, Color: tc.color}, fullPass())
			clock.at(5 * time.Second)
			p.Close(errors.New("boom"))
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%q", w, out)
				}
			}
			if !tc.color && (strings.Contains(out, "\x1b[0m") || strings.Contains(out, "\x1b[3")) {
				t.Errorf("without colour, got an SGR sequence in\n%q", out)
			}
			s := show(t, 24, out)
			if got := s.text(); !strings.HasPrefix(got[3], " ✘ Copy") || !strings.Contains(got[3], "Error  4.0s") {
				t.Errorf("after Close with an error: got %q, want the running copy ✘ with Error  4.0s", got[3])
			}
		})
	}
}

func TestProgressLiveViewFits(t *testing.T) {
	long := "/" + strings.Repeat("very/long/path/", 20)
	steps := append(fullPass(), copyStart(5*time.Second, "full", long, "v"), copyEv(6*time.Second, "v", "full", mib, gib, 1, 100000))
	for _, cols := range []int{10, 30, 60, 80, 111, 200} {
		t.Run(strconv.Itoa(cols), func(t *testing.T) {
			_, buf, _ := run(t, Options{TTY: true, Size: func() (int, int) { return cols, 40 }}, steps)
			s := show(t, 40, buf.String())
			for _, l := range s.text() {
				if n := utf8.RuneCountInString(l); n > cols-1 {
					t.Errorf("line of %d columns on a terminal of %d: %q", n, cols, l)
				}
			}
			hasBar := strings.Contains(buf.String(), "[=")
			if wantBar := cols >= 80; hasBar != wantBar {
				t.Errorf("got a bar: %v, want %v (a bar needs 10 columns besides the numbers)", hasBar, wantBar)
			}
		})
	}
}

func TestProgressLiveViewKeepsToTheScreen(t *testing.T) {
	var steps []step
	for i := range 30 {
		steps = append(steps, ev(time.Duration(i)*time.Second, progress.Event{Step: progress.Create, Target: fmt.Sprintf("volume%d", i)}))
	}
	p, buf, clock := run(t, Options{TTY: true, Size: func() (int, int) { return 80, 8 }}, steps)
	s := show(t, 8, buf.String()) // fails on a cursor move above the 8 rows
	if got := s.text(); len(got) != 7 || got[0] != "[+] Running 29/30" || !strings.Contains(got[6], "volume29") {
		t.Errorf("got screen %q, want the header and the last 6 steps", got)
	}
	clock.at(31 * time.Second)
	p.Close(nil)
	s = show(t, 8, buf.String())
	if got := s.text(); len(got) != 31 || got[0] != "[+] Running 30/30" {
		t.Errorf("after Close: got %d lines (%q), want the header and all 30 steps", len(got), got[0])
	}
}

func TestProgressPlain(t *testing.T) {
	steps := append(fullPass(),
		copyEnd(ms(4240), "full", "/src", "v", 400*mib, 40000),
		ev(ms(4500), progress.Event{Step: progress.Stop, Targets: []string{"app"}}),
		// The delta pass runs the volumes side by side: a second copy does not end the first.
		copyStart(ms(5000), "delta", "/src", "v"),
		copyStart(ms(5000), "delta", "/src2", "w"),
		copyEv(ms(6000), "w", "delta", 0, 0, 1, 0),
		copyEv(ms(7000), "v", "delta", 3*1024, 0, 3, 0),
		copyEnd(ms(7000), "delta", "/src", "v", 3*1024, 3),
		copyEv(ms(7500), "w", "delta", 2*mib, 0, 2, 0),
		copyEnd(ms(7500), "delta", "/src2", "w", 2*mib, 2),
		ev(ms(8000), progress.Event{Step: progress.Verify, Target: "v", Source: "/src", Group: "verify"}),
		ev(ms(8000), progress.Event{Step: progress.Verify, Target: "w", Source: "/src2", Group: "verify"}),
		ev(ms(8500), progress.Event{Step: progress.Verify, Phase: progress.Done, Target: "w", Group: "verify"}),
		ev(ms(8700), progress.Event{Step: progress.Verify, Phase: progress.Done, Target: "v", Group: "verify"}),
		ev(ms(9000), progress.Event{Step: progress.Rewrite, Count: 1}),
		ev(ms(9500), progress.Event{Step: progress.Remount, Target: "app\x1b[2J"}),
	)
	p, buf, clock := run(t, Options{Prefix: "migrate"}, steps)
	clock.at(10 * time.Second)
	p.Close(nil)
	want := `migrate: plan 1 volume(s), services app
migrate: create v
migrate: copy full pass /src -> v
migrate: copy v (full pass): 200.0MiB/1.0GiB, 20,000/100,000 files, 100.0MiB/s, ETA 9s
migrate: copy v (full pass): 400.0MiB/1.0GiB, 40,000/100,000 files, 100.0MiB/s, ETA 7s
migrate: copy v (full pass) done: 40,000 files, 400.0MiB in 4.0s, 100.0MiB/s
migrate: stop app
migrate: copy delta pass /src -> v
migrate: copy delta pass /src2 -> w
migrate: copy v (delta pass): 3.0KiB, 3 files, 1.5KiB/s
migrate: copy v (delta pass) done: 3 files, 3.0KiB in 2.0s, 1.5KiB/s
migrate: copy w (delta pass): 2.0MiB, 2 files, 819.2KiB/s
migrate: copy w (delta pass) done: 2 files, 2.0MiB in 2.5s, 819.2KiB/s
migrate: verify v
migrate: verify w
migrate: rewrite 1 compose file(s)
migrate: remount app?[2J
`
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(buf.String(), "\x1b") {
		t.Errorf("plain output has an escape: %q", buf.String())
	}
}

func TestProgressPlainFailedCopy(t *testing.T) {
	p, buf, clock := run(t, Options{Prefix: "migrate"}, fullPass())
	clock.at(5 * time.Second)
	p.Close(errors.New("boom"))
	if got := buf.String(); strings.Contains(got, "done") || strings.Contains(got, "boom") {
		t.Errorf("a failed copy: got\n%s\nwant no done line and no error (the caller prints it)", got)
	}
}

func TestOptionsFor(t *testing.T) {
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
	for _, tc := range []struct {
		name      string
		tty       bool
		getenv    func(string) string
		wantTTY   bool
		wantColor bool
	}{
		{"not a terminal", false, env("TERM", "xterm"), false, false},
		{"terminal", true, env("TERM", "xterm-256color"), true, true},
		{"terminal, NO_COLOR", true, env("TERM", "xterm", "NO_COLOR", "1"), true, false},
		{"terminal, empty NO_COLOR", true, env("TERM", "xterm", "NO_COLOR", ""), true, true},
		{"TERM=dumb", true, env("TERM", "dumb"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := OptionsFor(tc.tty, tc.getenv)
			if o.TTY != tc.wantTTY || o.Color != tc.wantColor {
				t.Errorf("got TTY %v colour %v, want %v %v", o.TTY, o.Color, tc.wantTTY, tc.wantColor)
			}
		})
	}

	var quiet *Progress // what the commands call with --quiet
	quiet.Start()
	quiet.Event(progress.Event{Step: progress.Plan})
	quiet.Close(nil)
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

func TestTerminal(t *testing.T) {
	pts := openPTY(t)
	if err := unix.IoctlSetWinsize(int(pts.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: 101, Row: 33}); err != nil {
		t.Fatal(err)
	}
	if !IsTerminal(pts) {
		t.Errorf("a pty: got no terminal")
	}
	if cols, rows := TerminalSize(pts)(); cols != 101 || rows != 33 {
		t.Errorf("got size %dx%d, want 101x33", cols, rows)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if IsTerminal(w) || IsTerminal(&bytes.Buffer{}) {
		t.Errorf("a pipe or a buffer: got a terminal")
	}
	if cols, rows := TerminalSize(w)(); cols != 0 || rows != 0 {
		t.Errorf("size of a pipe: got %dx%d, want 0x0", cols, rows)
	}
}

// TestProgressTicker: started, the live view moves without events (spinner,
// timers) until Close.
func TestProgressTicker(t *testing.T) {
	var buf syncBuffer
	p := New(&buf, Options{TTY: true})
	p.Start()
	p.Event(progress.Event{Step: progress.Stop, Targets: []string{"app"}})
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(buf.String(), "[+]") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	p.Close(nil)
	n := strings.Count(buf.String(), "[+]")
	if n < 3 {
		t.Fatalf("got %d frames in 10s, want the ticker's redraws", n)
	}
	time.Sleep(300 * time.Millisecond)
	if m := strings.Count(buf.String(), "[+]"); m != n {
		t.Errorf("got %d frames after Close, want %d (the ticker stopped)", m, n)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestProgressCopyFigures(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := New(io.Discard, Options{Bytes: migrate.HumanBytes})
	for _, tc := range []struct {
		name    string
		c       totals
		d       time.Duration
		fields  string
		summary string
	}{
		{"nothing to copy", totals{}, ms(600), "0B, 0 files", "0 files, 0B in 0.6s"},
		{"one empty file", totals{files: 1}, ms(600), "0B, 1 file", "1 file, 0B in 0.6s"},
		{"one file of a known total", totals{bytes: 512, totalBytes: 1024, totalFiles: 1}, 2 * time.Second,
			"512B/1.0KiB, 0/1 file, 256B/s, ETA 2s", "0 files, 512B in 2.0s, 256B/s"},
		{"files", totals{bytes: 3 * 1024, files: 3}, 2 * time.Second,
			"3.0KiB, 3 files, 1.5KiB/s", "3 files, 3.0KiB in 2.0s, 1.5KiB/s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := &task{start: t0, end: t0.Add(tc.d), copy: &copyState{last: tc.c,
				samples: []sample{{at: t0}, {at: t0.Add(tc.d), bytes: tc.c.bytes}}}}
			if got := strings.Join(p.copyFields(tk.copy), ", "); got != tc.fields {
				t.Errorf("running: got %q, want %q", got, tc.fields)
			}
			if got := p.copySummary(tk); got != tc.summary {
				t.Errorf("ended: got %q, want %q", got, tc.summary)
			}
		})
	}
}

func TestProgressFormats(t *testing.T) {
	p := New(io.Discard, Options{Bytes: migrate.HumanBytes})
	compactBytes := p.compactBytes
	for _, tc := range []struct{ got, want string }{
		{compactBytes(0), "0B"},
		{compactBytes(1023), "1023B"},
		{compactBytes(1024), "1.0KiB"},
		{compactBytes(412*mib + 300*1024), "412.3MiB"},
		{compactBytes(gib), "1.0GiB"},
		{compactBytes(1 << 62), "4.0EiB"},
		{groupDigits(0), "0"},
		{groupDigits(999), "999"},
		{groupDigits(51203), "51,203"},
		{groupDigits(100000), "100,000"},
		{groupDigits(1234567), "1,234,567"},
		{groupDigits(-1234), "-1,234"},
		{formatETA(0), "0s"},
		{formatETA(ms(5200)), "6s"},
		{formatETA(65 * time.Second), "1m05s"},
		{formatETA(2*time.Hour + 3*time.Minute + 4*time.Second), "2h03m"},
		{truncate("abcdef", 4), "abc…"},
		{truncate("abc", 4), "abc"},
		{truncate("abc", 0), ""},
		{clean("a\x1b[2Jb\tc\u009bd"), "a?[2Jb?c?d"},
		{capitalize("remount rollback"), "Remount rollback"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestDescribe: every step's line is made of the event's fields.
func TestDescribe(t *testing.T) {
	for _, tc := range []struct {
		e    progress.Event
		want string
	}{
		{progress.Event{Step: progress.Plan, Count: 3, Targets: []string{"cli", "gateway"}}, "plan 3 volume(s), services cli, gateway"},
		{progress.Event{Step: progress.Resume, From: "copied"}, "resume from step copied"},
		{progress.Event{Step: progress.Create, Target: "p_data"}, "create p_data"},
		{progress.Event{Step: progress.Copy, Pass: "delta", Source: "/srv/data", Target: "p_data"}, "copy delta pass /srv/data -> p_data"},
		{progress.Event{Step: progress.CopyBack, Source: "/srv/data", Target: "p_data"}, "copy back p_data -> /srv/data"},
		{progress.Event{Step: progress.Stop, Targets: []string{"cli", "gateway"}}, "stop cli, gateway"},
		{progress.Event{Step: progress.Stop, Target: "p-app-1"}, "stop p-app-1"},
		{progress.Event{Step: progress.Verify, Source: "/srv/data", Target: "p_data"}, "verify p_data"},
		{progress.Event{Step: progress.Rewrite, Count: 1}, "rewrite 1 compose file(s)"},
		{progress.Event{Step: progress.Remount, Target: "app"}, "remount app"},
		{progress.Event{Step: progress.Check, Targets: []string{"app", "db"}}, "check app, db"},
		{progress.Event{Step: progress.Finish, Target: "p_data"}, "finish p_data"},
		{progress.Event{Step: progress.Rollback, From: "verified"}, "rollback from step verified"},
		{progress.Event{Step: progress.Rollback, Target: "p-app-1"}, "rollback p-app-1"},
		{progress.Event{Step: progress.Rollback, Targets: []string{"app", "db"}}, "rollback app, db"},
		{progress.Event{Step: progress.Restore, Count: 2}, "restore 2 compose file(s)"},
		{progress.Event{Step: progress.RemountUndo, Target: "app"}, "remount rollback app"},
		{progress.Event{Step: progress.RemountBinds, Target: "app"}, "remount app onto its binds"},
		{progress.Event{Step: progress.Rejoin, Target: "sidecar"}, "rejoin sidecar"},
		{progress.Event{Step: progress.Commit, Target: "moltctl-snapshot/p-app:3"}, "commit moltctl-snapshot/p-app:3"},
		{progress.Event{Step: progress.Commit, Source: "p-app-1", Target: "moltctl-snapshot/p-app:3"}, "commit p-app-1 -> moltctl-snapshot/p-app:3"},
		{progress.Event{Step: progress.Rebase, Target: "moltctl-snapshot/p-app:4"}, "rebase moltctl-snapshot/p-app:4"},
		{progress.Event{Step: progress.Compose, Command: []string{"up", "--no-start", "app"}}, "compose docker compose up --no-start app"},
		{progress.Event{Step: progress.Template, Command: []string{"up", "--scale", "web=3"}}, "template docker compose up --scale web=3"},
		{progress.Event{Step: progress.Swap, Target: "p-app-1"}, "swap p-app-1"},
		{progress.Event{Step: progress.Start, Target: "p-app-1"}, "start p-app-1"},
		{progress.Event{Step: progress.Wait, Timeout: 30 * time.Second}, "wait up to 30s"},
		{progress.Event{Step: progress.Wait, Targets: []string{"app", "db"}, Timeout: 10 * time.Second}, "wait app, db, up to 10s"},
		{progress.Event{Step: progress.Replica, Target: "p-web-2"}, "replica p-web-2"},
	} {
		t.Run(string(tc.e.Step), func(t *testing.T) {
			_, buf, _ := run(t, Options{Prefix: "p"}, []step{ev(0, tc.e)})
			if got, want := buf.String(), "p: "+tc.want+"\n"; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// TestProgressGroups: steps of one group run side by side and end on their
// own events, a failed one ✘ while the other goes on; a step of no group ends
// the running ones; totals of a copy the library did not announce get a line.
func TestProgressGroups(t *testing.T) {
	delta := func(at time.Duration, src, vol string, ph progress.Phase) step {
		s := copyStart(at, "delta", src, vol)
		s.e.Phase = ph
		return s
	}
	steps := []step{
		ev(0, progress.Event{Step: progress.Stop, Targets: []string{"app"}}),
		delta(ms(500), "/a", "v", progress.Started),
		delta(ms(600), "/b", "w", progress.Started),
		copyEv(ms(1600), "w", "delta", 2048, 0, 2, 0),
		delta(ms(1700), "/b", "w", progress.Failed),
		copyEv(ms(2500), "v", "delta", 1024, 0, 1, 0),
		// The end's totals are final: they may differ from the last report's.
		ev(ms(2600), progress.Event{Step: progress.Copy, Phase: progress.Done, Target: "v", Pass: "delta", Bytes: 1536, Files: 2}),
		ev(ms(3000), progress.Event{Step: progress.Verify, Target: "v", Group: "verify"}),
		ev(ms(3000), progress.Event{Step: progress.Verify, Target: "w", Group: "verify"}),
		ev(ms(3500), progress.Event{Step: progress.Verify, Phase: progress.Done, Target: "w", Group: "verify"}),
		ev(ms(4000), progress.Event{Step: progress.Rewrite, Count: 1}),
		ev(ms(4300), progress.Event{Step: progress.Rejoin, Target: "db"}),
		copyEv(ms(4400), "x", "full", 512, 0, 1, 0),
	}
	p, buf, clock := run(t, Options{TTY: true, Size: func() (int, int) { return 120, 40 }, Title: "Migrating"}, steps)
	clock.at(ms(5000))
	p.Close(nil)
	want := []string{
		"[+] Migrating 7/8",
		row("✔", "Stop   ", "app", "Done", "0.5s"),
		row("✔", "Copy   ", "delta pass /a -> v", "Done", "2.1s"),
		"   2 files, 1.5KiB in 2.1s, 731B/s",
		row("✘", "Copy   ", "delta pass /b -> w", "Error", "1.1s"),
		"   2 files, 2.0KiB in 1.1s, 1.8KiB/s",
		row("✔", "Verify ", "v", "Done", "1.0s"),
		row("✔", "Verify ", "w", "Done", "0.5s"),
		row("✔", "Rewrite", "1 compose file(s)", "Done", "0.3s"),
		row("✔", "Rejoin ", "db", "Done", "0.7s"), // the unannounced copy did not end it
		row("✔", "Copy   ", "x", "Done", "0.0s"),
		"   1 file, 512B in 0.0s",
	}
	if got := show(t, 40, buf.String()).text(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got screen\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestProgressPlainCopyBack(t *testing.T) {
	back := progress.Event{Step: progress.CopyBack, Target: "v", Source: "/srv/data"}
	running, done := back, back
	running.Phase, running.Bytes, running.Files = progress.Running, 2*mib, 20
	done.Phase, done.Bytes, done.Files = progress.Done, 3*mib, 30
	p, buf, clock := run(t, Options{Prefix: "migrate"}, []step{ev(0, back), ev(3*time.Second, running), ev(4*time.Second, done)})
	clock.at(5 * time.Second)
	p.Close(nil)
	want := `migrate: copy back v -> /srv/data
migrate: copy back v: 2.0MiB, 20 files, 682.7KiB/s
migrate: copy back v done: 30 files, 3.0MiB in 4.0s, 768.0KiB/s
`
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
