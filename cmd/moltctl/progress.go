package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/migrate"
	"github.com/moltctl/moltctl/internal/volumes"
)

// progressOptions configures a progress renderer.
type progressOptions struct {
	// TTY draws the live view of docker compose (one line per step, a
	// spinner while it runs, a docker pull style bar per copy), redrawn in
	// place with ANSI cursor moves; otherwise plain lines, never an escape.
	TTY bool
	// Color adds SGR colours to the live view (TTY only).
	Color bool
	// Size returns the terminal's columns and rows (TTY only); nil, or a
	// zero, means 80 columns and 24 rows.
	Size func() (cols, rows int)
	// Title heads the live view: "[+] Migrating 3/7" (default "Running").
	Title string
	// Prefix starts every plain line: "migrate: copy ..." (default "progress").
	Prefix string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// progressOptionsFor chooses the mode for a writer that is a terminal (tty)
// or not, with the environment getenv: TERM=dumb gives plain lines, a
// non-empty NO_COLOR (no-color.org) a live view without colours.
func progressOptionsFor(tty bool, getenv func(string) string) progressOptions {
	if !tty || getenv("TERM") == "dumb" {
		return progressOptions{}
	}
	return progressOptions{TTY: true, Color: getenv("NO_COLOR") == ""}
}

// terminalSize returns a function giving the columns and rows of the
// terminal w is (0, 0 when w has no file descriptor or is no terminal).
func terminalSize(w io.Writer) func() (int, int) {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return func() (int, int) { return 0, 0 }
	}
	fd := int(f.Fd())
	return func() (int, int) {
		ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		if err != nil {
			return 0, 0
		}
		return int(ws.Col), int(ws.Row)
	}
}

const (
	// frameInterval: the live view is redrawn at most this often.
	frameInterval = 100 * time.Millisecond
	// plainCopyInterval: a running copy gives a plain line at most this often.
	plainCopyInterval = 2 * time.Second
	// rateWindow: the rate is the average over about this long.
	rateWindow = 3 * time.Second
	// barWidth is the widest bar (docker pull's).
	barWidth = 50
)

// concurrentKinds are the kinds of step the library runs for the volumes
// side by side (internal/migrate: the delta pass and the verification): a
// new step of such a kind does not end the running ones of that kind.
var concurrentKinds = map[string]bool{"copy " + string(volumes.PassDelta): true, "verify": true}

type taskState int

const (
	taskRunning taskState = iota
	taskDone
	taskFailed
)

// task is one step line: it runs from its event to the next event that is
// not of a kind run side by side with it (the library reports no ends).
type task struct {
	step, detail, kind string
	volume             string // copy tasks
	start, end         time.Time
	state              taskState
	copy               *copyState
}

type sample struct {
	at    time.Time
	bytes int64
}

// copyState is a copy task's running totals.
type copyState struct {
	last     volumes.Progress
	lastAt   time.Time
	samples  []sample // within about rateWindow, oldest first
	lastLine time.Time
}

// rate is the moving average of bytes per second over the samples (0 when
// unknown).
func (c *copyState) rate() float64 {
	if len(c.samples) < 2 {
		return 0
	}
	a, b := c.samples[0], c.samples[len(c.samples)-1]
	d := b.at.Sub(a.at).Seconds()
	if d <= 0 || b.bytes < a.bytes {
		return 0
	}
	return float64(b.bytes-a.bytes) / d
}

// progress renders migrate.Events on a writer (see progressOptions). Its
// methods may be called from several goroutines; a nil *progress does nothing.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	o        progressOptions
	tasks    []*task
	lines    int // lines of the last frame
	lastDraw time.Time
	dirty    bool
	closed   bool
	stop     chan struct{}
	stopped  chan struct{}
}

// newProgress returns a renderer writing to w; it writes nothing before the
// first event. In TTY mode, start it for the spinner and the timers to move
// between events.
func newProgress(w io.Writer, o progressOptions) *progress {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Title == "" {
		o.Title = "Running"
	}
	if o.Prefix == "" {
		o.Prefix = "progress"
	}
	return &progress{w: w, o: o}
}

