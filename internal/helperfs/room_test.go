package helperfs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRoomFits(t *testing.T) {
	for _, tt := range []struct {
		room         Room
		bytes, files int64
		want         error
		says         string
	}{
		{Room{Bytes: 100, Inodes: 10}, 100, 10, nil, ""},
		{Room{Bytes: 100, Inodes: 10}, 101, 1, ErrNoSpace, "101 bytes"},
		{Room{Bytes: 1 << 30, Inodes: 10}, 1, 11, ErrNoInodes, "11 inodes"},
		{Room{Bytes: 100, Inodes: -1}, 1, 1 << 40, nil, ""}, // no inode count
	} {
		err := tt.room.Fits("the source", tt.bytes, tt.files)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) || !strings.Contains(fmt.Sprint(err), tt.says) {
			t.Errorf("%+v fits %d bytes, %d files: got %v, want %v saying %q", tt.room, tt.bytes, tt.files, err, tt.want, tt.says)
		}
	}
	if !errors.Is(ErrNoInodes, ErrNoSpace) {
		t.Errorf("got ErrNoInodes not wrapping ErrNoSpace")
	}
}
