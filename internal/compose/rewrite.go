package compose

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/compose-spec/compose-go/v2/format"
	"github.com/compose-spec/compose-go/v2/template"
	"go.yaml.in/yaml/v4"
)

// ErrCannotEdit is wrapped by every error of Rewrite that refuses a construct it
// can't edit safely (anchors used elsewhere, aliases, interpolated or multi-line
// mount strings, flow-style mappings that need lines added or removed, ...).
var ErrCannotEdit = errors.New("can't edit safely")

// SourceExtension is the extension of a top-level volume that Rewrite adds to
// record the host directory the volume was converted from.
const SourceExtension = "x-moltctl-source"

// MountRef names one mount of the merged project: a service and the container path.
type MountRef struct {
	Service string
	Target  string
}

// Conversion is one host directory that becomes a named volume, as Rewrite needs it.
type Conversion struct {
	// Key is the new entry under the top-level volumes: (it must not exist yet).
	Key string
	// Source is the absolute host directory. The new volumes: entry records it as
	// the extension x-moltctl-source, so later plans know what was converted.
	Source string
	// NoCopy adds nocopy to every mount, so the image's content at the target is
	// not copied into the new, empty volume.
	NoCopy bool
	// Mounts are the bind mounts that become mounts of the volume Key; File is the
	// compose file that declares each one (see Locate).
	Mounts []Mount
	// FromVolume, when set, is a bind-backed named volume (driver_opts o: bind,
	// device: Source): the Mounts are mounts of it, not bind mounts, and become
	// mounts of Key. Its own entry under volumes: stays.
	FromVolume string
}

// Mount is one bind mount to convert, in the file that declares it.
type Mount struct {
	MountRef
	// File is the absolute path of the compose file to edit.
	File string
}

// Edit is the change of one compose file: its path, its content before and after.
type Edit struct {
	Path string
	Old  []byte
	New  []byte
}

// Diff renders the edit as a unified diff with three lines of context, headed
// "--- PATH" and "+++ PATH" (so `patch -p0` applies it). It is empty when Old
// and New are equal.
func (e Edit) Diff() string {
	return unifiedDiff(e.Path, e.Path, e.Old, e.New)
}

// Locate parses the compose files (in -f order) and returns, for every mount of
// every service, the file that declares it: the last of the files whose entry
// compose's merge keeps, or the file a service extends (extends: file:). env
// interpolates targets written with variables. Mounts reached through YAML
// aliases, merge keys and extends: are included (see Declarations).
func Locate(files []string, env map[string]string) (map[MountRef]string, error) {
	decls, _, err := declare(files, env, os.ReadFile)
	if err != nil {
		return nil, err
	}
	out := make(map[MountRef]string, len(decls))
	for ref, d := range decls {
		out[ref] = d.file
	}
	return out, nil
}

