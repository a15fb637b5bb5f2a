package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
	"github.com/moltctl/moltctl/internal/migrate"
)

func TestParseOwners(t *testing.T) {
	tests := []struct {
		name    string
		owner   []string
		all     string
		per     map[string]string
		wantErr string
	}{
		{"none", nil, "", map[string]string{}, ""},
		{"plain", []string{"1000:1000"}, "1000:1000", map[string]string{}, ""},
		{"plain and per source", []string{"node", "./db=999:999", "/srv/x=70"}, "node", map[string]string{"./db": "999:999", "/srv/x": "70"}, ""},
		{"plain twice", []string{"1:1", "2:2"}, "", nil, `migrate: --owner "2:2": the owner for all directories is already "1:1"`},
		{"empty", []string{""}, "", nil, `migrate: --owner "": want UID:GID`},
		{"no owner", []string{"./db="}, "", nil, `migrate: --owner "./db=": want SOURCE=UID:GID`},
		{"no source", []string{"=1:1"}, "", nil, `migrate: --owner "=1:1": want SOURCE=UID:GID`},
		{"source twice", []string{"db=1:1", "db=2:2"}, "", nil, `migrate: --owner "db=2:2": "db" already has owner "1:1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &migrateOptions{owner: tt.owner}
			err := o.parseOwners()
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.ownerAll != tt.all || len(o.ownerBySource) != len(tt.per) {
				t.Errorf("got %q and %v, want %q and %v", o.ownerAll, o.ownerBySource, tt.all, tt.per)
			}
			for k, v := range tt.per {
				if o.ownerBySource[k] != v {
					t.Errorf("got %s=%s, want %s", k, o.ownerBySource[k], v)
				}
			}
		})
	}
}

// TestPrintPlanNotes: owner_from and sizes in the table, the total, the
// missing images once with the ways out, the free space, the variables.
func TestPrintPlanNotes(t *testing.T) {
	p := &migrate.Plan{Project: "immich", Bytes: 3 << 30, Files: 12000,
		MissingImages: []string{"postgres:14-alpine", "redis:7"},
		Conversions: []migrate.Conversion{
			{Volume: "library", Name: "immich_library", Source: "/srv/immich/library", Owner: "1000:1000", OwnerFrom: "env:PUID",
				Bytes: 3 << 30, Files: 11999, Mounts: []migrate.Mount{{Service: "server", Target: "/usr/src/app/upload", Variables: []string{"UPLOAD_LOCATION"}}}},
			{Volume: "postgres", Name: "immich_postgres", Source: "/srv/immich/postgres", Owner: migrate.OwnerUnknown, OwnerFrom: migrate.OwnerFromUnknown,
				Bytes: 4096, Files: 1, Mounts: []migrate.Mount{{Service: "db", Target: "/var/lib/postgresql/data"}}},
		}}
	p.Space = &migrate.Space{Free: 2 << 30, Needed: p.Bytes, Margin: migrate.SpaceMargin(p.Bytes)}
	var b bytes.Buffer
	printPlan(&b, p)
	out := b.String()
	for _, w := range []string{
		"Project immich: 2 directories to convert into named volumes (3.0 GiB, 12000 files), 0 bind mounts kept.",
		"/srv/immich/library   library (immich_library)",
		"1000:1000 (env:PUID)  3.0 GiB",
		"unknown               4.0 KiB",
		"Owner unknown: images not present locally: postgres:14-alpine, redis:7. Before migrating, pull or build them (docker compose pull, docker compose build), or give the owner with --owner SOURCE=UID:GID.",
		"Free space where the engine keeps its volumes: 2.0 GiB; needed 3.0 GiB + 153.6 MiB margin: DOES NOT FIT: migrate will refuse.",
		`Note: the source "/srv/immich/library" of server:/usr/src/app/upload was written with ${UPLOAD_LOCATION}; after the rewrite that variable no longer applies to this mount (it uses volume library).`,
	} {
		if !strings.Contains(out, w) {
			t.Errorf("got\n%s\nwant it to contain %q", out, w)
		}
	}
	if n := strings.Count(out, "redis:7"); n != 1 {
		t.Errorf("got redis:7 %d times, want once", n)
	}
}

// TestMigrateRefusesUnknownOwner: a real run with an image missing refuses
// before any change, naming the image and the ways out; the dry-run plans.
func TestMigrateRefusesUnknownOwner(t *testing.T) {
	dockertest.Engine(t)
	t.Setenv("MOLTCTL_STATE_DIR", t.TempDir())
	dir, file := migrateProject(t)
	missing := "moltctl-test/" + dockertest.Name("absent") + ":1"
	src, _ := os.ReadFile(file)
	src = bytes.ReplaceAll(src, []byte("moltctl-test/none:1"), []byte(missing))
	if err := os.WriteFile(file, src, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runMoltctl(t, "-f", file, "migrate", "--dry-run", "--owner", "./cache=1000:1000")
	if err != nil {
		t.Fatalf("dry-run: got %v, want a plan", err)
	}
	if !strings.Contains(out, "Owner unknown: image not present locally: "+missing+". Before migrating, pull or build it") ||
		strings.Count(strings.Split(out, "\n--- ")[0], missing) != 1 || !strings.Contains(out, "1000:1000 (flag)") {
		t.Errorf("got plan\n%s\nwant the state owner unknown, %s named once, cache owned by the flag", out, missing)
	}
	_, err = runMoltctl(t, "-f", file, "migrate", "--yes", "--owner", "./cache=1000:1000")
	want := "migrate: owner unknown for " + `"` + filepath.Join(dir, "state") + `"` + " (image not present locally: " + missing +
		"); nothing changed: pull or build the image (docker compose pull, docker compose build), or give the owner with --owner SOURCE=UID:GID"
	if err == nil || err.Error() != want {
		t.Fatalf("got error\n%v\nwant\n%s", err, want)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(after, src) {
		t.Errorf("got the compose file changed")
	}
	if _, err := os.Stat(migrate.JournalPath("clitest")); !os.IsNotExist(err) {
		t.Errorf("got a journal (%v), want none", err)
	}
}