// start redraws the live view every frameInterval until Close (TTY mode
// only; plain mode needs no ticker).
func (p *progress) start() {
	if p == nil || !p.o.TTY || p.stop != nil {
		return
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(frameInterval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.tick()
			}
		}
	}()
}

// tick redraws the live view when something changed or runs.
func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.tasks) == 0 {
		return
	}
	if p.dirty || p.running() {
		p.draw(false)
	}
}

func (p *progress) running() bool {
	for _, t := range p.tasks {
		if t.state == taskRunning {
			return true
		}
	}
	return false
}

// Event takes one report of the library (migrate.RunOptions.Progress).
func (p *progress) Event(e migrate.Event) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	now := p.o.Now()
	if e.Copy != nil {
		p.copyEvent(now, e)
	} else {
		p.stepEvent(now, e)
	}
	if p.o.TTY {
		p.dirty = true
		if p.lines == 0 || now.Sub(p.lastDraw) >= frameInterval {
			p.draw(false)
		}
	}
}

func kindOf(e migrate.Event) string {
	if e.Step == "copy" {
		pass, _, _ := strings.Cut(e.Detail, " ")
		return "copy " + pass
	}
	return e.Step
}

func (p *progress) stepEvent(now time.Time, e migrate.Event) {
	t := &task{step: clean(e.Step), detail: clean(e.Detail), kind: kindOf(e), start: now, volume: e.Volume}
	for _, r := range p.tasks {
		if r.state == taskRunning && !(r.kind == t.kind && concurrentKinds[t.kind]) {
			p.finish(r, now, taskDone)
		}
	}
	if e.Step == "copy" && t.volume == "" {
		// "full pass SOURCE -> VOLUME"
		if i := strings.LastIndex(e.Detail, " -> "); i >= 0 {
			t.volume = e.Detail[i+len(" -> "):]
		}
	}
	if e.Step == "copy" {
		t.copy = &copyState{samples: []sample{{at: now}}}
	}
	p.tasks = append(p.tasks, t)
	if !p.o.TTY {
		fmt.Fprintf(p.w, "%s: %s\n", p.o.Prefix, strings.TrimSpace(t.step+" "+t.detail))
	}
}

func (p *progress) copyEvent(now time.Time, e migrate.Event) {
	var t *task
	for i := len(p.tasks) - 1; i >= 0 && t == nil; i-- {
		if r := p.tasks[i]; r.copy != nil && r.state == taskRunning && r.volume == e.Volume {
			t = r
		}
	}
	if t == nil { // a copy the library did not announce: a line of its own
		t = &task{step: "copy", detail: clean(e.Volume), kind: "copy " + string(e.Copy.Pass), volume: e.Volume,
			start: now, copy: &copyState{samples: []sample{{at: now}}}}
		p.tasks = append(p.tasks, t)
	}
	c := t.copy
	c.last, c.lastAt = *e.Copy, now
	c.samples = append(c.samples, sample{at: now, bytes: e.Copy.Bytes})
	for len(c.samples) > 2 && !c.samples[1].at.After(now.Add(-rateWindow)) {
		c.samples = c.samples[1:]
	}
	if !p.o.TTY {
		since := c.lastLine
		if since.IsZero() {
			since = t.start
		}
		if now.Sub(since) >= plainCopyInterval {
			c.lastLine = now
			fmt.Fprintf(p.w, "%s: copy %s (%s pass): %s\n", p.o.Prefix, clean(t.volume), c.last.Pass, strings.Join(copyFields(c), ", "))
		}
	}
}

// finish ends a task; a copy ends at its last report (the library's last
// one comes when the pass is complete).
func (p *progress) finish(t *task, now time.Time, state taskState) {
	t.state, t.end = state, now
	if t.copy != nil && !t.copy.lastAt.IsZero() {
		t.end = t.copy.lastAt
	}
	if !p.o.TTY && t.copy != nil && state == taskDone && !t.copy.lastAt.IsZero() {
		fmt.Fprintf(p.w, "%s: copy %s (%s pass) done: %s\n", p.o.Prefix, clean(t.volume), t.copy.last.Pass, copySummary(t))
	}
}

