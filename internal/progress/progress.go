// Package progress defines the progress events moltctl's libraries emit
// (migrate, remount, volumes) and the Func they emit them to. An Event
// carries data (the step, what it acts on, the copy's totals), never a
// formatted line: presenting it is the caller's business (cmd/moltctl's
// renderer). Libraries never print.
package progress

import "time"

// Step names what a step does; the renderer labels it.
type Step string

// The steps the libraries report.
const (
	// migrate
	Plan         Step = "plan"             // Count volumes, Targets services
	Resume       Step = "resume"           // From: the journal's step
	Create       Step = "create"           // Target volume
	Copy         Step = "copy"             // Pass, Source directory -> Target volume
	CopyBack     Step = "copy back"        // Target volume -> Source directory
	Stop         Step = "stop"             // Targets services, or Target a container (remount)
	Verify       Step = "verify"           // Target volume, Source directory
	Rewrite      Step = "rewrite"          // Count compose files
	Remount      Step = "remount"          // Target service
	Check        Step = "check"            // Targets services
	Finish       Step = "finish"           // Target volume
	Rollback     Step = "rollback"         // From (migrate), Target container or Targets services (remount)
	Restore      Step = "restore"          // Count compose files
	RemountUndo  Step = "remount rollback" // Target service
	RemountBinds Step = "remount binds"    // Target service, remounted back onto its binds
	Rejoin       Step = "rejoin"           // Target service, remounted joined again to what it joins
	Commit       Step = "commit"           // Target snapshot tag, Source container (when known)
	Rebase       Step = "rebase"           // Target image tag
	Compose      Step = "compose"          // Command: the docker compose arguments
	Swap         Step = "swap"             // Target container
	Start        Step = "start"            // Target container or service
	Wait         Step = "wait"             // Timeout, Targets services (when several)
	Template     Step = "template"         // Command
	Replica      Step = "replica"          // Target container
)

// Phase says where in its step an Event comes.
type Phase int

const (
	// Started: the step begins. A step that reports no end ends when the next
	// step starts, unless both are of the same non-empty Group.
	Started Phase = iota
	// Running: running totals (Bytes, Files) of a started step.
	Running
	// Done: the step ended well; Elapsed is its duration, the totals final.
	Done
	// Failed: the step failed (Err).
	Failed
)

func (p Phase) String() string {
	switch p {
	case Started:
		return "started"
	case Running:
		return "running"
	case Done:
		return "done"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Event is one progress report. Which fields a step sets is said at its Step.
type Event struct {
	Step  Step
	Phase Phase
	// Target is what the step acts on: a volume, a service, a container, an image tag.
	Target string
	// Targets, for a step acting on several services at once.
	Targets []string
	// Source is where a copy comes from: a host directory (Copy, Verify), a
	// volume (CopyBack), a container (Commit).
	Source string
	// Pass is the copy's pass: "full" or "delta".
	Pass string
	// Count is how many things the step handles (Plan: volumes; Rewrite, Restore: files).
	Count int
	// From is the journal step a resume or rollback starts from.
	From string
	// Command is the docker compose command line's arguments after "docker compose".
	Command []string
	// Timeout is how long a Wait waits at most.
	Timeout time.Duration
	// Group: steps of the same non-empty group run side by side (the delta
	// pass and the verification of several volumes); each reports its end.
	Group string
	// Running totals (Running, Done) of a copy; the totals are known for a
	// full pass only (0 otherwise).
	Bytes, TotalBytes, Files, TotalFiles int64
	// Elapsed is the step's duration (Done, Failed).
	Elapsed time.Duration
	// Err is why the step failed (Failed).
	Err error
}

// Func receives events. A library calls it from one goroutine at a time
// unless it says otherwise; a nil Func receives nothing (see Emit).
type Func func(Event)

// Emit calls f with e when f is set.
func (f Func) Emit(e Event) {
	if f != nil {
		f(e)
	}
}

// End returns e as its step's end after start: Done when err is nil,
// Failed with err otherwise.
func End(e Event, start time.Time, err error) Event {
	e.Phase, e.Elapsed, e.Err = Done, time.Since(start), err
	if err != nil {
		e.Phase = Failed
	}
	return e
}
