package spec

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Limits of the decoder: a scenario is a few hundred nodes; these stop
// alias bombs ("billion laughs") and self-referencing anchors.
const (
	maxNodes = 100_000
	maxDepth = 64
)

// tooBig is the message of an input past maxNodes or maxDepth.
const tooBig = "more than 100000 YAML nodes, or nesting deeper than 64, once aliases and merge keys are expanded; a scenario is far smaller"

// pos is a position in the file, 1-based; zero when unknown.
type pos struct{ line, col int }

func nodePos(n *yaml.Node) pos { return pos{n.Line, n.Column} }

// decoder turns a yaml.Node tree into Go values strictly: unknown fields,
// duplicate keys and values of the wrong type are errors naming the path
// and position. It remembers where each path was and which values were
// written explicitly as zero, for the semantic checks that follow.
type decoder struct {
	errs   *errorList
	pos    map[string]pos  // path → position of its value
	zeros  map[string]bool // paths whose value was an explicit zero
	failed []string        // paths with a decode error
	nodes  int             // nodes visited, aliases expanded
	over   bool            // nodes ran past maxNodes
	fields map[reflect.Type]*structInfo
}

func newDecoder(errs *errorList) *decoder {
	return &decoder{
		errs:   errs,
		pos:    map[string]pos{},
		zeros:  map[string]bool{},
		fields: map[reflect.Type]*structInfo{},
	}
}

// structInfo is the YAML view of a struct type.
type structInfo struct {
	names []string       // field names in declaration order
	index map[string]int // name → struct field index
}

func (d *decoder) structInfo(t reflect.Type) *structInfo {
	if si, ok := d.fields[t]; ok {
		return si
	}
	si := &structInfo{index: map[string]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		si.names = append(si.names, name)
		si.index[name] = i
	}
	d.fields[t] = si
	return si
}

// fail records a problem at n for path.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.failed = append(d.failed, path)
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	d.errs.add(nodePos(n), path, msg)
}

// where names a path for messages.
func where(path string) string {
	if path == "" {
		return "the scenario"
	}
	return path
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decode stores n into v (addressable), reporting problems under path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, depth int) {
	if d.over {
		return
	}
	if d.nodes++; d.nodes > maxNodes {
		d.over = true
		d.fail(n, path, tooBig)
		return
	}
	if depth > maxDepth {
		d.over = true
		d.fail(n, path, tooBig)
		return
	}
	if _, seen := d.pos[path]; !seen {
		d.pos[path] = nodePos(n)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.fail(n, path, "alias *%s has no anchor", n.Value)
			return
		}
		d.decode(n.Alias, v, path, depth+1)
		return
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		d.decode(n.Content[0], v, path, depth+1)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // absent: the zero value, then the default
	}
	t := v.Type()
	switch {
	case t == durationType:
		d.scalar(n, v, path, "a duration like 10s", func(s string) (any, error) {
			return parseDuration(s)
		})
		return
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		d.scalar(n, v, path, "", func(s string) (any, error) {
			p := reflect.New(t)
			err := p.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
			return p.Elem().Interface(), err
		})
		return
	case t == reflect.TypeFor[Phases]():
		d.phases(n, v, path, depth)
		return
	case t == reflect.TypeFor[Resource]():
		d.resource(n, v, path)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		d.decode(n, p.Elem(), path, depth+1)
		v.Set(p)
	case reflect.Struct:
		d.structure(n, v, path, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, e := range n.Content {
			d.decode(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
		v.Set(s)
	case reflect.Map:
		d.mapping(n, v, path, depth)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
		d.noteZero(v, path)
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Float64, reflect.Bool:
		d.number(n, v, path)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			d.fail(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		panic(fmt.Sprintf("spec: no YAML decoding for %s at %s", t, path)) // a bug in this package's types
	}
}

// scalar decodes a scalar with parse, naming want in the error when set.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path, want string, parse func(string) (any, error)) {
	if n.Kind != yaml.ScalarNode {
		if want == "" {
			want = "a scalar"
		}
		d.fail(n, path, "want %s, got %s", want, describe(n))
		return
	}
	x, err := parse(n.Value)
	if err != nil {
		d.fail(n, path, "%v", err)
		return
	}
	v.Set(reflect.ValueOf(x).Convert(v.Type()))
	d.noteZero(v, path)
}

// number decodes ints, floats and booleans with YAML's own resolution.
func (d *decoder) number(n *yaml.Node, v reflect.Value, path string) {
	var want string
	var ok bool
	tag := n.ShortTag()
	switch v.Kind() {
	case reflect.Bool:
		want, ok = "true or false", tag == "!!bool"
	case reflect.Float64:
		want, ok = "a number", tag == "!!int" || tag == "!!float"
	case reflect.Uint64:
		want, ok = "a non-negative integer", tag == "!!int"
	default:
		want, ok = "an integer", tag == "!!int"
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want %s, got %s", want, describe(n))
		return
	}
	p := reflect.New(v.Type())
	if !ok || n.Decode(p.Interface()) != nil {
		d.fail(n, path, "want %s, got %s", want, describe(n))
		return
	}
	v.Set(p.Elem())
	d.noteZero(v, path)
}

func (d *decoder) noteZero(v reflect.Value, path string) {
	if v.IsZero() {
		d.zeros[path] = true
	}
}

// pair is one key and value of a mapping.
type pair struct{ key, value *yaml.Node }

// pairs returns the entries of a mapping with YAML merge keys ("<<: *base")
// expanded: explicit keys first, then merged keys not already present.
// Duplicate explicit keys are reported.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) []pair {
	var out, merged []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(val, path, depth+1)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "a key of %s is %s; keys are plain names", where(path), describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, join(path, k.Value), "duplicate key %q (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k, val})
	}
	for _, p := range merged {
		if p.key.Kind != yaml.ScalarNode {
			continue
		}
		if _, dup := seen[p.key.Value]; !dup {
			seen[p.key.Value] = p.key
			out = append(out, p)
		}
	}
	return out
}

