package migrate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/compose"
)

// ruleProject writes a compose project into a new directory (DIR in content
// is the directory, HOME the fake home directory), with the directories dirs
// and the files files (relative to DIR, or starting with HOME), and loads it
// with the given profiles. It plans with the numeric owner, without an engine.
func ruleProject(tb testing.TB, content string, dirs, files []string, links map[string]string, opts PlanOptions, profiles ...string) (*Plan, string, error) {
	tb.Helper()
	dir, home := tb.TempDir(), os.Getenv("HOME")
	abs := func(p string) string {
		if rest, ok := strings.CutPrefix(p, "HOME"); ok {
			return home + rest
		}
		return filepath.Join(dir, p)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(abs(d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(abs(f)), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(abs(f), []byte("x\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	for l, target := range links {
		if err := os.Symlink(target, abs(l)); err != nil {
			tb.Fatal(err)
		}
	}
	r := strings.NewReplacer("DIR", dir, "HOME", home)
	content = r.Replace(content)
	for _, l := range []*[]string{&opts.Exclude, &opts.Include} {
		*l = slices.Clone(*l)
		for i := range *l {
			(*l)[i] = r.Replace((*l)[i])
		}
	}
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	p, err := compose.Load(context.Background(), compose.Options{Files: []string{file}, ProjectName: "rules", Profiles: profiles})
	if err != nil {
		tb.Fatal(err)
	}
	opts.Owner = "1000:1000"
	plan, err := Prepare(context.Background(), nil, p, opts)
	return plan, dir, err
}

// outcome is what the plan does with each service:target: "volume" or the
// kept reason.
func outcome(plan *Plan) map[string]string {
	out := map[string]string{}
	for _, c := range plan.Conversions {
		for _, m := range c.Mounts {
			out[m.Service+":"+m.Target] = "volume"
		}
	}
	for _, k := range plan.Kept {
		out[k.Service+":"+k.Target] = k.Reason
	}
	return out
}

// TestPlanRules: each default rule of what stays a bind, the user's exclude
// and include, every profile, nesting and overlap, one project each.
func TestPlanRules(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	tests := []struct {
		name     string
		compose  string
		dirs     []string
		files    []string
		opts     PlanOptions
		profiles []string
		links    map[string]string // symlink -> target, relative to DIR
		want     map[string]string // service:target -> "volume" or a reason prefix
		exclude  map[string][]string
	}{
		{name: "host trees and bare roots", compose: `services:
  app:
    image: x
    volumes: ["/var/log:/var/log", "/usr:/usr", "/tmp:/tmp", "DIR/data:/data"]
`, dirs: []string{"data"},
			want: map[string]string{"app:/var/log": ReasonSystem, "app:/usr": ReasonSystem, "app:/tmp": ReasonSystem, "app:/data": "volume"}},
		{name: "home directory itself", compose: `services:
  app:
    image: x
    volumes: ["HOME:/home/me"]
`, want: map[string]string{"app:/home/me": ReasonHome}},
		{name: "credentials and user folders", compose: `services:
  app:
    image: x
    volumes: ["HOME/.ssh:/data/git/.ssh", "HOME/.aws/cfg:/aws", "HOME/Pictures:/photos", "HOME/Bilder/2023:/b", "HOME/apps/data:/data"]
`, dirs: []string{"HOME/.ssh", "HOME/.aws/cfg", "HOME/Pictures", "HOME/Bilder/2023", "HOME/apps/data"},
			files: []string{"HOME/.config/user-dirs.dirs"},
			want: map[string]string{"app:/data/git/.ssh": ReasonCredentials, "app:/aws": ReasonCredentials,
				"app:/photos": ReasonUserFolder, "app:/b": ReasonUserFolder, "app:/data": "volume"}},
		{name: "project directory and its parent", compose: `services:
  app:
    image: x
    volumes: [".:/app", "..:/up"]
`, want: map[string]string{"app:/app": ReasonProject, "app:/up": ReasonProject}},
		{name: "build context and inside it", compose: `services:
  web:
    build: ./frontend
    volumes: ["./frontend:/usr/src/app", "./frontend/public:/public", "./data:/data"]
`, dirs: []string{"frontend/public", "data"},
			want: map[string]string{"web:/usr/src/app": ReasonBuild + " web", "web:/public": ReasonBuild + " web", "web:/data": "volume"}},
		{name: "include overrides the build context", compose: `services:
  web:
    build: ./frontend
    volumes: ["./frontend/uploads:/uploads"]
`, dirs: []string{"frontend/uploads"}, opts: PlanOptions{Include: []string{"frontend/uploads"}},
			want: map[string]string{"web:/uploads": "volume"}},
		{name: "read-only everywhere", compose: `services:
  a:
    image: x
    volumes: ["./conf:/conf:ro", "./shared:/shared:ro"]
  b:
    image: x
    volumes: ["./conf:/etc/conf:ro", "./shared:/shared"]
`, dirs: []string{"conf", "shared"},
			want: map[string]string{"a:/conf": ReasonReadOnly, "b:/etc/conf": ReasonReadOnly, "a:/shared": "volume", "b:/shared": "volume"}},
		{name: "x-moltctl include overrides read-only", compose: `x-moltctl:
  include: [./conf]
services:
  a:
    image: x
    volumes: ["./conf:/conf:ro"]
`, dirs: []string{"conf"}, want: map[string]string{"a:/conf": "volume"}},
		{name: "propagation", compose: `services:
  a:
    image: x
    volumes: ["./m:/m:rshared"]
`, dirs: []string{"m"}, want: map[string]string{"a:/m": ReasonOptions}},
		{name: "exclude by flag and x-moltctl, with what is below", compose: `x-moltctl:
  exclude: [./export]
services:
  paperless:
    image: x
    volumes: ["./consume:/consume", "./export:/export", "./media/photos:/photos", "./data:/data"]
`, dirs: []string{"consume", "export", "media/photos", "data"}, opts: PlanOptions{Exclude: []string{"consume", "DIR/media"}},
			want: map[string]string{"paperless:/consume": ReasonExcluded + " (--exclude)", "paperless:/export": ReasonExcluded + " (x-moltctl)",
				"paperless:/photos": ReasonExcluded + " (--exclude)", "paperless:/data": "volume"}},
		{name: "same path and the Docker socket", compose: `services:
  kestra:
    image: x
    volumes: ["/var/run/docker.sock:/var/run/docker.sock", "DIR/wd:DIR/wd"]
  other:
    image: x
    volumes: ["DIR/other:DIR/other"]
`, dirs: []string{"wd", "other"},
			want: map[string]string{"kestra:DIR/wd": ReasonDockerShare + " (service kestra", "other:DIR/other": "volume",
				"kestra:/var/run/docker.sock": ""}},
		{name: "inactive profile converts with the others", compose: `services:
  nginx:
    image: x
    volumes: ["./certbot/www:/var/www/certbot", "./certbot/conf:/etc/letsencrypt"]
  certbot:
    image: x
    profiles: [certbot]
    volumes: ["./certbot/www:/var/www/certbot", "./certbot/conf:/etc/letsencrypt:rshared"]
`, dirs: []string{"certbot/www", "certbot/conf"},
			want: map[string]string{"nginx:/var/www/certbot": "volume", "certbot:/var/www/certbot": "volume",
				"nginx:/etc/letsencrypt":   ReasonSibling + " (service certbot at /etc/letsencrypt: " + ReasonOptions,
				"certbot:/etc/letsencrypt": ReasonOptions}},
		{name: "openclaw layout", compose: `services:
  gateway:
    image: x
    volumes: ["./config:/home/node/.openclaw", "./config/workspace:/home/node/.openclaw/workspace"]
  cli:
    image: x
    volumes: ["./config:/home/node/.openclaw", "./config/workspace:/home/node/.openclaw/workspace"]
`, dirs: []string{"config/workspace/notes"}, files: []string{"config/openclaw.json"},
			want: map[string]string{"gateway:/home/node/.openclaw": "volume", "gateway:/home/node/.openclaw/workspace": "volume",
				"cli:/home/node/.openclaw": "volume", "cli:/home/node/.openclaw/workspace": "volume"},
			exclude: map[string][]string{"config": {"workspace"}, "workspace": nil}},
		{name: "openclaw layout through a symlink", compose: `services:
  gateway:
    image: x
    volumes: ["./config:/home/node/.openclaw", "./ws-link:/home/node/.openclaw/workspace"]
`, dirs: []string{"config/workspace"}, links: map[string]string{"ws-link": "config/workspace"},
			want:    map[string]string{"gateway:/home/node/.openclaw": "volume", "gateway:/home/node/.openclaw/workspace": "volume"},
			exclude: map[string][]string{"config": {"workspace"}}},
		{name: "one directory under two names", compose: `services:
  a:
    image: x
    volumes: ["./data:/data"]
  b:
    image: x
    volumes: ["./data-link:/data"]
`, dirs: []string{"data"}, links: map[string]string{"data-link": "data"},
			want: map[string]string{"a:/data": ReasonOverlap + " DIR/data-link (service b at /data)", "b:/data": ReasonOverlap + " DIR/data (service a at /data)"}},
		{name: "nested at an unrelated target", compose: `services:
  init:
    image: x
    volumes: ["./data:/data"]
  synapse:
    image: x
    volumes: ["./data/synapse:/data"]
`, dirs: []string{"data/synapse"},
			want: map[string]string{"init:/data": ReasonOverlap + " DIR/data/synapse (service synapse at /data)",
				"synapse:/data": ReasonOverlap + " DIR/data (service init at /data)"}},
		{name: "one service misses the inner mount", compose: `services:
  gateway:
    image: x
    volumes: ["./config:/home/node/.openclaw", "./config/workspace:/home/node/.openclaw/workspace"]
  cli:
    image: x
    volumes: ["./config:/home/node/.openclaw"]
`, dirs: []string{"config/workspace"},
			want: map[string]string{"gateway:/home/node/.openclaw": ReasonOverlap, "cli:/home/node/.openclaw": ReasonOverlap,
				"gateway:/home/node/.openclaw/workspace": ReasonOverlap + " DIR/config (service cli at /home/node/.openclaw)"}},
		{name: "a file still bound inside", compose: `services:
  init:
    image: x
    volumes: ["./data:/data"]
  nginx:
    image: x
    volumes: ["./data/nginx.conf:/etc/nginx/nginx.conf:ro"]
`, dirs: []string{"data"}, files: []string{"data/nginx.conf"},
			want: map[string]string{"init:/data": ReasonHolds + " DIR/data/nginx.conf (service nginx at /etc/nginx/nginx.conf)",
				"nginx:/etc/nginx/nginx.conf": ReasonFile}},
		{name: "a file compose reads for a secret", compose: `services:
  init:
    image: x
    volumes: ["./secrets:/secrets"]
    secrets: [key]
secrets:
  key:
    file: ./secrets/key
`, dirs: []string{"secrets"}, files: []string{"secrets/key"},
			want: map[string]string{"init:/secrets": ReasonHolds + " DIR/secrets/key (compose secret key)"}},
		{name: "inside a kept bind at the matching place", compose: `services:
  app:
    image: x
    volumes: [".:/app", "./data:/app/data"]
`, dirs: []string{"data"},
			want: map[string]string{"app:/app": ReasonProject, "app:/app/data": "volume"}},
		{name: "inside a kept bind elsewhere", compose: `services:
  app:
    image: x
    volumes: [".:/app", "./data:/data"]
`, dirs: []string{"data"},
			want: map[string]string{"app:/app": ReasonProject, "app:/data": ReasonOverlap + " DIR (service app at /app)"}},
		{name: "a view of the whole host does not hold the others back", compose: `services:
  exporter:
    image: x
    volumes: ["/:/host:ro"]
  app:
    image: x
    volumes: ["./data:/data"]
`, dirs: []string{"data"},
			want: map[string]string{"exporter:/host": ReasonSystem, "app:/data": "volume"}},
	}
	os.MkdirAll(filepath.Join(home, ".config"), 0o755)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if slices.Contains(tt.files, "HOME/.config/user-dirs.dirs") {
				defer os.Remove(filepath.Join(home, ".config", "user-dirs.dirs"))
				tt.files = slices.DeleteFunc(tt.files, func(f string) bool { return f == "HOME/.config/user-dirs.dirs" })
				if err := os.WriteFile(filepath.Join(home, ".config", "user-dirs.dirs"),
					[]byte("# written by xdg-user-dirs-update\nXDG_DESKTOP_DIR=\"$HOME/\"\nXDG_PICTURES_DIR=\"$HOME/Bilder\"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			plan, dir, err := ruleProject(t, tt.compose, tt.dirs, tt.files, tt.links, tt.opts, tt.profiles...)
			if err != nil {
				t.Fatal(err)
			}
			got := outcome(plan)
			for target, reason := range tt.want {
				target = strings.ReplaceAll(target, "DIR", dir)
				reason = strings.ReplaceAll(reason, "DIR", dir)
				if g, ok := got[target]; !ok || !strings.HasPrefix(g, reason) || reason == "volume" && g != "volume" {
					t.Errorf("%s: got %q, want %q", target, g, reason)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d mounts %v, want %d", len(got), got, len(tt.want))
			}
			for _, c := range plan.Conversions {
				if want, ok := tt.exclude[filepath.Base(c.Source)]; ok && !slices.Equal(c.Exclude, want) {
					t.Errorf("got %s excluding %q, want %q", c.Source, c.Exclude, want)
				}
			}
		})
	}
}

// TestPlanRulesProfiles: a source bound by a service of an inactive profile is
// converted for every service; the inactive one is listed, not recreated.
func TestPlanRulesProfiles(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	compose := `services:
  nginx:
    image: x
    volumes: ["./certbot/conf:/etc/letsencrypt"]
  certbot:
    image: x
    profiles: [certbot]
    volumes: ["./certbot/conf:/etc/letsencrypt"]
`
	for _, tt := range []struct {
		profiles           []string
		services, inactive []string
	}{
		{nil, []string{"nginx"}, []string{"certbot"}},
		{[]string{"certbot"}, []string{"certbot", "nginx"}, nil},
	} {
		t.Run(strings.Join(tt.profiles, ","), func(t *testing.T) {
			plan, _, err := ruleProject(t, compose, []string{"certbot/conf"}, nil, nil, PlanOptions{}, tt.profiles...)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Conversions) != 1 || len(plan.Conversions[0].Mounts) != 2 {
				t.Fatalf("got conversions %+v, want certbot/conf for both services", plan.Conversions)
			}
			if !slices.Equal(plan.Services, tt.services) || !slices.Equal(plan.Inactive, tt.inactive) {
				t.Errorf("got services %v, inactive %v, want %v and %v", plan.Services, plan.Inactive, tt.services, tt.inactive)
			}
			if len(plan.Edits) != 1 || strings.Count(string(plan.Edits[0].New), "conf:/etc/letsencrypt") != 2 {
				t.Errorf("got edits %v, want both mounts rewritten", plan.Edits)
			}
		})
	}
}

// TestPlanRulesErrors: bad exclude and include say so before anything.
func TestPlanRulesErrors(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	compose := `x-moltctl:
  exclude: BAD
services:
  a:
    image: x
    volumes: ["./conf:/conf:ro", "./data:/data", "/etc:/host/etc:ro", "./f:/f"]
`
	tests := []struct {
		name    string
		compose string
		opts    PlanOptions
	}{
		{"x-moltctl exclude not a list", compose, PlanOptions{}},
		{"include of a host tree", "", PlanOptions{Include: []string{"/etc"}}},
		{"include of a file", "", PlanOptions{Include: []string{"f"}}},
		{"included and excluded", "", PlanOptions{Include: []string{"conf"}, Exclude: []string{"."}}},
		{"include of nothing bound", "", PlanOptions{Include: []string{"nope"}}},
		{"exclude of nothing bound", "", PlanOptions{Exclude: []string{"nope"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.compose
			if c == "" {
				c = strings.Replace(compose, "x-moltctl:\n  exclude: BAD\n", "", 1)
			}
			_, _, err := ruleProject(t, c, []string{"conf", "data"}, []string{"f"}, nil, tt.opts)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestSystemReason(t *testing.T) {
	tests := []struct{ src, want string }{
		{"/usr/src", ReasonSystem},
		{"/var/log", ReasonSystem},
		{"/var/log/nginx", ReasonSystem},
		{"/var/cache/apt", ReasonSystem},
		{"/var/spool/cron", ReasonSystem},
		{"/var/lib/containerd", ReasonSystem},
		{"/lib64", ReasonSystem},
		{"/lib/modules", ReasonSystem},
		{"/boot", ReasonSystem},
		{"/var/run/docker.sock", ReasonSystem},
		{"/", ReasonSystem},
		{"/var", ReasonSystem},
		{"/var/lib", ReasonSystem},
		{"/home", ReasonSystem},
		{"/opt", ReasonSystem},
		{"/mnt", ReasonSystem},
		{"/srv", ReasonSystem},
		{"/media", ReasonSystem},
		{"/opt/app/data", ""},
		{"/srv/moltbot/data", ""},
		{"/var/lib/postgresql", ""},
		{"/mnt/disk/photos", ""},
		{"/usrdata", ""},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			if got := systemReason(tt.src); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHomeReason(t *testing.T) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".config"), 0o755)
	os.WriteFile(filepath.Join(home, ".config", "user-dirs.dirs"), []byte("XDG_MUSIC_DIR=\"$HOME/Musik\"\nXDG_DESKTOP_DIR=\"$HOME/\"\n"), 0o644)
	homes := []string{"/root", home}
	project := home + "/Documents/myapp"
	tests := []struct{ src, want string }{
		{home, ReasonHome},
		{"/root", ReasonHome},
		{home + "/.ssh", ReasonCredentials},
		{home + "/.gnupg/private", ReasonCredentials},
		{home + "/.docker", ReasonCredentials},
		{home + "/.kube", ReasonCredentials},
		{home + "/.aws", ReasonCredentials},
		{"/root/.ssh", ReasonCredentials},
		{home + "/Pictures", ReasonUserFolder},
		{home + "/Documents/taxes", ReasonUserFolder},
		{home + "/Downloads", ReasonUserFolder},
		{home + "/Videos", ReasonUserFolder},
		{home + "/Music", ReasonUserFolder},
		{home + "/Desktop", ReasonUserFolder},
		{home + "/Musik", ReasonUserFolder},
		{home + "/Documents/myapp/data", ""}, // the project's own
		{home + "/Documents/other", ReasonUserFolder},
		{home + "/apps/openclaw", ""},
		{home + "/.openclaw", ""},
		{"/srv/data", ""},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			if got := homeReason(tt.src, homes, project); !strings.HasPrefix(got, tt.want) || (tt.want == "") != (got == "") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
