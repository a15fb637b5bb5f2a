//go:build moltctl_crashhook

package statefile

// The kill -9 tests' build of moltctl arms the crash point of its
// environment (CrashEnv).
func init() { ArmFromEnv() }
