package helperfs

import "testing"

// TestSubtreeHolds places one path in a source's subtree as the helper sees
// them in its mountinfo: a device and the path inside its file system.
func TestSubtreeHolds(t *testing.T) {
	src := Subtree{self: place{"8:1", "/srv/app"}, mounts: []submount{
		{"nfs", place{"0:50", "/export"}},
		{"nfs/deeper", place{"0:51", "/"}},
	}}
	tests := []struct {
		name   string
		q      place
		want   string
		wantOK bool
	}{
		{"same directory", place{"8:1", "/srv/app"}, ".", true},
		{"below", place{"8:1", "/srv/app/data/x"}, "data/x", true},
		{"a sibling with the same prefix", place{"8:1", "/srv/application"}, "", false},
		{"above", place{"8:1", "/srv"}, "", false},
		{"another file system", place{"8:2", "/srv/app/data"}, "", false},
		{"the root of a mount below", place{"0:50", "/export"}, "nfs", true},
		{"below a mount below", place{"0:50", "/export/a/b"}, "nfs/a/b", true},
		{"a mount of a whole file system", place{"0:51", "/c"}, "nfs/deeper/c", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := src.holds(tt.q)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
