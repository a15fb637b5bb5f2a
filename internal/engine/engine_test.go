package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeContext stores a docker CLI context named name with endpoint host under dir,
// the way `docker context create` lays it out.
func writeContext(tb testing.TB, dir, name, host string) {
	tb.Helper()
	sum := sha256.Sum256([]byte(name))
	meta := filepath.Join(dir, "contexts", "meta", hex.EncodeToString(sum[:]))
	if err := os.MkdirAll(meta, 0o755); err != nil {
		tb.Fatal(err)
	}
	body := `{"Name":"` + name + `","Metadata":{},"Endpoints":{"docker":{"Host":"` + host + `","SkipTLSVerify":false}}}`
	if err := os.WriteFile(filepath.Join(meta, "meta.json"), []byte(body), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func TestEndpoint(t *testing.T) {
	cfg := t.TempDir()
	writeContext(t, cfg, "remote", "tcp://10.1.2.3:2376")
	writeContext(t, cfg, "current", "unix:///run/current.sock")
	if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"currentContext":"current"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		opts       Options
		dockerHost string
		dockerCtx  string
		want       string
		wantErr    bool
	}{
		{name: "flag host wins", opts: Options{Host: "unix:///x.sock", Context: "remote"}, dockerHost: "tcp://e:1", want: "unix:///x.sock"},
		{name: "DOCKER_HOST before current context", dockerHost: "tcp://e:1", want: ""},
		{name: "flag context beats DOCKER_HOST", opts: Options{Context: "remote"}, dockerHost: "tcp://e:1", want: "tcp://10.1.2.3:2376"},
		{name: "DOCKER_CONTEXT", dockerCtx: "remote", want: "tcp://10.1.2.3:2376"},
		{name: "current context from config.json", want: "unix:///run/current.sock"},
		{name: "default context is the library default", opts: Options{Context: "default"}, want: ""},
		{name: "unknown context", opts: Options{Context: "nope"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", cfg)
			t.Setenv("DOCKER_HOST", tt.dockerHost)
			t.Setenv("DOCKER_CONTEXT", tt.dockerCtx)
			if tt.dockerHost == "" {
				os.Unsetenv("DOCKER_HOST")
			}
			got, err := Endpoint(tt.opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Endpoint() error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Endpoint() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConnectUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, err := Connect(ctx, Options{Host: "unix://" + sock})
	if err == nil {
		t.Fatal("Connect to a missing socket succeeded, want an error")
	}
	if got := err.Error(); !strings.Contains(got, sock) {
		t.Errorf("error %q does not name the endpoint %q", got, sock)
	}
}
