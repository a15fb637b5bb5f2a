package statefile

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// testRecord is a journal type as migrate's and remount's are.
type testRecord struct {
	Project string `json:"project"`
	Header
	N int `json:"n"`
}

// TestMain doubles as the child of TestCrashPoint: with STATEFILE_TEST_CHILD
// set it arms $MOLTCTL_CRASH_AFTER and journals two steps.
func TestMain(m *testing.M) {
	if os.Getenv("STATEFILE_TEST_CHILD") != "" {
		ArmFromEnv()
		j := NewJournal[testRecord]("p", "test")
		for i, step := range []string{"one", "two"} {
			if err := j.Save(&testRecord{Project: "p", N: i}, step); err != nil {
				os.Exit(2)
			}
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestJournal(t *testing.T) {
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	j := NewJournal[testRecord]("p", "test")
	if got, want := j.Path(), filepath.Join(os.Getenv("MOLTCTL_STATE_DIR"), "p", "test.json"); got != want {
		t.Errorf("got path %s, want %s", got, want)
	}
	if r, err := j.Load(); r != nil || err != nil {
		t.Fatalf("got %+v, %v loading a missing journal, want nil, nil", r, err)
	}
	r := &testRecord{Project: "p", N: 7}
	if err := j.Save(r, "first"); err != nil {
		t.Fatal(err)
	}
	got, err := j.Load()
	if err != nil || got == nil || *got != (testRecord{Project: "p", Header: Header{Step: "first"}, N: 7}) {
		t.Fatalf("got %+v, %v, want step first and n 7", got, err)
	}
	if b, _ := os.ReadFile(j.Path()); string(b) != "{\n  \"project\": \"p\",\n  \"step\": \"first\",\n  \"n\": 7\n}" {
		t.Errorf("got the JSON %s, want the step where Header is embedded", b)
	}
	for i := 0; i < 2; i++ {
		if err := j.Remove(); err != nil {
			t.Fatalf("got %v removing (time %d), want nil", err, i+1)
		}
	}
	if r, err := j.Load(); r != nil || err != nil {
		t.Errorf("got %+v, %v after Remove, want nil, nil", r, err)
	}
	// A state directory that can't be written: the error wraps ErrJournal.
	t.Setenv("MOLTCTL_STATE_DIR", "/dev/null/state")
	if err := j.Save(r, "second"); !errors.Is(err, ErrJournal) {
		t.Errorf("got %v saving into /dev/null, want ErrJournal", err)
	}
}

// TestCrashPoint runs a child that journals "one" then "two" with a crash
// point armed: killed right after the armed step's write, with that step on
// disk; not killed when the point names another journal or no step.
func TestCrashPoint(t *testing.T) {
	for _, tc := range []struct {
		point, wantStep string
		killed          bool
	}{
		{"test:one", "one", true},
		{"test:two", "two", true},
		{"other:one", "two", false},
		{"", "two", false},
	} {
		t.Run(tc.point, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "STATEFILE_TEST_CHILD=1", "MOLTCTL_STATE_DIR="+dir, CrashEnv+"="+tc.point)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
			if killed != tc.killed || (!killed && err != nil) {
				t.Fatalf("got %v (%s), want killed %v", err, out, tc.killed)
			}
			t.Setenv("MOLTCTL_STATE_DIR", dir)
			r, err := NewJournal[testRecord]("p", "test").Load()
			if err != nil || r == nil || r.Step != tc.wantStep {
				t.Errorf("got %+v, %v, want step %s journaled", r, err, tc.wantStep)
			}
		})
	}
}

func TestLock(t *testing.T) {
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	unlock, err := Lock("p")
	if err != nil {
		t.Fatal(err)
	}
	// flock conflicts between open file descriptions, even in one process.
	if _, err := Lock("p"); !errors.Is(err, ErrLocked) {
		t.Errorf("got %v taking a held lock, want ErrLocked", err)
	}
	if u, err := Lock("q"); err != nil {
		t.Errorf("got %v locking another project, want nil", err)
	} else {
		u()
	}
	unlock()
	if u, err := Lock("p"); err != nil {
		t.Errorf("got %v after the unlock, want nil", err)
	} else {
		u()
	}
	if fi, err := os.Stat(filepath.Join(ProjectDir("p"), "lock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("got %v, %v, want the lock file 0600", fi, err)
	}
}

func TestLockWait(t *testing.T) {
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	unlock, err := LockWait(context.Background(), "x.lock")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := LockWait(ctx, "x.lock"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v waiting for a held lock, want the context's deadline", err)
	}
	done := make(chan error)
	go func() {
		u, err := LockWait(context.Background(), "x.lock")
		if err == nil {
			u()
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	unlock()
	if err := <-done; err != nil {
		t.Errorf("got %v once the lock was released, want nil", err)
	}
}
