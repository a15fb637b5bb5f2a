package statefile

import (
	"os"
	"syscall"
)

// CrashEnv is the environment variable the kill -9 tests set to a crash
// point, "<journal>:<step>" (for example "migrate:copied", "remount:started",
// "migrate-copyback:copied-back"): the process SIGKILLs itself right after
// that journal recorded that step. Only ArmFromEnv reads it: binaries built
// with -tags moltctl_crashhook (migrate's tests build the static moltctl so)
// and test binaries that call it; the shipped binary never does.
const CrashEnv = "MOLTCTL_CRASH_AFTER"

// armed is the crash point of this process ("" for none).
var armed string

// Arm makes the process SIGKILL itself (exit 137 as a container's PID 1),
// never returning, when it reaches point: a journal's Save of
// "<journal>:<step>", or a CrashPoint call.
func Arm(point string) { armed = point }

// ArmFromEnv arms the crash point in $MOLTCTL_CRASH_AFTER (CrashEnv).
func ArmFromEnv() { Arm(os.Getenv(CrashEnv)) }

// CrashPoint is a crash point outside a journal's Save: "<name>:<step>".
func CrashPoint(name, step string) { crashPoint(name + ":" + step) }

func crashPoint(point string) {
	if armed != "" && point == armed {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		os.Exit(137) // PID 1 of a container (the copy helper) ignores its own SIGKILL
	}
}
