package gatewayapi

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// Errors of the decoders name a field by its path; a person fixes a file
// by its lines. The functions here find a path's line in the document's
// YAML node tree (go.yaml.in/yaml/v3 keeps every node's line; the
// YAML-to-JSON step that the decoding goes through does not).

// lineOf is the line, within the document and from 1, of the deepest node
// that path p reaches in root: the field's key when it exists, else the
// key of its nearest parent that does. It is 0 when root is nil.
func lineOf(root *yamlv3.Node, p string) int {
	n := deref(root)
	if n == nil {
		return 0
	}
	line := n.Line
	for _, s := range splitPath(p) {
		next, l := step(n, s)
		if next == nil {
			break
		}
		n, line = next, l
	}
	return line
}

// deref skips document and alias nodes.
func deref(n *yamlv3.Node) *yamlv3.Node {
	for range 8 { // an alias of an alias: bounded, never a loop
		switch {
		case n == nil:
			return nil
		case n.Kind == yamlv3.DocumentNode && len(n.Content) == 1:
			n = n.Content[0]
		case n.Kind == yamlv3.AliasNode:
			n = n.Alias
		default:
			return n
		}
	}
	return n
}

// step follows one segment from n: the value under a key, or a list item.
// The line is the key's for a field, the item's for a list index.
func step(n *yamlv3.Node, s segment) (*yamlv3.Node, int) {
	n = deref(n)
	if n == nil {
		return nil, 0
	}
	switch {
	case s.isIndex:
		if n.Kind == yamlv3.SequenceNode && s.index >= 0 && s.index < len(n.Content) {
			c := n.Content[s.index]
			return c, c.Line
		}
	case n.Kind == yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Value == s.name {
				return n.Content[i+1], k.Line
			}
		}
	}
	return nil, 0
}

// jsonKind is the JSON kind YAML node n converts to: string, number,
// bool, null, array or object.
func jsonKind(n *yamlv3.Node) string {
	n = deref(n)
	if n == nil {
		return ""
	}
	switch n.Kind {
	case yamlv3.SequenceNode:
		return "array"
	case yamlv3.MappingNode:
		return "object"
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		return "number"
	case "!!bool":
		return "bool"
	case "!!null":
		return "null"
	}
	if n.Style == 0 && yaml11Bools[n.Value] {
		return "bool" // a string to YAML 1.2, true or false to the decoder
	}
	return "string"
}

// yaml11Bools are the plain scalars YAML 1.1 reads as true or false and
// YAML 1.2 as strings: the decoding (go.yaml.in/yaml/v2) follows 1.1, the
// node tree (go.yaml.in/yaml/v3) 1.2.
var yaml11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true,
	"n": true, "N": true, "no": true, "No": true, "NO": true,
	"on": true, "On": true, "ON": true, "off": true, "Off": true, "OFF": true,
}

// locateTypeError finds the value a decoder type error is about. The
// decoder names the field without list indexes (spec.rules.retry.attempts)
// and with the Go names of the structs it embeds
// (spec.CommonRouteSpec.parentRefs.port): the search tries every list item,
// skips a capitalized name that is not a key (JSON names in the Kubernetes
// API begin in lower case) and takes the first value of the JSON kind the
// decoder read, which is the first the decoder met. It returns the value's
// full path and line, or the document root's line and an empty path when
// nothing fits.
func locateTypeError(root *yamlv3.Node, field, kind string) (string, int) {
	var names []string
	if field != "" {
		names = strings.Split(field, ".")
	}
	budget := 1 << 20 // node visits, more than a stream's bytes allow
	if p, line, ok := search(root, names, "", kind, &budget, 0); ok {
		return p, line
	}
	return "", lineOf(root, "")
}

// search walks the tree without following aliases: a value reached
// through one is not where the error is written, and aliases could make
// the walk as long as the expanded document.
func search(n *yamlv3.Node, names []string, p, kind string, budget *int, depth int) (string, int, bool) {
	if n != nil && n.Kind == yamlv3.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	*budget--
	if n == nil || n.Kind == yamlv3.AliasNode || *budget < 0 || depth > 64 {
		return "", 0, false
	}
	if len(names) == 0 {
		if jsonKind(n) == kind {
			return p, n.Line, true
		}
		// The field is a map or a list and the value is one of its
		// items (annotations: {a: 1}).
		switch n.Kind {
		case yamlv3.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if jsonKind(n.Content[i+1]) == kind {
					return key(p, n.Content[i].Value), n.Content[i].Line, true
				}
			}
		case yamlv3.SequenceNode:
			for i, c := range n.Content {
				if jsonKind(c) == kind {
					return index(p, i), c.Line, true
				}
			}
		}
		return "", 0, false
	}
	switch n.Kind {
	case yamlv3.SequenceNode:
		for i, c := range n.Content {
			if q, line, ok := search(c, names, index(p, i), kind, budget, depth+1); ok {
				return q, line, true
			}
		}
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == names[0] {
				q, line, ok := search(n.Content[i+1], names[1:], child(p, names[0]), kind, budget, depth+1)
				if ok && len(names) == 1 && kind != "array" && kind != "object" {
					line = n.Content[i].Line
				}
				return q, line, ok
			}
		}
		if c := names[0]; c != "" && 'A' <= c[0] && c[0] <= 'Z' {
			return search(n, names[1:], p, kind, budget, depth+1)
		}
	}
	return "", 0, false
}

