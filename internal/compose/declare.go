package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v4"
)

// Declaration says where one service mount is written.
type Declaration struct {
	// File is the absolute path of the compose file whose entry compose keeps.
	File string
	// Via says how the entry reaches the service when it is not written in the
	// service itself: "YAML anchor &NAME", or "extends: SERVICE of FILE".
	Via string
	// Shared lists every service mount the same entry declares (this one
	// included), sorted, when there is more than one.
	Shared []MountRef
}

// Declarations parses the compose files (in -f order) and the files their
// services extend, and returns where every mount of every service is declared:
// the last file with an entry for it, through YAML anchors and merge keys
// (<<: *base) and through extends: (of the same file or of another one, a
// service's own entry winning over its base's for the same target). env
// interpolates targets written with variables.
func Declarations(files []string, env map[string]string) (map[MountRef]Declaration, error) {
	decls, _, err := declare(files, env, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[MountRef]Declaration, len(decls))
	for ref, d := range decls {
		out[ref] = Declaration{File: d.file, Via: d.via, Shared: d.group}
	}
	return out, nil
}

// decl is one service mount's entry.
type decl struct {
	file  string
	sm    serviceMount
	via   string
	group []MountRef // every mount whose entry is the same node, if more than one
}

type parsedFile struct {
	src []byte
	doc *yaml.Node
}

// declare is Declarations with the parsed files, reading them with read
// (os.ReadFile when nil).
func declare(files []string, env map[string]string, read func(string) ([]byte, error)) (map[MountRef]*decl, map[string]*parsedFile, error) {
	d := &declarer{env: env, read: read, parsed: map[string]*parsedFile{}}
	if d.read == nil {
		d.read = os.ReadFile
	}
	out := map[MountRef]*decl{}
	for _, f := range files {
		pf, err := d.parse(f)
		if err != nil {
			return nil, nil, err
		}
		root := pf.doc.Content[0]
		_, services := mapGet(root, "services")
		if services == nil || services.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(services.Content); i += 2 {
			ms, err := d.service(f, services.Content[i].Value, 0)
			if err != nil {
				return nil, nil, err
			}
			for _, m := range ms {
				out[m.sm.ref] = m
			}
		}
	}
	groups := map[*yaml.Node][]MountRef{}
	for ref, m := range out {
		n := deref(m.sm.item)
		groups[n] = append(groups[n], ref)
	}
	for _, m := range out {
		g := groups[deref(m.sm.item)]
		if len(g) > 1 {
			slices.SortFunc(g, func(a, b MountRef) int {
				return strings.Compare(a.Service+"\x00"+a.Target, b.Service+"\x00"+b.Target)
			})
			m.group = g
		}
	}
	return out, d.parsed, nil
}

type declarer struct {
	env    map[string]string
	read   func(string) ([]byte, error)
	parsed map[string]*parsedFile
}

func (d *declarer) parse(f string) (*parsedFile, error) {
	if pf, ok := d.parsed[f]; ok {
		return pf, nil
	}
	src, err := d.read(f)
	if err != nil {
		return nil, fmt.Errorf("reading compose file: %w", err)
	}
	doc, err := parse(src)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", f, err)
	}
	pf := &parsedFile{src: src, doc: doc}
	d.parsed[f] = pf
	return pf, nil
}

// service returns the mounts of service name as file f declares them,
// following extends: (at most 16 deep; compose refuses cycles itself).
func (d *declarer) service(f, name string, depth int) ([]*decl, error) {
	pf, err := d.parse(f)
	if err != nil {
		return nil, err
	}
	root := pf.doc.Content[0]
	_, services := mapGet(root, "services")
	svcKey, svcNode := mapGet(services, name)
	if svcKey == nil {
		return nil, nil
	}
	aliased := aliasedAnchors(pf.doc)
	var out []*decl
	own := map[string]bool{}
	for _, sm := range mountsOf(root, services, name, svcNode, d.env) {
		out = append(out, &decl{file: f, sm: sm, via: anchorVia(sm.path, aliased)})
		own[sm.ref.Target] = true
	}
	ext, _ := lookupMerged(svcNode, "extends", 0)
	if ext == nil || depth > 16 {
		return out, nil
	}
	ext = deref(ext)
	baseFile, baseName := f, ""
	switch ext.Kind {
	case yaml.ScalarNode:
		baseName = ext.Value
	case yaml.MappingNode:
		if _, s := mapGet(ext, "service"); s != nil {
			baseName = deref(s).Value
		}
		if _, fl := mapGet(ext, "file"); fl != nil {
			p := deref(fl).Value
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(f), p)
			}
			baseFile = filepath.Clean(p)
		}
	}
	if baseName == "" {
		return out, nil
	}
	base, err := d.service(baseFile, baseName, depth+1)
	if err != nil {
		return nil, err
	}
	for _, b := range base {
		if own[b.sm.ref.Target] {
			continue
		}
		m := *b
		m.sm.ref = MountRef{Service: name, Target: b.sm.ref.Target}
		m.via = "extends: " + baseName
		if baseFile != f {
			m.via += " of " + baseFile
		}
		out = append(out, &m)
	}
	return out, nil
}

// anchorVia names the first YAML anchor a mount entry is reached through or
// shared by, or "".
func anchorVia(path []*yaml.Node, aliased map[string]bool) string {
	for _, n := range path[2:] { // below services:
		switch {
		case n.Kind == yaml.AliasNode && n.Alias != nil:
			return "YAML anchor &" + n.Alias.Anchor
		case n.Anchor != "" && aliased[n.Anchor]:
			return "YAML anchor &" + n.Anchor
		}
	}
	return ""
}
