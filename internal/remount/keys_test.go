package remount

import (
	"slices"
	"testing"
)

func TestBakedKeys(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		imgEnv, wantEnv, base []string
		imgLabels, wantLabels map[string]string
		env, labels           []string
	}{
		{name: "nothing left", imgEnv: []string{"A=1", "PATH=/bin"}, wantEnv: []string{"A=2"}, base: []string{"PATH=/bin"}},
		{name: "removed key", imgEnv: []string{"A=1", "GONE=secret"}, wantEnv: []string{"A=1"}, env: []string{"GONE"}},
		{name: "labels", imgLabels: map[string]string{"x": "1", "y": "2", LabelSeq: "3"}, wantLabels: map[string]string{"x": "1"}, labels: []string{"y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, labels := bakedKeys(tc.imgEnv, tc.imgLabels, tc.wantEnv, tc.wantLabels, tc.base, nil)
			if !slices.Equal(env, tc.env) || !slices.Equal(labels, tc.labels) {
				t.Errorf("got env %v labels %v, want env %v labels %v", env, labels, tc.env, tc.labels)
			}
			for _, k := range env {
				if k == "secret" {
					t.Errorf("got a value %q among the keys", k)
				}
			}
		})
	}
}

func TestAPIAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{{"1.41", false}, {"1.43", false}, {"1.44", true}, {"1.52", true}, {"2.0", true}, {"", false}} {
		t.Run(tc.v, func(t *testing.T) {
			if got := apiAtLeast(tc.v, 1, 44); got != tc.want {
				t.Errorf("apiAtLeast(%q, 1, 44): got %v, want %v", tc.v, got, tc.want)
			}
		})
	}
}

func TestSnapshotTag(t *testing.T) {
	if got, want := snapshotTag("Proj", "Web", 3), "moltctl-snapshot/proj-web:3"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDockerfileQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", `"plain"`},
		{`a "b" $HOME \x`, `"a \"b\" \$HOME \\x"`},
		{"", `""`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := dockerfileQuote(tc.in); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
