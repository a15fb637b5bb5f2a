package statemigrate

import (
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkMigrate measures the cost bootstrap pays on every start when
// there is nothing to migrate (no legacy directory: "absent") or the
// migration was done before ("done": legacy links to target, under the lock),
// beside a baseline in the same run: lstat of the legacy and target paths,
// the least any check must do. Reported: ns/op for Migrate and x-lstat, the
// ratio to the baseline.
func BenchmarkMigrate(b *testing.B) {
	cases := []struct {
		name  string
		setup func(tb testing.TB) []Rule
	}{
		{"absent", func(tb testing.TB) []Rule { r, _ := Preset("openclaw", tb.TempDir()); return r }},
		{"done", func(tb testing.TB) []Rule {
			r, _ := Preset("moltbot", tb.TempDir())
			write(tb, r[0].Legacy, seed)
			if _, err := Migrate(context.Background(), Options{Rules: r}); err != nil {
				tb.Fatal(err)
			}
			return r
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			rules := c.setup(b)
			start := time.Now()
			for range b.N {
				for _, r := range rules {
					os.Lstat(r.Legacy)
					os.Lstat(r.Target)
				}
			}
			base := time.Since(start)
			b.ResetTimer()
			for range b.N {
				out, err := Migrate(context.Background(), Options{Rules: rules})
				if err != nil || out[0].Action == ActionFailed {
					b.Fatal(out, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed())/float64(base), "x-lstat")
		})
	}
}
