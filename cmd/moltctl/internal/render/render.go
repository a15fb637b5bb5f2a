// Package render draws the progress events of moltctl's libraries
// (internal/progress) on a terminal: the live view of docker compose ("[+]
// Migrating 3/7", one line per step with a spinner, a docker pull style bar
// per copy) redrawn in place, or plain lines ("migrate: copy ...") when the
// output is no terminal. It knows the steps only through the events: which
// run side by side comes from their Group.
package render

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/moltctl/moltctl/internal/progress"
)

// Options configure a renderer.
type Options struct {
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
	// Bytes formats a byte count ("1.5 GiB"; default "1536 B"); the
	// renderer drops its blanks (1.5GiB).
	Bytes func(int64) string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// OptionsFor chooses the mode for a writer that is a terminal (tty) or not,
// with the environment getenv: TERM=dumb gives plain lines, a non-empty
// NO_COLOR (no-color.org) a live view without colours.
func OptionsFor(tty bool, getenv func(string) string) Options {
	if !tty || getenv("TERM") == "dumb" {
		return Options{}
	}
	return Options{TTY: true, Color: getenv("NO_COLOR") == ""}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// TerminalSize returns a function giving the columns and rows of the
// terminal w is (0, 0 when w has no file descriptor or is no terminal).
func TerminalSize(w io.Writer) func() (int, int) {
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

type taskState int

const (
	taskRunning taskState = iota
	taskDone
	taskFailed
)

// task is one step line: it runs from its Started event to its Done or
// Failed one or, for a step that reports no end, to the next Started event
// not of its Group.
type task struct {
	step, detail string
	ev           progress.Event // the Started event
	start, end   time.Time
	state        taskState
	copy         *copyState
}

// totals are a copy's figures.
type totals struct {
	bytes, totalBytes, files, totalFiles int64
}

type sample struct {
	at    time.Time
	bytes int64
}

// copyState is a copy task's running totals.
type copyState struct {
	last     totals
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

// Progress renders progress.Events on a writer (see Options). Its methods
// may be called from several goroutines; a nil *Progress does nothing.
type Progress struct {
	mu       sync.Mutex
	w        io.Writer
	o        Options
	tasks    []*task
	lines    int // lines of the last frame
	lastDraw time.Time
	dirty    bool
	closed   bool
	stop     chan struct{}
	stopped  chan struct{}
}

// New returns a renderer writing to w; it writes nothing before the first
// event. In TTY mode, Start it for the spinner and the timers to move
// between events.
func New(w io.Writer, o Options) *Progress {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Title == "" {
		o.Title = "Running"
	}
	if o.Prefix == "" {
		o.Prefix = "progress"
	}
	if o.Bytes == nil {
		o.Bytes = func(n int64) string { return strconv.FormatInt(n, 10) + "B" }
	}
	return &Progress{w: w, o: o}
}

// Func is p.Event as a progress.Func, nil when p is nil (--quiet): the
// library then builds no events.
func (p *Progress) Func() progress.Func {
	if p == nil {
		return nil
	}
	return p.Event
}

// Options returns the renderer's options, defaults applied.
func (p *Progress) Options() Options { return p.o }

// Start redraws the live view every frameInterval until Close (TTY mode
// only; plain mode needs no ticker).
func (p *Progress) Start() {
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
func (p *Progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.tasks) == 0 {
		return
	}
	if p.dirty || p.running() {
		p.draw(false)
	}
}

func (p *Progress) running() bool {
	for _, t := range p.tasks {
		if t.state == taskRunning {
			return true
		}
	}
	return false
}

// Event takes one event of a library (a progress.Func).
func (p *Progress) Event(e progress.Event) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	now := p.o.Now()
	switch e.Phase {
	case progress.Started:
		p.started(now, e)
	case progress.Running:
		p.runningEvent(now, e)
	case progress.Done, progress.Failed:
		p.ended(now, e)
	}
	if p.o.TTY {
		p.dirty = true
		if p.lines == 0 || now.Sub(p.lastDraw) >= frameInterval {
			p.draw(false)
		}
	}
}

func isCopy(s progress.Step) bool { return s == progress.Copy || s == progress.CopyBack }

func (p *Progress) started(now time.Time, e progress.Event) {
	step, detail := describe(e)
	t := &task{step: clean(step), detail: clean(detail), ev: e, start: now}
	for _, r := range p.tasks {
		if r.state == taskRunning && (e.Group == "" || r.ev.Group != e.Group) {
			p.finish(r, now, taskDone)
		}
	}
	if isCopy(e.Step) {
		t.copy = &copyState{samples: []sample{{at: now}}}
	}
	p.tasks = append(p.tasks, t)
	if !p.o.TTY {
		fmt.Fprintf(p.w, "%s: %s\n", p.o.Prefix, strings.TrimSpace(t.step+" "+t.detail))
	}
}

// find returns the latest running task of e's step and target, nil if none.
func (p *Progress) find(e progress.Event) *task {
	for i := len(p.tasks) - 1; i >= 0; i-- {
		if r := p.tasks[i]; r.state == taskRunning && r.ev.Step == e.Step && r.ev.Target == e.Target {
			return r
		}
	}
	return nil
}

func (p *Progress) runningEvent(now time.Time, e progress.Event) {
	t := p.find(e)
	if t == nil { // a step the library did not announce: a line of its own
		e.Phase = progress.Started
		step, _ := describe(e)
		t = &task{step: clean(step), detail: clean(e.Target), ev: e, start: now}
		p.tasks = append(p.tasks, t)
	}
	if t.copy == nil {
		t.copy = &copyState{samples: []sample{{at: t.start}}}
	}
	c := t.copy
	c.last, c.lastAt = totals{e.Bytes, e.TotalBytes, e.Files, e.TotalFiles}, now
	c.samples = append(c.samples, sample{at: now, bytes: e.Bytes})
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
			fmt.Fprintf(p.w, "%s: %s: %s\n", p.o.Prefix, p.copyName(t), strings.Join(p.copyFields(c), ", "))
		}
	}
}

// ended finishes the task e ends then; a copy's totals are then e's when it
// is done, its last report's when it failed.
func (p *Progress) ended(now time.Time, e progress.Event) {
	t := p.find(e)
	if t == nil {
		return
	}
	if t.copy != nil {
		t.copy.lastAt = now
		if e.Phase == progress.Done {
			t.copy.last.bytes, t.copy.last.files = e.Bytes, e.Files
		}
	}
	state := taskDone
	if e.Phase == progress.Failed {
		state = taskFailed
	}
	p.finish(t, now, state)
}

// copyName names a copy task in plain lines: "copy v (full pass)".
func (p *Progress) copyName(t *task) string {
	if t.ev.Step == progress.CopyBack {
		return "copy back " + clean(t.ev.Target)
	}
	return fmt.Sprintf("copy %s (%s pass)", clean(t.ev.Target), clean(t.ev.Pass))
}

// finish ends a task; a copy that reports no end ends at its last report.
func (p *Progress) finish(t *task, now time.Time, state taskState) {
	t.state, t.end = state, now
	if t.copy != nil && !t.copy.lastAt.IsZero() {
		t.end = t.copy.lastAt
	}
	if !p.o.TTY && t.copy != nil && state == taskDone && !t.copy.lastAt.IsZero() {
		fmt.Fprintf(p.w, "%s: %s done: %s\n", p.o.Prefix, p.copyName(t), p.copySummary(t))
	}
}

// Close ends the running steps, done when err is nil and failed otherwise,
// draws the last frame and stops the ticker. Later events are ignored.
func (p *Progress) Close(err error) {
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

// describe is an event's step and detail, as a line shows them: "copy",
// "full pass /src -> v".
func describe(e progress.Event) (step, detail string) {
	step = string(e.Step)
	targets := e.Target
	if len(e.Targets) > 0 {
		targets = strings.Join(e.Targets, ", ")
	}
	switch e.Step {
	case progress.Plan:
		return step, fmt.Sprintf("%d volume(s), services %s", e.Count, targets)
	case progress.Copy:
		return step, fmt.Sprintf("%s pass %s -> %s", e.Pass, e.Source, e.Target)
	case progress.CopyBack:
		return "copy", fmt.Sprintf("back %s -> %s", e.Target, e.Source)
	case progress.Verify:
		return step, e.Target
	case progress.Rewrite, progress.Restore:
		return step, fmt.Sprintf("%d compose file(s)", e.Count)
	case progress.RemountBinds:
		return "remount", e.Target + " onto its binds"
	case progress.Commit:
		if e.Source != "" {
			return step, e.Source + " -> " + e.Target
		}
	case progress.Compose, progress.Template:
		return step, "docker compose " + strings.Join(e.Command, " ")
	case progress.Wait:
		wait := fmt.Sprintf("up to %s", e.Timeout)
		if targets != "" {
			wait = targets + ", " + wait
		}
		return step, wait
	}
	if e.From != "" {
		return step, "from step " + e.From
	}
	return step, targets
}

// draw writes one frame of the live view over the previous one. Unless
// final, it shows no more lines than the terminal has rows (the cursor
// cannot move above the screen): the header and the latest steps.
func (p *Progress) draw(final bool) {
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

func (p *Progress) paint(s, sgr string) string {
	if !p.o.Color || s == "" {
		return s
	}
	return "\x1b[" + sgr + "m" + s + "\x1b[0m"
}

// paintPadded paints s without the blanks around it.
func (p *Progress) paintPadded(s, sgr string) string {
	t := strings.TrimSpace(s)
	if t == "" {
		return s
	}
	i := strings.Index(s, t)
	return s[:i] + p.paint(t, sgr) + s[i+len(t):]
}

// frame returns the lines of the live view, each at most cols-1 columns.
func (p *Progress) frame(now time.Time, cols int) []string {
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
func (p *Progress) copyLine(t *task, width int) string {
	const indent = "   "
	if t.state != taskRunning {
		return truncate(indent+p.copySummary(t), width)
	}
	rest := "  " + strings.Join(p.copyFields(t.copy), "  ")
	// [====>     ] takes the room the numbers leave, up to barWidth.
	bw := min(barWidth, width-len(indent)-2-utf8.RuneCountInString(rest))
	c := t.copy.last
	frac := -1.0
	switch {
	case c.totalBytes > 0:
		frac = float64(c.bytes) / float64(c.totalBytes)
	case c.totalFiles > 0:
		frac = float64(c.files) / float64(c.totalFiles)
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
func (p *Progress) copyFields(c *copyState) []string {
	l := c.last
	b := p.compactBytes(l.bytes)
	if l.totalBytes > 0 {
		b += "/" + p.compactBytes(l.totalBytes)
	}
	f := groupDigits(l.files)
	if l.totalFiles > 0 {
		f += "/" + groupDigits(l.totalFiles)
	}
	fields := []string{b, f + files(max(l.files, l.totalFiles))}
	r := c.rate()
	if r > 0 {
		fields = append(fields, p.compactBytes(int64(r))+"/s")
		if l.totalBytes > 0 && l.bytes < l.totalBytes {
			fields = append(fields, "ETA "+formatETA(time.Duration(float64(l.totalBytes-l.bytes)/r*float64(time.Second))))
		}
	}
	return fields
}

// copySummary is what an ended copy did: files, bytes, time, average rate.
func (p *Progress) copySummary(t *task) string {
	l := t.copy.last
	d := t.end.Sub(t.start)
	s := fmt.Sprintf("%s%s, %s in %.1fs", groupDigits(l.files), files(l.files), p.compactBytes(l.bytes), d.Seconds())
	if d > 0 && l.bytes > 0 {
		s += ", " + p.compactBytes(int64(float64(l.bytes)/d.Seconds())) + "/s"
	}
	return s
}

func files(n int64) string {
	if n == 1 {
		return " file"
	}
	return " files"
}

// compactBytes is n formatted by Options.Bytes without blanks: 512B, 412.3MiB.
func (p *Progress) compactBytes(n int64) string { return strings.ReplaceAll(p.o.Bytes(n), " ", "") }

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
