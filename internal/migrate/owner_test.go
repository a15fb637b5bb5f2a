package migrate

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moltctl/moltctl/internal/dockertest"
)

// TestPrepareMissingImages: a dry-run plans although images are missing; the
// owners they decide are unknown, each missing image is named once, and Check
// refuses the plan naming them all.
func TestPrepareMissingImages(t *testing.T) {
	eng := dockertest.Engine(t)
	image := userImage(t, "node")
	pg := "moltctl-test/" + dockertest.Name("absent-postgres") + ":14-alpine"
	redis := "moltctl-test/" + dockertest.Name("absent-redis") + ":7"
	f := newFixture(t, `services:
  app:
    image: `+image+`
    volumes: ["./state:/state", "./workspace:/workspace"]
  db:
    image: `+pg+`
    volumes: ["./state:/shared", "./other:/var/lib/postgresql/data"]
  cache:
    image: `+redis+`
    volumes: ["./empty:/data"]
  worker:
    image: `+redis+`
    user: "1000:1000"
    volumes: ["./propagated:/work"]
  built:
    build: ./builder
    volumes: ["./gateway.env:/gateway.env:ro"]
`)
	p := load(t, f, dockertest.Name("mig"))
	ctx := context.Background()
	plan, err := Prepare(ctx, eng, p, PlanOptions{})
	if err != nil {
		t.Fatalf("got %v, want a plan", err)
	}
	got := map[string]string{}
	for _, c := range plan.Conversions {
		got[filepath.Base(c.Source)] = c.Owner + " " + c.OwnerFrom
	}
	want := map[string]string{
		"state":      "unknown unknown", // app says 1000:1000, db can't tell
		"workspace":  "1000:1000 image",
		"other":      "unknown unknown",
		"empty":      "unknown unknown",
		"propagated": "1000:1000 user", // a numeric user: needs no image
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("got %s owned by %q, want %q", k, got[k], v)
		}
	}
	// the built service binds a file only (kept): its image is only asked when converted
	wantMissing := []string{pg, redis}
	if !slices.Equal(plan.MissingImages, wantMissing) {
		t.Errorf("got missing images %v, want %v (each once)", plan.MissingImages, wantMissing)
	}
	err = plan.Check()
	if !errors.Is(err, ErrOwnerUnknown) {
		t.Fatalf("got %v, want ErrOwnerUnknown", err)
	}
	for _, w := range append(wantMissing, filepath.Join(f.dir, "state"), filepath.Join(f.dir, "empty")) {
		if strings.Count(err.Error(), w) != 1 {
			t.Errorf("got %q, want it to name %s once", err, w)
		}
	}

	// --owner SOURCE=... for each unknown directory: the plan is complete.
	plan, err = Prepare(ctx, eng, p, PlanOptions{Owners: map[string]string{
		"state": "70:70", filepath.Join(f.dir, "other") + "/": "999:999", "./empty": "node"}})
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]string{}
	for _, c := range plan.Conversions {
		got[filepath.Base(c.Source)] = c.Owner + " " + c.OwnerFrom
	}
	want = map[string]string{"state": "70:70 flag", "other": "999:999 flag", "workspace": "1000:1000 image",
		"empty": "unknown unknown"} // a name needs the image of the cache service, which is missing
	for k, v := range want {
		if got[k] != v {
			t.Errorf("per-source --owner: got %s owned by %q, want %q", k, got[k], v)
		}
	}
	if want := []string{redis}; !slices.Equal(plan.MissingImages, want) {
		t.Errorf("got missing images %v, want %v", plan.MissingImages, want)
	}
	if _, err := Prepare(ctx, eng, p, PlanOptions{Owners: map[string]string{"gateway.env": "1:1"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("got %v for --owner on a source not converted, want ErrInvalid", err)
	}
	if plan, err := Prepare(ctx, eng, p, PlanOptions{Owner: "1:1"}); err != nil || plan.Check() != nil || len(plan.MissingImages) != 0 {
		t.Errorf("got %v, %v with a numeric --owner for all, want a complete plan", err, plan.MissingImages)
	}
}

// TestPrepareOwnerFrom covers every way to an owner and OwnerFrom.
func TestPrepareOwnerFrom(t *testing.T) {
	eng := dockertest.Engine(t)
	rootImage := userImage(t, "root")
	nodeImage := userImage(t, "node")
	lsioImage := userImage(t, "root\nENV PUID=911 PGID=911")
	tests := []struct {
		name, image, extra, owner string
		want, wantFrom            string
		wantErr                   error
	}{
		{"flag", nodeImage, "", "42:43", "42:43", OwnerFromFlag, nil},
		{"user:", nodeImage, "    user: nobody\n", "", "65534:65534", OwnerFromUser, nil},
		{"image USER", nodeImage, "", "", "1000:1000", OwnerFromImage, nil},
		{"root image, no opinion", rootImage, "", "", "0:0", OwnerFromSource, nil},
		{"MOLTCTL_USER", rootImage, "    environment: [MOLTCTL_USER=node]\n", "", "1000:1000", "env:" + BootstrapUserEnv, nil},
		{"PUID and PGID", rootImage, "    environment: {PUID: \"1000\", PGID: \"1001\"}\n", "", "1000:1001", "env:PUID", nil},
		{"PUID alone: the user's group", rootImage, "    environment: [PUID=1000]\n", "", "1000:1000", "env:PUID", nil},
		{"USERMAP_UID and USERMAP_GID", rootImage, "    environment: [USERMAP_UID=1000, USERMAP_GID=100]\n", "", "1000:100", "env:USERMAP_UID", nil},
		{"PUID of the image", lsioImage, "", "", "911:911", "env:PUID", nil},
		{"the service's PUID wins over the image's", lsioImage, "    environment: [PUID=1000, PGID=1000]\n", "", "1000:1000", "env:PUID", nil},
		{"MOLTCTL_USER before PUID", rootImage, "    environment: [PUID=1000, MOLTCTL_USER=nobody]\n", "", "65534:65534", "env:" + BootstrapUserEnv, nil},
		{"PUID ignored when the image has a USER", nodeImage, "    environment: [PUID=4242]\n", "", "1000:1000", OwnerFromImage, nil},
		{"PUID not a number", rootImage, "    environment: [PUID=abc]\n", "", "", "", ErrInvalid},
		{"PGID not a number", rootImage, "    environment: [PUID=1000, PGID=-1]\n", "", "", "", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "services:\n  app:\n    image: "+tt.image+"\n"+tt.extra+"    volumes: [\"./state:/state\"]\n")
			plan, err := Prepare(context.Background(), eng, load(t, f, dockertest.Name("mig")), PlanOptions{Owner: tt.owner})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "abc") {
					t.Errorf("got %q, want the variable's value left out", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := plan.Conversions[0]
			if c.Owner != tt.want || c.OwnerFrom != tt.wantFrom {
				t.Errorf("got owner %s from %s, want %s from %s", c.Owner, c.OwnerFrom, tt.want, tt.wantFrom)
			}
		})
	}
}
