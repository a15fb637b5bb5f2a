package bootstrap

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moltctl/moltctl/internal/perms"
)

// ErrUnknownUser is returned (wrapped) when a user or group name is not in the
// image's /etc/passwd or /etc/group.
var ErrUnknownUser = errors.New("unknown user or group")

// User is who CMD runs as.
type User struct {
	Name   string // login name, "" for a numeric user not in passwd
	UID    int
	GID    int
	Groups []int  // supplementary groups, the primary gid first
	Home   string // from passwd; "/" when the user is not in passwd
}

type passwdEntry struct {
	name     string
	uid, gid int
	home     string
}

type groupEntry struct {
	name    string
	gid     int
	members []string
}

// LookupUser resolves spec — "name", "uid", "name:group", "uid:gid" (group by
// name or number) — against etcDir/passwd and etcDir/group, which it parses
// itself so that the image's files decide (no NSS, same answer with or without
// cgo). A numeric uid not in passwd gets gid = uid unless given, home "/" and no
// supplementary groups. With an explicit group the user gets that group alone,
// no supplementary groups (docker's --user and gosu's convention). A name not
// found is ErrUnknownUser; a number outside 0 <= id < 2^31 is ErrIDRange.
func LookupUser(spec, etcDir string) (*User, error) {
	if spec == "" {
		return nil, errors.New("empty user")
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" || hasGroup && groupPart == "" {
		return nil, fmt.Errorf("user %q: want name, uid, name:group or uid:gid", spec)
	}
	users, err := readPasswd(filepath.Join(etcDir, "passwd"))
	if err != nil {
		return nil, err
	}
	groups, err := readGroup(filepath.Join(etcDir, "group"))
	if err != nil {
		return nil, err
	}
	u := &User{UID: -1, GID: -1, Home: "/"}
	if n, numeric, err := parseID(userPart); err != nil {
		return nil, fmt.Errorf("user %q: uid %w", spec, err)
	} else if numeric {
		u.UID = n
		for _, p := range users {
			if p.uid == n {
				u.Name, u.GID, u.Home = p.name, p.gid, p.home
				break
			}
		}
		if u.Name == "" {
			u.GID = n
		}
	} else {
		for _, p := range users {
			if p.name == userPart {
				u.Name, u.UID, u.GID, u.Home = p.name, p.uid, p.gid, p.home
				break
			}
		}
		if u.UID < 0 {
			return nil, fmt.Errorf("user %q not in %q: %w", userPart, filepath.Join(etcDir, "passwd"), ErrUnknownUser)
		}
	}
	if hasGroup {
		if n, numeric, err := parseID(groupPart); err != nil {
			return nil, fmt.Errorf("user %q: gid %w", spec, err)
		} else if numeric {
			u.GID = n
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					u.GID, found = g.gid, true
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("group %q not in %q: %w", groupPart, filepath.Join(etcDir, "group"), ErrUnknownUser)
			}
		}
	}
	if u.Home == "" {
		u.Home = "/"
	}
	u.Groups = []int{u.GID}
	// An explicit group means that group alone, as docker run --user u:g and
	// gosu u:g do: the user's /etc/group memberships only come with "name".
	if u.Name != "" && !hasGroup {
		for _, g := range groups {
			for _, m := range g.members {
				if m == u.Name && g.gid != u.GID && !contains(u.Groups, g.gid) {
					u.Groups = append(u.Groups, g.gid)
				}
			}
		}
	}
	return u, nil
}

// ErrIDRange is returned (wrapped) for a numeric id outside 0 <= id < 2^31.
var ErrIDRange = errors.New("out of range (0 to 2147483647)")

// parseID parses a numeric user or group id. numeric is false for a name (not
// all digits); a number outside 0 <= id < 2^31 is ErrIDRange.
func parseID(s string) (id int, numeric bool, err error) {
	if strings.TrimLeft(s, "0123456789") != "" && !(strings.HasPrefix(s, "-") && strings.Trim(s[1:], "0123456789") == "") {
		return 0, false, nil
	}
	n, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil || !perms.ValidID(int(n)) {
		return 0, true, fmt.Errorf("%s %w", s, ErrIDRange)
	}
	return int(n), true, nil
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// readPasswd parses name:pw:uid:gid:gecos:home:shell lines, skipping comments,
// blank and malformed lines (as getpwent does).
func readPasswd(path string) ([]passwdEntry, error) {
	var out []passwdEntry
	err := eachLine(path, func(f []string) {
		if len(f) < 7 {
			return
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || !perms.ValidID(uid) || !perms.ValidID(gid) {
			return
		}
		out = append(out, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5]})
	})
	return out, err
}

// readGroup parses name:pw:gid:member,member lines.
func readGroup(path string) ([]groupEntry, error) {
	var out []groupEntry
	err := eachLine(path, func(f []string) {
		if len(f) < 4 {
			return
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil || !perms.ValidID(gid) {
			return
		}
		g := groupEntry{name: f[0], gid: gid}
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				g.members = append(g.members, m)
			}
		}
		out = append(out, g)
	})
	return out, err
}

// eachLine calls fn with the colon-separated fields of each line of path. A
// missing file is like an empty one (a scratch image may have none).
func eachLine(path string, fn func([]string)) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %q: %w", path, err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("reading %q: %w", path, err)
	}
	return nil
}
