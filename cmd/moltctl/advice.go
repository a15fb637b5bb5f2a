package main

import (
	"errors"
	"fmt"

	"github.com/moltctl/moltctl/internal/compose"
	"github.com/moltctl/moltctl/internal/migrate"
	"github.com/moltctl/moltctl/internal/remount"
	"github.com/moltctl/moltctl/internal/volumes"
)

// The libraries' errors name no flags and give no command-line advice: they
// wrap sentinel (or typed) errors, and this file maps those to what the user
// can do with moltctl's flags and commands, through errors.Is and errors.As.
// Each function appends at most one piece of advice ("; advice").

// composeAdvice applies to every command (execute): loading the project and
// running the docker compose CLI.
func composeAdvice(err error) error {
	switch {
	case errors.Is(err, compose.ErrNoName):
		return fmt.Errorf("%w; name the project with -p (--project-name)", err)
	case errors.Is(err, compose.ErrNoCLI):
		return fmt.Errorf("%w; install the docker compose v2+ plugin", err)
	case errors.Is(err, compose.ErrStdin):
		return fmt.Errorf("%w; write it to a file and pass that with -f", err)
	}
	return err
}

// remountAdvice is the advice for remount, up and snapshot: how to go on from
// an interrupted remount or a failed rollback, the way out of a too deep image
// (flatten), --rebase for a changed image.
func remountAdvice(err error, flatten string) error {
	var ie *remount.InterruptedError
	var se *remount.StepError
	switch {
	case errors.As(err, &ie):
		return fmt.Errorf("%w; run moltctl remount %s --resume or --rollback", err, ie.Service)
	case errors.As(err, &se) && se.Pending != "":
		return fmt.Errorf("%w; run moltctl remount %s --rollback", err, se.Pending)
	case errors.Is(err, remount.ErrTooDeep):
		return fmt.Errorf("%w; %s", err, flatten)
	case errors.Is(err, remount.ErrImageChanged):
		return fmt.Errorf("%w%s", err, rebaseAdvice(err))
	case errors.Is(err, remount.ErrNoContainer):
		return fmt.Errorf("%w; create it with docker compose up", err)
	}
	return err
}

// validateKeep checks --keep (remount, up).
func validateKeep(keep int) error {
	if keep < 2 {
		return fmt.Errorf("--keep %d: %w", keep, remount.ErrKeep)
	}
	return nil
}

// migrateAdvice is the advice for migrate: the flag an option error came
// from, and how to go on after a migration or a rollback stopped.
func migrateAdvice(err error, o *migrateOptions) error {
	var oe *migrate.OptionError
	rollback := "moltctl migrate --rollback"
	if o.copyBack {
		rollback += " --copy-back"
	}
	advice := ""
	switch {
	case errors.As(err, &oe):
		return fmt.Errorf("--%s %q: %w", oe.Option, oe.Value, oe.Err)
	case errors.Is(err, migrate.ErrInterrupted):
		advice = "run moltctl migrate --resume or --rollback"
	case errors.Is(err, migrate.ErrOnlyCopy) && errors.Is(err, migrate.ErrResumable):
		advice = "put the directory back, then run moltctl migrate --resume; or --rollback"
	case errors.Is(err, migrate.ErrOnlyCopy):
		advice = "put the directory back, or roll back with --copy-back"
	case errors.Is(err, migrate.ErrResumable):
		advice = "fix that, then run moltctl migrate --resume; or undo the migration with --rollback"
	case errors.Is(err, migrate.ErrUndoFailed):
		advice = "run moltctl migrate --rollback"
	case errors.Is(err, migrate.ErrRollbackStopped):
		advice = "fix that, then run " + rollback + " again"
	case errors.Is(err, volumes.ErrRefused):
		advice = "fix that, or roll back without --copy-back"
	case errors.Is(err, migrate.ErrProfileInactive):
		advice = "stop it or activate its profile (--profile)"
	case errors.Is(err, migrate.ErrOwnersDiffer):
		advice = "choose one with --owner"
	case errors.Is(err, migrate.ErrOwnerUnknown):
		advice = "nothing changed: pull or build the image (docker compose pull, docker compose build), or give the owner with --owner SOURCE=UID:GID"
	case errors.Is(err, migrate.ErrNoEngine):
		advice = "or give the owner with --owner SOURCE=UID:GID"
	default:
		return err
	}
	return fmt.Errorf("%w; %s", err, advice)
}
