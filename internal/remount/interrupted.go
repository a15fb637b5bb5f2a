package remount

import "fmt"

// InterruptedError refuses a remount, up or snapshot while the journal of an
// interrupted remount exists. It wraps ErrInterrupted; Service is the
// service whose remount to resume or roll back.
type InterruptedError struct {
	Service string
	Step    string
	Journal string // the journal's path
	// Joined: the remount of Service together with the services joining it.
	Joined bool
}

func (e *InterruptedError) Error() string {
	what := "remount of service " + e.Service
	if e.Joined {
		what += " and the services joining it"
	}
	return fmt.Sprintf("%s (step %s, %s): %v", what, e.Step, e.Journal, ErrInterrupted)
}

func (e *InterruptedError) Unwrap() error { return ErrInterrupted }

// interrupted is the refusal for the interrupted remount of journal j.
func interrupted(j *journal) error {
	return &InterruptedError{Service: j.Service, Step: j.Step, Journal: JournalPath(j.Project)}
}
