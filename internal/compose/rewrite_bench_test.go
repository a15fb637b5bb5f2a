package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"
)

// BenchmarkRewrite measures Rewrite on a compose file of 200 services with five
// mounts each (one converted per service), against the baseline of what any
// rewrite must at least do: decode the file into a node tree and encode it again
// (which would also lose its formatting). It reports the ratio as x-baseline.
//
//	go test -run XXX -bench Rewrite -benchtime 20x ./internal/compose
func BenchmarkRewrite(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("# generated\nservices:\n")
	var convs []Conversion
	file := filepath.Join(b.TempDir(), "compose.yaml")
	for i := range 200 {
		fmt.Fprintf(&sb, "  s%d:\n    image: example/app:1  # image\n    volumes:\n", i)
		for j := range 5 {
			fmt.Fprintf(&sb, "      - ./d%d-%d:/m%d   # mount %d\n", i, j, j, j)
		}
		convs = append(convs, Conversion{Key: fmt.Sprintf("v%d", i), Source: fmt.Sprintf("/srv/d%d-0", i),
			Mounts: []Mount{{MountRef: MountRef{Service: fmt.Sprintf("s%d", i), Target: "/m0"}, File: file}}})
	}
	src := []byte(sb.String())
	if err := os.WriteFile(file, src, 0o644); err != nil {
		b.Fatal(err)
	}
	var rewrite, baseline time.Duration
	for b.Loop() {
		t0 := time.Now()
		edits, err := Rewrite([]string{file}, nil, convs)
		if err != nil || len(edits) != 1 {
			b.Fatalf("got %d edits, %v", len(edits), err)
		}
		t1 := time.Now()
		data, err := os.ReadFile(file)
		if err != nil {
			b.Fatal(err)
		}
		var n yaml.Node
		if err := yaml.Unmarshal(data, &n); err != nil {
			b.Fatal(err)
		}
		if _, err := yaml.Marshal(&n); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		rewrite += t1.Sub(t0)
		baseline += t2.Sub(t1)
	}
	b.ReportMetric(float64(rewrite)/float64(b.N)/1e6, "ms-rewrite/op")
	b.ReportMetric(float64(baseline)/float64(b.N)/1e6, "ms-baseline/op")
	b.ReportMetric(float64(rewrite)/float64(baseline), "x-baseline")
}
