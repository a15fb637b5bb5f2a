package bootstrap

import (
	"errors"
	"fmt"
	"testing"
)

func TestLookupUser(t *testing.T) {
	etc := etcDir(t)
	for _, tc := range []struct {
		spec string
		want string // uid:gid groups home, or the error
	}{
		{"node", "node 1000:1000 [1000 2000 29] /home/nodehome"},
		{"1000", "node 1000:1000 [1000 2000 29] /home/nodehome"},
		// An explicit group is that group alone (docker --user u:g, gosu u:g).
		{"node:extra", "node 1000:2000 [2000] /home/nodehome"},
		{"1000:29", "node 1000:29 [29] /home/nodehome"},
		{"node:node", "node 1000:1000 [1000] /home/nodehome"},
		{"app", "app 1001:1001 [1001] /srv/app"},
		{"4242", " 4242:4242 [4242] /"},
		{"4242:7", " 4242:7 [7] /"},
		{"nobody-here", "unknown"},
		{"node:nogroup", "unknown"},
		{"node:", "invalid"},
		{":1", "invalid"},
		{"-1", "range"},
		{"2147483647", " 2147483647:2147483647 [2147483647] /"},
		{"2147483648", "range"},
		{"4294967296", "range"},
		{"node:4294967296", "range"},
		{"1000:-1", "range"},
		{"99999999999999999999999", "range"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			u, err := LookupUser(tc.spec, etc)
			var got string
			switch {
			case errors.Is(err, ErrUnknownUser):
				got = "unknown"
			case errors.Is(err, ErrIDRange):
				got = "range"
			case err != nil:
				got = "invalid"
			default:
				got = fmt.Sprintf("%s %d:%d %v %s", u.Name, u.UID, u.GID, u.Groups, u.Home)
			}
			if got != tc.want {
				t.Errorf("got %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}
