package statefile

import (
	"errors"
	"fmt"
	"path/filepath"
)

// ErrJournal is wrapped by the error of a journal write: the operation may
// have changed things that only the journal recorded.
var ErrJournal = errors.New("writing the journal")

// Header is embedded in every journal type (where its step field sits in
// the JSON): the last step the operation completed.
type Header struct {
	Step string `json:"step"`
}

func (h *Header) header() *Header { return h }

// Record is the constraint of a journal type: a pointer to a struct
// embedding Header.
type Record[T any] interface {
	*T
	header() *Header
}

// Journal is one journal of a project: ProjectDir(project)/<name>.json,
// holding a T, written with Save (atomic, durable, 0600).
type Journal[T any, P Record[T]] struct {
	project, name string
}

// NewJournal returns project's journal name ("migrate", "remount", ...) of
// type T: NewJournal[journal](project, "migrate").
func NewJournal[T any, P Record[T]](project, name string) Journal[T, P] {
	return Journal[T, P]{project: project, name: name}
}

// Path returns the file the journal lives in.
func (j Journal[T, P]) Path() string {
	return filepath.Join(ProjectDir(j.project), j.name+".json")
}

// Load returns the journal's record, or nil when there is none.
func (j Journal[T, P]) Load() (P, error) {
	v := P(new(T))
	ok, err := Load(j.Path(), v)
	if err != nil || !ok {
		return nil, err
	}
	return v, nil
}

// Save records that v's operation completed step: v with its Step set,
// written durably, then the crash point "<name>:<step>" (Arm). Its error
// wraps ErrJournal.
func (j Journal[T, P]) Save(v P, step string) error {
	v.header().Step = step
	if err := Save(j.Path(), v); err != nil {
		return fmt.Errorf("%w: %w", ErrJournal, err)
	}
	crashPoint(j.name + ":" + step)
	return nil
}

// Remove removes the journal; a missing one is not an error.
func (j Journal[T, P]) Remove() error {
	return Remove(j.Path())
}