// Rewrite computes the edits that turn the bind mounts of conversions into mounts
// of named volumes, in the files that declare them, and add each volume under the
// top-level volumes: of the first of those files that is one of files (else of
// files[0]). Only the bytes of the converted mounts change: comments, quoting,
// key order, indentation and blank lines stay. A mount entry shared by several
// service mounts (a YAML anchor, a service that others extend) is edited once,
// and only when every mount sharing it is in the same conversion.
// env interpolates targets written with variables.
// Files without changes get no Edit. It returns an error wrapping ErrCannotEdit
// for any mount it can't edit safely, and then no edits at all.
func Rewrite(files []string, env map[string]string, conversions []Conversion) ([]Edit, error) {
	r, err := newRewriter(files, env)
	if err != nil {
		return nil, err
	}
	for _, c := range conversions {
		if err := r.convert(c); err != nil {
			return nil, err
		}
	}
	out, content, err := r.apply()
	if err != nil {
		return nil, err
	}
	if err := verify(files, env, content, conversions); err != nil {
		return nil, fmt.Errorf("rewriting the compose files: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// rewriter is the state of one Rewrite: the parsed files, where each mount is
// declared, and the edits collected so far per file.
type rewriter struct {
	files  []string
	decls  map[MountRef]*decl
	parsed map[string]*parsedFile
	state  map[string]*fileEdits
	edited map[*yaml.Node]bool // mount entries already edited (shared through anchors or extends:)
}

// fileEdits is what Rewrite changes in one file: the mount edits and the
// conversions whose volumes it declares at the top level.
type fileEdits struct {
	ctx   *editContext
	edits []textEdit
	convs []Conversion
}

func newRewriter(files []string, env map[string]string) (*rewriter, error) {
	decls, parsed, err := declare(files, env, os.ReadFile)
	if err != nil {
		return nil, err
	}
	return &rewriter{files: files, decls: decls, parsed: parsed,
		state: map[string]*fileEdits{}, edited: map[*yaml.Node]bool{}}, nil
}

// load returns the edits of file f, starting them on first use.
func (r *rewriter) load(f string) *fileEdits {
	if st, ok := r.state[f]; ok {
		return st
	}
	pf := r.parsed[f]
	st := &fileEdits{ctx: newEditContext(pf.src, pf.doc)}
	r.state[f] = st
	return st
}

// order is the position of f among the -f files, len(files) for the others
// (files reached through extends:).
func (r *rewriter) order(f string) int {
	if i := slices.Index(r.files, f); i >= 0 {
		return i
	}
	return len(r.files)
}

// convert collects the edits of one conversion: each of its mounts, and the
// volume's top-level entry in its home file.
func (r *rewriter) convert(c Conversion) error {
	if err := checkConversion(c); err != nil {
		return err
	}
	if len(c.Mounts) == 0 {
		return nil
	}
	in := map[MountRef]bool{}
	for _, m := range c.Mounts {
		in[m.MountRef] = true
	}
	for _, m := range c.Mounts {
		if err := r.editMount(c, m, in); err != nil {
			return err
		}
	}
	st := r.load(r.home(c.Mounts))
	st.convs = append(st.convs, c)
	return nil
}

// checkConversion refuses a conversion whose key or source can't be written.
func checkConversion(c Conversion) error {
	if !validKey(c.Key) {
		return fmt.Errorf("rewriting the compose files: invalid volume key %q", c.Key)
	}
	if !strings.HasPrefix(c.Source, "/") || !utf8.ValidString(c.Source) {
		return fmt.Errorf("rewriting the compose files: volume %s: source %q is not an absolute path", c.Key, c.Source)
	}
	return nil
}

// editMount collects the edits of mount m of conversion c, once per mount
// entry, refusing an entry shared with a mount that is not in the conversion
// (in).
func (r *rewriter) editMount(c Conversion, m Mount, in map[MountRef]bool) error {
	d, ok := r.decls[m.MountRef]
	if !ok || d.file != m.File {
		return fmt.Errorf("rewriting %s: service %s, mount %s is not declared in this file: %w",
			m.File, m.Service, m.Target, ErrCannotEdit)
	}
	for _, ref := range d.group {
		if !in[ref] {
			return fmt.Errorf("rewriting %s, service %s, mount %s: declared once through %s for %s, and %s is not converted the same way: %w",
				m.File, m.Service, m.Target, d.via, refList(d.group), refList([]MountRef{ref}), ErrCannotEdit)
		}
	}
	node := deref(d.sm.item)
	if r.edited[node] {
		return nil
	}
	r.edited[node] = true
	st := r.load(d.file)
	edits, err := mountEdits(st.ctx, d.sm, c.Key, c.NoCopy, c.FromVolume)
	if err != nil {
		return fmt.Errorf("rewriting %s, service %s, mount %s: %w", m.File, m.Service, m.Target, err)
	}
	st.edits = append(st.edits, edits...)
	return nil
}

// home is the file whose top-level volumes: gets the volume of mounts: the
// first -f file declaring one of them, else the first -f file.
func (r *rewriter) home(mounts []Mount) string {
	home := ""
	for _, m := range mounts {
		if r.order(m.File) < len(r.files) && (home == "" || r.order(m.File) < r.order(home)) {
			home = m.File
		}
	}
	if home == "" {
		home = r.files[0]
	}
	return home
}

// apply adds the top-level volume entries and applies the edits of every file
// in -f order, returning the files that change and their new content.
func (r *rewriter) apply() ([]Edit, map[string][]byte, error) {
	out := []Edit{}
	content := map[string][]byte{}
	for _, f := range r.paths() {
		st := r.state[f]
		if len(st.convs) > 0 {
			e, err := volumesEdits(st.ctx.src, st.ctx.doc, st.convs)
			if err != nil {
				return nil, nil, fmt.Errorf("rewriting %s: %w", f, err)
			}
			st.edits = append(st.edits, e...)
		}
		nb, err := applyText(st.ctx.src, st.edits)
		if err != nil {
			return nil, nil, fmt.Errorf("rewriting %s: %w", f, err)
		}
		if !bytes.Equal(nb, st.ctx.src) {
			out = append(out, Edit{Path: f, Old: st.ctx.src, New: nb})
			content[f] = nb
		}
	}
	return out, content, nil
}

// paths lists the edited files in -f order, then the others by name.
func (r *rewriter) paths() []string {
	paths := make([]string, 0, len(r.state))
	for f := range r.state {
		paths = append(paths, f)
	}
	slices.SortFunc(paths, func(a, b string) int {
		if d := r.order(a) - r.order(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return paths
}

// verify reads the files back with their new content and checks that every
// converted mount is now a mount of its volume.
func verify(files []string, env map[string]string, content map[string][]byte, conversions []Conversion) error {
	read := func(f string) ([]byte, error) {
		if b, ok := content[f]; ok {
			return b, nil
		}
		return os.ReadFile(f)
	}
	decls, _, err := declare(files, env, read)
	if err != nil {
		return fmt.Errorf("the rewritten files do not parse (%v): %w", err, ErrCannotEdit)
	}
	for _, c := range conversions {
		for _, m := range c.Mounts {
			d, ok := decls[m.MountRef]
			if !ok || d.sm.source != c.Key || d.sm.typ != "volume" {
				return fmt.Errorf("service %s, mount %s did not become volume %s: %w", m.Service, m.Target, c.Key, ErrCannotEdit)
			}
			// Short syntax: read it back as compose does.
			if n := deref(d.sm.item); n.Kind == yaml.ScalarNode {
				spec := n.Value
				if strings.Contains(spec, "$") {
					if spec, err = template.Substitute(spec, lookupEnv(env)); err != nil {
						continue
					}
				}
				v, err := format.ParseVolume(spec)
				if err != nil || v.Type != "volume" || v.Source != c.Key || cleanTarget(v.Target) != m.Target {
					return fmt.Errorf("service %s, mount %s: compose would not read %q as volume %s: %w", m.Service, m.Target, n.Value, c.Key, ErrCannotEdit)
				}
			}
		}
	}
	return nil
}

func refList(refs []MountRef) string {
	var parts []string
	for _, r := range refs {
		parts = append(parts, r.Service+":"+r.Target)
	}
	return strings.Join(parts, ", ")
}

func parse(src []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("more than one YAML document: %w", ErrCannotEdit)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fmt.Errorf("not a YAML document: %w", ErrCannotEdit)
	}
	var v any // duplicate keys and the like only show when decoding
	if err := doc.Decode(&v); err != nil {
		return nil, err
	}
	return &doc, nil
}

// mapGet returns the key and value nodes of key in mapping m, or nils.
func mapGet(m *yaml.Node, key string) (*yaml.Node, *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// serviceMount is one entry of a service's volumes: in one file.
type serviceMount struct {
	ref    MountRef
	typ    string // "bind", "volume", ... ("" when unknown)
	source string // raw source, uninterpolated
	opaque bool   // short syntax whose source only variables delimit
	path   []*yaml.Node
	item   *yaml.Node
}

func serviceMounts(doc *yaml.Node, env map[string]string) []serviceMount {
	root := doc.Content[0]
	_, services := mapGet(root, "services")
	if services == nil || services.Kind != yaml.MappingNode {
		return nil
	}
	var out []serviceMount
	for i := 0; i+1 < len(services.Content); i += 2 {
		out = append(out, mountsOf(root, services, services.Content[i].Value, services.Content[i+1], env)...)
	}
	return out
}

// lookupMerged finds key in mapping m, else in the mappings it merges (<<: *base,
// <<: [*a, *b]), depth first in order as YAML merges them. via are the merge
// and alias nodes on the way.
func lookupMerged(m *yaml.Node, key string, depth int) (val *yaml.Node, via []*yaml.Node) {
	m = deref(m)
	if _, v := mapGet(m, key); v != nil {
		return v, nil
	}
	_, merge := mapGet(m, "<<")
	if merge == nil || depth > 16 {
		return nil, nil
	}
	bases := []*yaml.Node{merge}
	if merge.Kind == yaml.SequenceNode {
		bases = merge.Content
	}
	for _, b := range bases {
		if v, rest := lookupMerged(b, key, depth+1); v != nil {
			path := []*yaml.Node{merge}
			if b != merge {
				path = append(path, b)
			}
			if db := deref(b); db != b {
				path = append(path, db)
			}
			return v, append(path, rest...)
		}
	}
	return nil, nil
}

// mountsOf returns the entries of one service's volumes: in this file: of the
// service itself, else of a mapping it merges. The alias nodes stay on the path.
func mountsOf(root, services *yaml.Node, name string, svcNode *yaml.Node, env map[string]string) []serviceMount {
	svc := deref(svcNode)
	if svc.Kind != yaml.MappingNode {
		return nil
	}
	volsNode, via := lookupMerged(svc, "volumes", 0)
	if volsNode == nil {
		return nil
	}
	vols := deref(volsNode)
	if vols.Kind != yaml.SequenceNode {
		return nil
	}
	var out []serviceMount
	for _, item := range vols.Content {
		path := append([]*yaml.Node{root, services, svcNode, svc}, via...)
		sm := serviceMount{item: item, path: append(path, volsNode, vols, item)}
		n := deref(item)
		var target string
		switch n.Kind {
		case yaml.ScalarNode:
			// Split the interpolated string as compose does, and the raw one
			// to edit; when they disagree the source can't be told apart.
			full := n.Value
			if env != nil {
				if v, err := template.Substitute(full, lookupEnv(env)); err == nil {
					full = v
				}
			}
			fsrc, ftgt, _, fok := splitShort(full)
			if !fok {
				continue
			}
			src, tgt, _, ok := splitShort(n.Value)
			if env != nil && ok {
				if v, err := template.Substitute(tgt, lookupEnv(env)); err == nil {
					tgt = v
				}
			}
			sm.opaque = !ok || tgt != ftgt
			sm.source, target = src, ftgt
			sm.typ = "bind"
			if isVolumeName(fsrc) {
				sm.typ = "volume"
			}
		case yaml.MappingNode:
			_, t := mapGet(n, "target")
			if t == nil {
				continue
			}
			target = t.Value
			if env != nil {
				if v, err := template.Substitute(target, lookupEnv(env)); err == nil {
					target = v
				}
			}
			if _, ty := mapGet(n, "type"); ty != nil {
				sm.typ = ty.Value
			}
			if _, s := mapGet(n, "source"); s != nil {
				sm.source = s.Value
			}
		default:
			continue
		}
		sm.ref = MountRef{Service: name, Target: cleanTarget(target)}
		out = append(out, sm)
	}
	return out
}

func lookupEnv(env map[string]string) template.Mapping {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// deref follows an alias to its anchored node.
func deref(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func cleanTarget(t string) string {
	if t == "" {
		return t
	}
	return path.Clean(t)
}

// isVolumeName reports whether the source of a short-syntax mount names a volume
// rather than a host path, by compose's rule.
func isVolumeName(src string) bool {
	if src == "" {
		return false
	}
	switch src[0] {
	case '.', '/', '~', '$':
		return false
	}
	return !strings.ContainsAny(src, "/\\")
}

// splitShort splits a short-syntax mount SRC:DST[:MODE] at the colons outside
// ${...}. ok is false when there is no source part.
func splitShort(s string) (src, dst, mode string, ok bool) {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '$' && i+1 < len(s) && s[i+1] == '{':
			depth++
			i++
		case s[i] == '}' && depth > 0:
			depth--
		case s[i] == ':' && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	parts = append(parts, s[start:])
	switch len(parts) {
	case 2:
		return parts[0], parts[1], "", parts[0] != ""
	case 3:
		return parts[0], parts[1], parts[2], parts[0] != ""
	}
	return "", "", "", false
}

// editContext is what the edits of one file share, computed once.
type editContext struct {
	src     []byte
	doc     *yaml.Node
	lines   lineIndex
	aliased map[string]bool
}

func newEditContext(src []byte, doc *yaml.Node) *editContext {
	return &editContext{src: src, doc: doc, lines: lineStarts(src), aliased: aliasedAnchors(doc)}
}

// mountEdits returns the text edits that turn one bind mount into a mount of
// key. A mount entry reached through YAML aliases is edited where it is
// written; Rewrite has checked that every mount sharing it converts alike.
func mountEdits(ec *editContext, sm serviceMount, key string, nocopy bool, fromVolume string) ([]textEdit, error) {
	if sm.typ == "volume" && sm.source == key {
		return nil, nil // already converted: rewriting twice changes nothing
	}
	item := deref(sm.item)
	if err := checkConvertible(ec, sm, item, fromVolume); err != nil {
		return nil, err
	}
	switch item.Kind {
	case yaml.ScalarNode:
		return shortMountEdits(ec, sm, item, key, nocopy)
	case yaml.MappingNode:
		return longMountEdits(ec, item, key, nocopy)
	}
	return nil, fmt.Errorf("unexpected mount syntax: %w", ErrCannotEdit)
}

// checkConvertible refuses a mount that is not a bind mount (or, with
// fromVolume, a mount of that volume) and one holding an anchor or alias that
// is used elsewhere.
func checkConvertible(ec *editContext, sm serviceMount, item *yaml.Node, fromVolume string) error {
	switch {
	case fromVolume != "":
		if sm.typ != "volume" || sm.source != fromVolume {
			return fmt.Errorf("not a mount of volume %s: %w", fromVolume, ErrCannotEdit)
		}
	case sm.typ != "bind" && !(sm.typ == "" && item.Kind == yaml.ScalarNode):
		return fmt.Errorf("a %q mount, not a bind mount: %w", sm.typ, ErrCannotEdit)
	}
	for _, c := range item.Content {
		if hasAnchoredAlias(c, ec.aliased) {
			return fmt.Errorf("contains a YAML anchor or alias used elsewhere: %w", ErrCannotEdit)
		}
	}
	return nil
}

// shortMountEdits rewrites a short-syntax mount "SRC:DST[:MODE]" as
// "KEY:DST[:MODE]", adding nocopy to the mode when asked.
func shortMountEdits(ec *editContext, sm serviceMount, item *yaml.Node, key string, nocopy bool) ([]textEdit, error) {
	if sm.opaque {
		return nil, fmt.Errorf("%q: variables hide where the source ends and the target starts: %w", item.Value, ErrCannotEdit)
	}
	_, dst, mode, _ := splitShort(item.Value)
	v := key + ":" + dst
	if mode != "" {
		v += ":" + mode
	}
	if nocopy && !slices.Contains(strings.Split(mode, ","), "nocopy") {
		if mode == "" {
			v += ":nocopy"
		} else {
			v += ",nocopy"
		}
	}
	e, err := replaceScalar(ec.src, ec.lines, item, v)
	if err != nil {
		return nil, err
	}
	return []textEdit{e}, nil
}

// longMountEdits rewrites a long-syntax mount: type volume, source key, its
// bind: options removed (unless they carry an SELinux label) and, with nocopy,
// a volume: nocopy: true added.
func longMountEdits(ec *editContext, item *yaml.Node, key string, nocopy bool) ([]textEdit, error) {
	out, err := typeSourceEdits(ec, item, key)
	if err != nil {
		return nil, err
	}
	bk, bv := mapGet(item, "bind")
	if _, sel := mapGet(deref(bv), "selinux"); sel != nil {
		bk, bv = nil, nil // the label stays: compose applies it to the volume too
	}
	if err := checkLongOptions(item, bk, nocopy); err != nil {
		return nil, err
	}
	if bk != nil {
		e, err := removeBind(ec, item, bk, bv)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if nocopy {
		out = append(out, addNocopy(ec, item, bk))
	}
	return out, nil
}

// typeSourceEdits sets type: volume and source: key in a long-syntax mount.
func typeSourceEdits(ec *editContext, item *yaml.Node, key string) ([]textEdit, error) {
	var out []textEdit
	_, ty := mapGet(item, "type")
	_, so := mapGet(item, "source")
	if ty == nil || so == nil || ty.Kind != yaml.ScalarNode || so.Kind != yaml.ScalarNode {
		return nil, fmt.Errorf("long syntax without scalar type and source: %w", ErrCannotEdit)
	}
	if ty.Value != "volume" {
		e, err := replaceScalar(ec.src, ec.lines, ty, "volume")
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	e, err := replaceScalar(ec.src, ec.lines, so, key)
	if err != nil {
		return nil, err
	}
	return append(out, e), nil
}

// checkLongOptions refuses a long-syntax mount whose bind: key bk (nil when
// it stays) or nocopy would need lines of a flow-style mapping changed, and a
// bind mount that already has volume: options when nocopy adds some.
func checkLongOptions(item, bk *yaml.Node, nocopy bool) error {
	_, vv := mapGet(item, "volume")
	needLines := bk != nil || (nocopy && vv == nil)
	if needLines && item.Style&yaml.FlowStyle != 0 {
		return fmt.Errorf("flow-style mapping would need lines added or removed: %w", ErrCannotEdit)
	}
	if nocopy && vv != nil {
		return fmt.Errorf("long syntax with volume: options on a bind mount: %w", ErrCannotEdit)
	}
	return nil
}

// removeBind deletes the lines of the bind: key bk and its value bv.
func removeBind(ec *editContext, item, bk, bv *yaml.Node) (textEdit, error) {
	if item.Content[0] == bk {
		return textEdit{}, fmt.Errorf("bind: is the first key of the mount: %w", ErrCannotEdit)
	}
	last := lastLine(bv)
	if !ownsLines(item, bk, bk.Line, last) {
		return textEdit{}, fmt.Errorf("bind: options share lines with other keys: %w", ErrCannotEdit)
	}
	return textEdit{start: ec.lines.start(bk.Line), end: ec.lines.start(last + 1)}, nil
}

// addNocopy inserts "volume: nocopy: true" after the last line of the mount
// (not counting the bind: key bk, which is removed).
func addNocopy(ec *editContext, item, bk *yaml.Node) textEdit {
	last := 0
	for i := 0; i+1 < len(item.Content); i += 2 {
		if item.Content[i] == bk {
			continue
		}
		last = max(last, lastLine(item.Content[i+1]), item.Content[i].Line)
	}
	indent := strings.Repeat(" ", item.Column-1)
	nl := newline(ec.src)
	text := indent + "volume:" + nl + indent + indentUnit(ec.doc) + "nocopy: true" + nl
	at := ec.lines.start(last + 1)
	if at == len(ec.src) && len(ec.src) > 0 && ec.src[len(ec.src)-1] != '\n' {
		text = nl + text
	}
	return textEdit{start: at, end: at, text: text}
}

// ownsLines reports whether no key of m other than k starts on lines from..to.
func ownsLines(m, k *yaml.Node, from, to int) bool {
	for i := 0; i < len(m.Content); i += 2 {
		if c := m.Content[i]; c != k && c.Line >= from && c.Line <= to {
			return false
		}
	}
	return true
}

// volumesEdits adds keys under the top-level volumes: of the file.
func volumesEdits(src []byte, doc *yaml.Node, convs []Conversion) ([]textEdit, error) {
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode || root.Style&yaml.FlowStyle != 0 {
		return nil, fmt.Errorf("the top level is not a block mapping: %w", ErrCannotEdit)
	}
	nl := newline(src)
	unit := indentUnit(doc)
	lines := lineStarts(src)
	vk, vv := mapGet(root, "volumes")
	convs = slices.DeleteFunc(slices.Clone(convs), func(c Conversion) bool {
		ek, _ := mapGet(vv, c.Key)
		return ek != nil // already declared: rewriting twice changes nothing
	})
	if len(convs) == 0 {
		return nil, nil
	}
	entries := func(indent string) string {
		var b strings.Builder
		for _, c := range convs {
			b.WriteString(indent + c.Key + ": {" + SourceExtension + ": " + strconv.Quote(c.Source) + "}" + nl)
		}
		return b.String()
	}
	if vk == nil {
		text := nl + "volumes:" + nl + entries(strings.Repeat(" ", root.Column-1)+unit)
		if len(src) > 0 && src[len(src)-1] != '\n' {
			text = nl + text
		}
		if len(src) == 0 {
			text = strings.TrimPrefix(text, nl)
		}
		return []textEdit{{start: len(src), end: len(src), text: text}}, nil
	}
	switch {
	case vv.Kind == yaml.ScalarNode && vv.Tag == "!!null" && vv.Value == "":
		at := lines.start(vk.Line + 1)
		text := entries(strings.Repeat(" ", vk.Column-1) + unit)
		if at == len(src) && len(src) > 0 && src[len(src)-1] != '\n' {
			text = nl + text
		}
		return []textEdit{{start: at, end: at, text: text}}, nil
	case vv.Kind == yaml.MappingNode && vv.Style&yaml.FlowStyle != 0 && len(vv.Content) == 0 && vv.Line == vk.Line:
		off := lines.offset(src, vv.Line, vv.Column)
		if !bytes.HasPrefix(src[off:], []byte("{}")) {
			return nil, fmt.Errorf("top-level volumes: written as an unusual empty mapping: %w", ErrCannotEdit)
		}
		at := lines.start(vk.Line + 1)
		text := entries(strings.Repeat(" ", vk.Column-1) + unit)
		if at == len(src) && len(src) > 0 && src[len(src)-1] != '\n' {
			text = nl + text
		}
		// Drop "{}" and the blanks before it.
		start := off
		for start > 0 && (src[start-1] == ' ' || src[start-1] == '\t') {
			start--
		}
		return []textEdit{{start: start, end: off + 2}, {start: at, end: at, text: text}}, nil
	case vv.Kind == yaml.MappingNode && vv.Style&yaml.FlowStyle == 0 && len(vv.Content) > 0:
		if vv.Anchor != "" {
			return nil, fmt.Errorf("top-level volumes: carries a YAML anchor: %w", ErrCannotEdit)
		}
		at := lines.start(lastLine(vv) + 1)
		text := entries(strings.Repeat(" ", vv.Column-1))
		if at == len(src) && len(src) > 0 && src[len(src)-1] != '\n' {
			text = nl + text
		}
		return []textEdit{{start: at, end: at, text: text}}, nil
	}
	return nil, fmt.Errorf("top-level volumes: is not a block mapping: %w", ErrCannotEdit)
}

// replaceScalar replaces the text of a single-line scalar, keeping its quoting.
func replaceScalar(src []byte, lines lineIndex, n *yaml.Node, value string) (textEdit, error) {
	if n.Tag != "" && n.Style&yaml.TaggedStyle != 0 {
		return textEdit{}, fmt.Errorf("tagged scalar %q: %w", n.Value, ErrCannotEdit)
	}
	off := lines.offset(src, n.Line, n.Column)
	if off < 0 || off > len(src) {
		return textEdit{}, fmt.Errorf("scalar %q not found in the text: %w", n.Value, ErrCannotEdit)
	}
	if a := "&" + n.Anchor; n.Anchor != "" && bytes.HasPrefix(src[off:], []byte(a)) {
		// The node's position is its anchor's: the value follows it.
		off += len(a)
		for off < len(src) && (src[off] == ' ' || src[off] == '\t') {
			off++
		}
	}
	rest := src[off:]
	var raw, text string
	switch n.Style &^ yaml.TaggedStyle {
	case 0, yaml.FlowStyle:
		raw, text = n.Value, value
	case yaml.DoubleQuotedStyle:
		if strings.ContainsAny(n.Value, "\\\"\n") {
			return textEdit{}, fmt.Errorf("double-quoted scalar %q with escapes: %w", n.Value, ErrCannotEdit)
		}
		raw, text = `"`+n.Value+`"`, `"`+value+`"`
	case yaml.SingleQuotedStyle:
		if strings.ContainsAny(n.Value, "'\n") {
			return textEdit{}, fmt.Errorf("single-quoted scalar %q with escapes: %w", n.Value, ErrCannotEdit)
		}
		raw, text = "'"+n.Value+"'", "'"+value+"'"
	default:
		return textEdit{}, fmt.Errorf("block scalar %q: %w", n.Value, ErrCannotEdit)
	}
	if raw == "" || !bytes.HasPrefix(rest, []byte(raw)) || strings.Contains(raw, "\n") {
		return textEdit{}, fmt.Errorf("scalar %q is not written as parsed (escapes or line breaks): %w", n.Value, ErrCannotEdit)
	}
	if len(rest) > len(raw) {
		// A plain scalar must end where its text ends.
		if c := rest[len(raw)]; n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 && !strings.ContainsRune(" \t\r\n,]}#", rune(c)) {
			return textEdit{}, fmt.Errorf("scalar %q is not written as parsed (escapes or line breaks): %w", n.Value, ErrCannotEdit)
		}
	}
	return textEdit{start: off, end: off + len(raw), text: text}, nil
}

func aliasedAnchors(doc *yaml.Node) map[string]bool {
	out := map[string]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			out[n.Alias.Anchor] = true
			return
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(doc)
	return out
}

func hasAnchoredAlias(n *yaml.Node, aliased map[string]bool) bool {
	if n.Kind == yaml.AliasNode || (n.Anchor != "" && aliased[n.Anchor]) {
		return true
	}
	for _, c := range n.Content {
		if hasAnchoredAlias(c, aliased) {
			return true
		}
	}
	return false
}

// lastLine is the last line on which n or a descendant starts.
func lastLine(n *yaml.Node) int {
	l := n.Line
	for _, c := range n.Content {
		l = max(l, lastLine(c))
	}
	return l
}

// indentUnit is the file's indentation step, read from services: (default two spaces).
func indentUnit(doc *yaml.Node) string {
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		v := root.Content[i+1]
		if v.Kind == yaml.MappingNode && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 && v.Line > root.Content[i].Line {
			if d := v.Column - root.Content[i].Column; d > 0 && d <= 8 {
				return strings.Repeat(" ", d)
			}
		}
	}
	return "  "
}

func newline(src []byte) string {
	if i := bytes.IndexByte(src, '\n'); i > 0 && src[i-1] == '\r' {
		return "\r\n"
	}
	return "\n"
}

// textEdit replaces src[start:end] with text.
type textEdit struct {
	start, end int
	text       string
}

func applyText(src []byte, edits []textEdit) ([]byte, error) {
	es := slices.Clone(edits)
	slices.SortStableFunc(es, func(a, b textEdit) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return (a.end - a.start) - (b.end - b.start) // insertions first
	})
	var out []byte
	pos := 0
	for _, e := range es {
		if e.start < pos || e.end < e.start || e.end > len(src) {
			return nil, fmt.Errorf("overlapping edits: %w", ErrCannotEdit)
		}
		out = append(out, src[pos:e.start]...)
		out = append(out, e.text...)
		pos = e.end
	}
	return append(out, src[pos:]...), nil
}

// lineIndex holds the byte offset of each line's start (line 1 at index 0).
type lineIndex []int

func lineStarts(src []byte) lineIndex {
	idx := lineIndex{0}
	for i, c := range src {
		if c == '\n' {
			idx = append(idx, i+1)
		}
	}
	if idx[len(idx)-1] != len(src) {
		idx = append(idx, len(src)) // so that "the line after the last" starts at the end
	}
	return idx
}

// start is the offset where 1-based line l starts, or len(src) past the end.
func (li lineIndex) start(l int) int {
	if l-1 < len(li) {
		return li[l-1]
	}
	return li[len(li)-1]
}

// offset converts a 1-based line and rune column to a byte offset, or -1.
func (li lineIndex) offset(src []byte, line, col int) int {
	if line < 1 || line > len(li) {
		return -1
	}
	off := li[line-1]
	for c := 1; c < col; c++ {
		if off >= len(src) || src[off] == '\n' {
			return -1
		}
		_, size := utf8.DecodeRune(src[off:])
		off += size
	}
	return off
}

// validKey reports whether k can be a volume key in every syntax: compose's
// characters, and not a single letter, which short syntax reads as a Windows
// drive ("d:/data").
func validKey(k string) bool {
	if k == "" || len(k) == 1 && (k[0]|0x20 >= 'a' && k[0]|0x20 <= 'z') {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