// Close ends the running steps, done when err is nil and failed otherwise,
// draws the last frame and stops the ticker. Later events are ignored.
func (p *progress) Close(err error) {
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	now := p.o.Now()
	state := taskDone
	if err != nil {
		state = taskFailed
	}
	for _, t := range p.tasks {
		if t.state == taskRunning {
			p.finish(t, now, state)
		}
	}
	if p.o.TTY && len(p.tasks) > 0 {
		p.draw(true)
	}
	p.closed = true
	stop := p.stop
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		<-p.stopped
	}
}

// draw writes one frame of the live view over the previous one. Unless
// final, it shows no more lines than the terminal has rows (the cursor
// cannot move above the screen): the header and the latest steps.
func (p *progress) draw(final bool) {
	now := p.o.Now()
	cols, rows := 0, 0
	if p.o.Size != nil {
		cols, rows = p.o.Size()
	}
	if cols <= 0 {
		cols = 80
	}
	if rows <= 0 {
		rows = 24
	}
	lines := p.frame(now, cols)
	if !final && len(lines) > rows-1 {
		lines = append(lines[:1], lines[len(lines)-(rows-2):]...)
	}
	var b strings.Builder
	b.WriteString("\x1b[?25l") // hide the cursor while drawing
	if p.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.lines)
	}
	b.WriteString("\r")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\x1b[K\n")
	}
	b.WriteString("\x1b[J\x1b[?25h")
	io.WriteString(p.w, b.String())
	p.lines, p.lastDraw, p.dirty = len(lines), now, false
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

const (
	sgrRed    = "31"
	sgrGreen  = "32"
	sgrYellow = "33"
	sgrBlue   = "34"
)

func (p *progress) paint(s, sgr string) string {
	if !p.o.Color || s == "" {
		return s
	}
	return "\x1b[" + sgr + "m" + s + "\x1b[0m"
}

// paintPadded paints s without the blanks around it.
func (p *progress) paintPadded(s, sgr string) string {
	t := strings.TrimSpace(s)
	if t == "" {
		return s
	}
	i := strings.Index(s, t)
	return s[:i] + p.paint(t, sgr) + s[i+len(t):]
}

// frame returns the lines of the live view, each at most cols-1 columns.
func (p *progress) frame(now time.Time, cols int) []string {
	done, stepW := 0, 0
	for _, t := range p.tasks {
		if t.state == taskDone {
			done++
		}
		stepW = max(stepW, utf8.RuneCountInString(t.step))
	}
	width := cols - 1
	lines := []string{truncate(fmt.Sprintf("[+] %s %d/%d", p.o.Title, done, len(p.tasks)), width)}
	for _, t := range p.tasks {
		icon, iconSGR, status, statusSGR := "", sgrYellow, "", ""
		end := now
		switch t.state {
		case taskRunning:
			icon = spinner[int(now.Sub(t.start)/frameInterval)%len(spinner)]
		case taskDone:
			icon, iconSGR, status, statusSGR, end = "✔", sgrGreen, "Done", sgrGreen, t.end
		case taskFailed:
			icon, iconSGR, status, statusSGR, end = "✘", sgrRed, "Error", sgrRed, t.end
		}
		// Right-aligned in 5 columns: "Done" stays in its column up to 99.9s.
		timer := fmt.Sprintf("%5s", fmt.Sprintf("%.1fs", end.Sub(t.start).Seconds()))
		step := capitalize(t.step)
		step += strings.Repeat(" ", stepW-utf8.RuneCountInString(step))
		status += strings.Repeat(" ", 6-len(status))
		// " ✔ Copy   full pass /a -> v      Done  1.2s": the detail takes the
		// room between the step and the status, the timer ends the line.
		fixed := 1 + 1 + 1 + utf8.RuneCountInString(step) + 1 + 1 + len(status) + len(timer)
		room := width - fixed - 1
		if room < 0 {
			lines = append(lines, truncate(" "+icon+" "+step+" "+status+timer, width))
		} else {
			detail := truncate(t.detail, room)
			pad := room - utf8.RuneCountInString(detail) + 1
			lines = append(lines, " "+p.paint(icon, iconSGR)+" "+step+" "+detail+strings.Repeat(" ", pad)+" "+
				p.paintPadded(status, statusSGR)+p.paintPadded(timer, sgrBlue))
		}
		if t.copy != nil && (t.state == taskRunning || !t.copy.lastAt.IsZero()) {
			lines = append(lines, p.copyLine(t, width))
		}
	}
	return lines
}

