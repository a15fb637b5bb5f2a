package main

import (
	"errors"
	"fmt"

	"github.com/moltctl/moltctl/internal/compose"
)

// The libraries' errors name no flags and give no command-line advice: they
// wrap sentinel (or typed) errors, and this file maps those to what the user
// can do with moltctl's flags and commands, through errors.Is and errors.As.

// hint is the advice for errors wrapping err.
type hint struct {
	err    error
	advice string
}

// advise returns err with the advice of the first hint it wraps appended
// ("; advice"), else err unchanged.
func advise(err error, hints []hint) error {
	for _, h := range hints {
		if errors.Is(err, h.err) {
			return fmt.Errorf("%w; %s", err, h.advice)
		}
	}
	return err
}

// composeHints apply to every command: loading the project and running the
// docker compose CLI.
var composeHints = []hint{
	{compose.ErrNoName, "name the project with -p (--project-name)"},
	{compose.ErrNoCLI, "install the docker compose v2+ plugin"},
}