// mergeSources returns the entries a merge key brings: one mapping or a
// list of them, earlier ones winning.
func (d *decoder) mergeSources(n *yaml.Node, path string, depth int) []pair {
	if d.nodes++; d.nodes > maxNodes || depth > maxDepth {
		if !d.over {
			d.over = true
			d.fail(n, path, tooBig)
		}
		return nil
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
		if depth++; depth > maxDepth {
			return nil
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		return d.pairs(n, path, depth)
	case yaml.SequenceNode:
		var out []pair
		for _, e := range n.Content {
			out = append(out, d.mergeSources(e, path, depth+1)...)
		}
		return out
	}
	d.fail(n, path, "a merge key (<<) takes a mapping or a list of mappings, got %s", describe(n))
	return nil
}

// structure decodes a mapping into a struct, rejecting unknown fields.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", describe(n))
		return
	}
	si := d.structInfo(v.Type())
	for _, p := range d.pairs(n, path, depth) {
		i, ok := si.index[p.key.Value]
		if !ok {
			d.failed = append(d.failed, join(path, p.key.Value))
			msg := fmt.Sprintf("unknown field %q in %s", p.key.Value, where(path))
			if s := suggest(p.key.Value, si.names); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
				// The field meant is as good as failed: do not also report
				// it missing, nor what depends on it.
				d.failed = append(d.failed, join(path, s))
			} else {
				msg += "; known fields: " + strings.Join(si.names, ", ")
			}
			d.errs.add(nodePos(p.key), join(path, p.key.Value), msg)
			continue
		}
		d.decode(p.value, v.Field(i), join(path, p.key.Value), depth+1)
	}
}

// mapping decodes a mapping into a map with string or int keys.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, depth int) {
	t := v.Type()
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", describe(n))
		return
	}
	m := reflect.MakeMap(t)
	for _, p := range d.pairs(n, path, depth) {
		var key reflect.Value
		var sub string
		switch t.Key().Kind() {
		case reflect.String:
			key, sub = reflect.ValueOf(p.key.Value).Convert(t.Key()), join(path, p.key.Value)
		case reflect.Int:
			i, err := strconv.Atoi(p.key.Value)
			if err != nil || p.key.ShortTag() != "!!int" {
				d.fail(p.key, path, "key %q is not an integer index", p.key.Value)
				continue
			}
			key, sub = reflect.ValueOf(i), fmt.Sprintf("%s[%d]", path, i)
		default:
			panic(fmt.Sprintf("spec: no YAML decoding for map key %s", t.Key()))
		}
		d.pos[sub] = nodePos(p.key)
		e := reflect.New(t.Elem()).Elem()
		d.decode(p.value, e, sub, depth+1)
		m.SetMapIndex(key, e)
	}
	v.Set(m)
}

// phases decodes the phases mapping, keeping file order.
func (d *decoder) phases(n *yaml.Node, v reflect.Value, path string, depth int) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping from phase name to {from, to}, got %s", describe(n))
		return
	}
	var ps Phases
	for _, p := range d.pairs(n, path, depth) {
		sub := join(path, p.key.Value)
		d.pos[sub] = nodePos(p.key)
		ph := Phase{Name: p.key.Value}
		d.decode(p.value, reflect.ValueOf(&ph).Elem(), sub, depth+1)
		ph.Name = p.key.Value
		ps = append(ps, ph)
	}
	v.Set(reflect.ValueOf(ps))
}

// join appends a field name to a path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// describe names what a node is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return strconv.Quote(v)
}

// resource keeps a Kubernetes object as YAML, for the API types to check
// (validate.go).
func (d *decoder) resource(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a Kubernetes object (a mapping with apiVersion, kind, metadata and spec), got %s", describe(n))
		return
	}
	out, err := yaml.Marshal(n)
	if err != nil {
		d.fail(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	v.Set(reflect.ValueOf(Resource{YAML: out, Line: n.Line}))
}
