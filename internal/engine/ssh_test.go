package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSSHEndpoint checks the ssh:// endpoints refused before any connection,
// and the command line the connection runs (a fake ssh on PATH records it).
func TestSSHEndpoint(t *testing.T) {
	for _, host := range []string{"ssh://", "ssh://host/path", "ssh://host?x=1"} {
		if _, err := sshOpts(host); err == nil || !strings.Contains(err.Error(), "want ssh://[user@]host[:port]") {
			t.Errorf("%s: got %v, want the form named", host, err)
		}
	}
	if opts, err := sshOpts("tcp://h:2375"); opts != nil || err != nil {
		t.Errorf("tcp: got %d options, %v; want none", len(opts), err)
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "args")
	fake := "#!/bin/sh\necho \"$@\" >" + log + "\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "ssh"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	_, err := Connect(context.Background(), Options{Host: "ssh://me@server:2222"})
	if err == nil || !strings.Contains(err.Error(), "at ssh://me@server:2222") {
		t.Errorf("got %v, want an error naming the endpoint", err)
	}
	got, _ := os.ReadFile(log)
	if want := "-o ConnectTimeout=30 -T -l me -p 2222 -- server docker system dial-stdio\n"; string(got) != want {
		t.Errorf("got ssh %q, want %q", got, want)
	}
}