// typeError reads a decoder's *UnmarshalTypeError: the JSON value it read
// ("string", "number 1.5"), the field path and the Go type it wanted.
// sigs.k8s.io/json returns its internal copy of encoding/json's type,
// which cannot be named outside that module, so its fields are read by
// name; the standard library's own type is taken as it is.
func typeError(err error) (value, field string, typ reflect.Type, ok bool) {
	for ; err != nil; err = errors.Unwrap(err) {
		v := reflect.ValueOf(err)
		if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct && v.Elem().Type().Name() == "UnmarshalTypeError" {
			s := v.Elem()
			fv, ff, ft := s.FieldByName("Value"), s.FieldByName("Field"), s.FieldByName("Type")
			if fv.Kind() == reflect.String && ff.Kind() == reflect.String && ft.IsValid() && ft.CanInterface() {
				t, _ := ft.Interface().(reflect.Type)
				return fv.String(), ff.String(), t, true
			}
		}
	}
	return "", "", nil, false
}

// describeType says in words what JSON a Go type takes.
func describeType(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

// describeValue says in words what JSON value a type error read.
func describeValue(v string) string {
	kind, rest, _ := strings.Cut(v, " ")
	switch kind {
	case "string":
		return "a string"
	case "number":
		if rest != "" {
			return "the number " + rest
		}
		return "a number"
	case "bool":
		return "true or false"
	case "array":
		return "a list"
	case "object":
		return "a mapping"
	}
	return v
}

// knownFields lists the JSON field names of the struct that path p (with
// its last segment, the unknown one, dropped) leads to in t, for an
// "unknown field" message. It is empty when the path leaves the structs.
func knownFields(t reflect.Type, p string) []string {
	segs := splitPath(p)
	if len(segs) == 0 {
		return nil
	}
	for _, s := range segs[:len(segs)-1] {
		t = indirect(t)
		switch {
		case s.isIndex || s.isKey:
			if t.Kind() != reflect.Slice && t.Kind() != reflect.Map {
				return nil
			}
			t = t.Elem()
		case t.Kind() == reflect.Struct:
			f, ok := jsonField(t, s.name)
			if !ok {
				return nil
			}
			t = f.Type
		default:
			return nil
		}
	}
	t = indirect(t)
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	collectFields(t, &names)
	sort.Strings(names)
	return names
}

func indirect(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// jsonName is a struct field's JSON name; inline is true for a field whose
// fields encoding/json promotes (embedded, no name of its own).
func jsonName(f reflect.StructField) (name string, inline, skip bool) {
	tag := f.Tag.Get("json")
	if tag == "-" || !f.IsExported() && !f.Anonymous {
		return "", false, true
	}
	name, _, _ = strings.Cut(tag, ",")
	if name == "" && f.Anonymous && indirect(f.Type).Kind() == reflect.Struct {
		return "", true, false
	}
	if name == "" {
		name = f.Name
	}
	return name, false, false
}

func jsonField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		n, inline, skip := jsonName(f)
		switch {
		case skip:
		case inline:
			if g, ok := jsonField(indirect(f.Type), name); ok {
				return g, true
			}
		case n == name:
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func collectFields(t reflect.Type, names *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		n, inline, skip := jsonName(f)
		switch {
		case skip:
		case inline:
			collectFields(indirect(f.Type), names)
		default:
			*names = append(*names, n)
		}
	}
}

// yamlLine matches the line go.yaml.in/yaml/v2 puts in its messages.
var yamlLine = regexp.MustCompile(`line (\d+):?\s*`)

// yamlError splits a YAML parser error into the line it names (within the
// document, 0 when none) and its message without the "yaml:" prefix and
// line. Of several errors (duplicate keys) it keeps the first and counts
// the others.
func yamlError(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:")
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return 0, "not valid YAML"
	}
	msg = lines[0]
	line := 0
	if m := yamlLine.FindStringSubmatchIndex(msg); m != nil {
		line, _ = strconv.Atoi(msg[m[2]:m[3]])
		msg = msg[:m[0]] + msg[m[1]:]
	}
	if len(lines) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(lines)-1)
	}
	return line, msg
}
