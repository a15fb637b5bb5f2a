package perms

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// mountPoints returns the mount points at or below root listed in
// /proc/self/mountinfo (octal escapes such as \040 decoded), for kernels whose
// statx or openat2 cannot report them. It returns an empty set when mountinfo
// cannot be read; the walk's device comparison still catches other filesystems.
func mountPoints(root string) map[string]bool {
	set := map[string]bool{}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return set
	}
	defer f.Close()
	prefix := strings.TrimSuffix(root, "/") + "/"
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if strings.HasPrefix(mp, prefix) {
			set[mp] = true
		}
	}
	return set
}

// unescapeMountinfo decodes the \ooo octal escapes mountinfo uses for space,
// tab, newline and backslash.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
