package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse decodes one scenario file strictly and returns it normalized and
// validated. filename only labels errors (and gives the default name).
//
// Every problem is reported, not just the first: the error is an Errors,
// one line per problem, each "file:line:col: path: what is wrong", e.g.
//
//	failover.yaml:14:7: unknown field "replcias" in topology.services[0]; did you mean "replicas"?
//
// Unknown fields, duplicate keys, values of the wrong type and semantic
// mistakes (a fault on a pod that does not exist, a phase after the end of
// the run…) are all errors. When the file has a quick section, its --quick
// form is validated too.
func Parse(filename string, data []byte, opts ...Option) (*Scenario, error) {
	o := newOptions(opts)
	errs := &errorList{file: filename}
	root, err := parseYAML(data)
	if err != nil {
		errs.add(syntaxPos(err), "", err.Error())
		return nil, errs.err()
	}
	if root == nil {
		errs.add(pos{}, "", "empty file: a scenario needs at least a topology and a load")
		return nil, errs.err()
	}
	var s Scenario
	d := newDecoder(errs)
	d.decode(root, reflect.ValueOf(&s).Elem(), "", 0)
	if d.over || slices.Contains(d.failed, "") {
		// Nothing sensible to check: the document is not a scenario.
		return nil, errs.err()
	}
	if s.Name == "" && !d.present("name") {
		if n := baseName(filename); dnsLabel.MatchString(n) {
			s.Name = n
		}
	}
	validate(&s, o, errs, d)
	if err := errs.err(); err != nil {
		return nil, err
	}
	s.Normalize()
	return &s, nil
}

// present reports whether the file wrote path.
func (d *decoder) present(path string) bool {
	_, ok := d.pos[path]
	return ok
}

// parseYAML reads exactly one YAML document into a node; nil for an empty
// input. The YAML library has panicked on malformed input in the past
// (CVE-2022-28948), so a panic inside it becomes an error rather than a
// crash of the caller.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("invalid YAML: the parser failed (%v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(err)
	default:
		return nil, &syntaxError{line: next.Line, msg: "a second YAML document (after ---); a scenario file holds exactly one"}
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return &doc, nil
}

// syntaxError is a YAML parse error with the line the parser gave, if any.
type syntaxError struct {
	line int
	msg  string
}

func (e *syntaxError) Error() string { return e.msg }

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError turns "yaml: line 3: did not find expected key" into a
// syntaxError at line 3.
func yamlError(err error) error {
	msg := err.Error()
	e := &syntaxError{}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	e.msg = "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")
	return e
}

func syntaxPos(err error) pos {
	var se *syntaxError
	if errors.As(err, &se) {
		return pos{line: se.line}
	}
	return pos{}
}

// baseName is the file name without directory and extension.
func baseName(filename string) string {
	b := filepath.Base(filename)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

// Load reads the scenario called name from fsys: the file name+".yaml" at
// the root of fsys (name may also be given with its .yaml extension). The
// scenario must be called as its file. An unknown name is an error that
// lists the scenarios fsys holds.
func Load(fsys fs.FS, name string, opts ...Option) (*Scenario, error) {
	file := name
	if path.Ext(file) != ".yaml" {
		file += ".yaml"
	}
	if !fs.ValidPath(file) || strings.Contains(file, "/") {
		return nil, fmt.Errorf("scenario name %q: want a name such as %q, not a path", name, "failover")
	}
	data, err := fs.ReadFile(fsys, file)
	if errors.Is(err, fs.ErrNotExist) {
		names, lerr := Names(fsys)
		if lerr != nil {
			return nil, fmt.Errorf("unknown scenario %q (and listing the catalogue failed: %w)", name, lerr)
		}
		return nil, fmt.Errorf("unknown scenario %q; known scenarios: %s%s", name,
			strings.Join(names, ", "), didYouMean(baseName(file), names))
	}
	if err != nil {
		return nil, fmt.Errorf("read scenario %q: %w", name, err)
	}
	return Parse(file, data, append(slices.Clip(opts), func(o *options) { o.wantName = baseName(file) })...)
}

// Names returns the names of the scenarios at the root of fsys (the *.yaml
// files without their extension), sorted.
func Names(fsys fs.FS) ([]string, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && path.Ext(e.Name()) == ".yaml" {
			out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
		}
	}
	slices.Sort(out)
	return out, nil
}