// copyLine is the line under a copy step: while it runs, a docker pull style
// bar (when the totals are known) with bytes, files, rate and ETA; when it
// ended, what it copied.
func (p *progress) copyLine(t *task, width int) string {
	const indent = "   "
	if t.state != taskRunning {
		return truncate(indent+copySummary(t), width)
	}
	rest := "  " + strings.Join(copyFields(t.copy), "  ")
	// [====>     ] takes the room the numbers leave, up to barWidth.
	bw := min(barWidth, width-len(indent)-2-utf8.RuneCountInString(rest))
	c := t.copy.last
	frac := -1.0
	switch {
	case c.TotalBytes > 0:
		frac = float64(c.Bytes) / float64(c.TotalBytes)
	case c.TotalFiles > 0:
		frac = float64(c.Files) / float64(c.TotalFiles)
	}
	if frac < 0 || bw < 10 {
		return truncate(indent+strings.TrimLeft(rest, " "), width)
	}
	n := min(int(frac*float64(bw)), bw)
	bar := strings.Repeat("=", n)
	if n < bw {
		bar += ">" + strings.Repeat(" ", bw-n-1)
	}
	return indent + "[" + bar + "]" + rest
}

// copyFields are a running copy's figures: bytes, files, rate and, when the
// totals are known, the ETA.
func copyFields(c *copyState) []string {
	l := c.last
	b := compactBytes(l.Bytes)
	if l.TotalBytes > 0 {
		b += "/" + compactBytes(l.TotalBytes)
	}
	f := groupDigits(l.Files)
	if l.TotalFiles > 0 {
		f += "/" + groupDigits(l.TotalFiles)
	}
	fields := []string{b, f + files(max(l.Files, l.TotalFiles))}
	r := c.rate()
	if r > 0 {
		fields = append(fields, compactBytes(int64(r))+"/s")
		if l.TotalBytes > 0 && l.Bytes < l.TotalBytes {
			fields = append(fields, "ETA "+formatETA(time.Duration(float64(l.TotalBytes-l.Bytes)/r*float64(time.Second))))
		}
	}
	return fields
}

// copySummary is what an ended copy did: files, bytes, time, average rate.
func copySummary(t *task) string {
	l := t.copy.last
	d := t.end.Sub(t.start)
	s := fmt.Sprintf("%s%s, %s in %.1fs", groupDigits(l.Files), files(l.Files), compactBytes(l.Bytes), d.Seconds())
	if d > 0 && l.Bytes > 0 {
		s += ", " + compactBytes(int64(float64(l.Bytes)/d.Seconds())) + "/s"
	}
	return s
}

func files(n int64) string {
	if n == 1 {
		return " file"
	}
	return " files"
}

// compactBytes is n in binary units without a space: 512B, 412.3MiB.
func compactBytes(n int64) string { return strings.ReplaceAll(humanBytes(n), " ", "") }

// groupDigits writes n with thousands separators: 51,203.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// formatETA rounds d up to seconds: 6s, 1m05s, 2h03m.
func formatETA(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	default:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
}

// truncate cuts s to at most n runes, ending with "…" when cut.
func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// clean replaces control characters (an escape in a path would move the
// cursor) with '?'.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || r < 'a' || r > 'z' {
		return s
	}
	return string(r-'a'+'A') + s[n:]
}
