package migrate

import (
	"errors"
	"fmt"
)

// What the caller can do after an error, for errors.Is. The message says what
// stopped and why; these say how to go on, so that the caller names its own
// commands and flags (cmd/moltctl does). Each is added to an error by mark,
// which leaves the message as it is.
var (
	// ErrResumable: the migration stopped with its journal kept; once the
	// cause is fixed Resume finishes it, or Rollback undoes it.
	ErrResumable = errors.New("the migration can be resumed or rolled back")
	// ErrUndoFailed: undoing a failed migration stopped half way (journal
	// kept); Rollback finishes undoing it.
	ErrUndoFailed = errors.New("undoing the migration stopped half way")
	// ErrRollbackStopped: a rollback stopped (journal kept); Rollback again,
	// with the same CopyBack, goes on from where it stopped.
	ErrRollbackStopped = errors.New("the rollback stopped half way")
	// ErrProfileInactive: a service of a profile not active runs on the binds
	// the plan converts; stop it or activate its profile.
	ErrProfileInactive = errors.New("a service of an inactive profile runs on the binds")
	// ErrOwnersDiffer: the services that mount a directory run as different
	// users; PlanOptions.Owner or Owners must choose one.
	ErrOwnersDiffer = errors.New("the services run as different users")
)

// mark returns err, with the same message, wrapping next too.
func mark(err, next error) error { return &marked{err, next} }

type marked struct{ err, next error }

func (e *marked) Error() string   { return e.err.Error() }
func (e *marked) Unwrap() []error { return []error{e.err, e.next} }

// OptionError is Prepare's error for one entry of PlanOptions.Exclude or
// Include (Option "exclude" or "include", Value as given). Err wraps ErrInvalid.
type OptionError struct {
	Option string
	Value  string
	Err    error
}

func (e *OptionError) Error() string { return fmt.Sprintf("%s %q: %v", e.Option, e.Value, e.Err) }
func (e *OptionError) Unwrap() error { return e.Err }
