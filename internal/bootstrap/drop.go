package bootstrap

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// drop switches every thread of the process to u for good: the capability
// bounding set is cleared where CAP_SETPCAP allows (so nothing can come back
// even without no-new-privs), then setgroups (only u's groups, none left from
// root), setgid, setuid (Go's syscall versions apply to all threads), and
// PR_SET_NO_NEW_PRIVS so no setuid binary or file capability can raise them
// again. Going from uid 0 to a non-zero uid clears the permitted, effective and
// ambient capability sets. It verifies the result, including that setuid(0)
// now fails. The caller must hold the OS thread (runtime.LockOSThread) until it
// execs: the bounding set and no-new-privs belong to the calling thread.
func drop(u *User) error {
	for c := 0; c < 64; c++ { // until EINVAL: the kernel may know more than unix.CAP_LAST_CAP
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // past the kernel's last capability
			}
			if errors.Is(err, unix.EPERM) {
				break // no CAP_SETPCAP: no-new-privs still keeps them out of reach
			}
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := syscall.Setgroups(u.Groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", u.Groups, err)
	}
	if err := syscall.Setgid(u.GID); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(u.UID); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no-new-privs: %w", err)
	}
	ru, eu, su := unix.Getresuid()
	rg, eg, sg := unix.Getresgid()
	if ru != u.UID || eu != u.UID || su != u.UID || rg != u.GID || eg != u.GID || sg != u.GID {
		return fmt.Errorf("ids after the drop are %d/%d/%d:%d/%d/%d", ru, eu, su, rg, eg, sg)
	}
	if err := syscall.Setuid(0); err == nil {
		return errors.New("setuid(0) still succeeds after the drop")
	}
	return nil
}
