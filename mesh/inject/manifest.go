package inject

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/skiff-mesh/skiff/internal/yamlstream"
)

// Bounds on a manifest stream: Manifests refuses more, saying which.
const (
	// MaxManifestBytes is the largest stream Manifests reads.
	MaxManifestBytes = 16 << 20
	// MaxDocuments is the most documents (and List items) a stream may
	// hold.
	MaxDocuments = 2000
	// maxListDepth is how deep Lists may nest in Lists.
	maxListDepth = 3
)

// templatePaths are where each workload kind keeps its pod template; the
// Pod is its own.
var templatePaths = map[[2]string][]string{
	{"v1", "Pod"}:                   nil,
	{"v1", "ReplicationController"}: {"spec", "template"},
	{"apps/v1", "Deployment"}:       {"spec", "template"},
	{"apps/v1", "StatefulSet"}:      {"spec", "template"},
	{"apps/v1", "DaemonSet"}:        {"spec", "template"},
	{"apps/v1", "ReplicaSet"}:       {"spec", "template"},
	{"batch/v1", "Job"}:             {"spec", "template"},
	{"batch/v1", "CronJob"}:         {"spec", "jobTemplate", "spec", "template"},
}

// Report says what Manifests did to one object with a pod template.
type Report struct {
	// Document is the object's document, from 1, among the stream's
	// documents that are not blank.
	Document int
	// Object names it: "Deployment shop/web", with "item N of" before
	// for a List's item.
	Object string
	// Changed is true when its pod template was changed.
	Changed bool
	// Skipped says why it was left alone ("" when changed, or already
	// as asked).
	Skipped string
}

func (r Report) String() string {
	switch {
	case r.Skipped != "":
		return fmt.Sprintf("document %d (%s): left alone: %s", r.Document, r.Object, r.Skipped)
	case r.Changed:
		return fmt.Sprintf("document %d (%s): changed", r.Document, r.Object)
	}
	return fmt.Sprintf("document %d (%s): unchanged", r.Document, r.Object)
}

// Transform changes one pod: Config.Inject in some Mode, or Uninject.
type Transform func(Pod) (Result, error)

// Manifests reads a stream of Kubernetes objects, YAML documents or JSON
// values, and writes it with every pod template changed by f: the
// templates of Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets,
// ReplicationControllers, Jobs and CronJobs, alone or in Lists. Every
// other document, and every document f leaves alone, is written as it
// was read, byte for byte; a changed YAML document keeps its comments and
// the order of its keys, a changed JSON one is written indented with its
// keys sorted. Errors name the document and the object.
func Manifests(r io.Reader, w io.Writer, f Transform) ([]Report, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxManifestBytes {
		return nil, fmt.Errorf("the input is larger than %d MiB: split it", MaxManifestBytes>>20)
	}
	t := transformer{f: f}
	var out bytes.Buffer
	if isJSON(data) {
		err = t.json(data, &out)
	} else {
		err = t.yaml(data, &out)
	}
	if err != nil {
		return t.reports, err
	}
	_, err = w.Write(out.Bytes())
	return t.reports, err
}

func isJSON(data []byte) bool {
	d := bytes.TrimLeft(data, " \t\r\n")
	return len(d) > 0 && d[0] == '{'
}

type transformer struct {
	f       Transform
	reports []Report
	doc     int // the current document, from 1
	objects int // documents and List items seen
}

// yaml transforms a YAML stream, cut at its separator lines as kubectl
// cuts it: a line that begins with "---" and holds nothing more but
// spaces or a comment. Each separator line is written as it was.
func (t *transformer) yaml(data []byte, out *bytes.Buffer) error {
	start := 0
	flush := func(end int) error {
		chunk := data[start:end]
		if yamlstream.Blank(chunk) {
			out.Write(chunk)
			return nil
		}
		t.doc++
		res, err := t.yamlDocument(chunk)
		if err != nil {
			return err
		}
		out.Write(res)
		return nil
	}
	for off := 0; off < len(data); {
		next := len(data)
		if i := bytes.IndexByte(data[off:], '\n'); i >= 0 {
			next = off + i + 1
		}
		if yamlstream.Separator(data[off:next]) {
			if err := flush(off); err != nil {
				return err
			}
			out.Write(data[off:next])
			start = next
		}
		off = next
	}
	return flush(len(data))
}

func (t *transformer) yamlDocument(chunk []byte) ([]byte, error) {
	var root yamlv3.Node
	dec := yamlv3.NewDecoder(bytes.NewReader(chunk))
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("document %d: %w", t.doc, err)
	}
	var extra yamlv3.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("document %d: a second YAML document is inside it: separate documents with a line holding only ---", t.doc)
	}
	if root.Kind != yamlv3.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yamlv3.MappingNode {
		return nil, fmt.Errorf("document %d: not a Kubernetes object: want a mapping with apiVersion and kind", t.doc)
	}
	changed, err := t.object(root.Content[0], "", 0)
	if err != nil || !changed {
		return chunk, err
	}
	var b bytes.Buffer
	enc := yamlv3.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, fmt.Errorf("document %d: %w", t.doc, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("document %d: %w", t.doc, err)
	}
	return b.Bytes(), nil
}

// json transforms a stream of JSON values, each an object.
func (t *transformer) json(data []byte, out *bytes.Buffer) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return nil
		}
		t.doc++
		if err != nil {
			return fmt.Errorf("document %d: %w", t.doc, err)
		}
		y, err := yaml.JSONToYAML(raw)
		if err != nil {
			return fmt.Errorf("document %d: %w", t.doc, err)
		}
		var root yamlv3.Node
		if err := yamlv3.Unmarshal(y, &root); err != nil {
			return fmt.Errorf("document %d: %w", t.doc, err)
		}
		if len(root.Content) != 1 || root.Content[0].Kind != yamlv3.MappingNode {
			return fmt.Errorf("document %d: not a Kubernetes object: want an object with apiVersion and kind", t.doc)
		}
		changed, err := t.object(root.Content[0], "", 0)
		if err != nil {
			return err
		}
		if !changed {
			out.Write(raw)
			out.WriteByte('\n')
			continue
		}
		y, err = yamlv3.Marshal(&root)
		if err != nil {
			return fmt.Errorf("document %d: %w", t.doc, err)
		}
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			return fmt.Errorf("document %d: %w", t.doc, err)
		}
		if err := json.Indent(out, j, "", "  "); err != nil {
			return fmt.Errorf("document %d: %w", t.doc, err)
		}
		out.WriteByte('\n')
	}
}

// object transforms one object (a List's items in turn), reporting
// whether it changed. where names the List item it is, "" for a document.
func (t *transformer) object(n *yamlv3.Node, where string, depth int) (bool, error) {
	t.objects++
	if t.objects > MaxDocuments {
		return false, fmt.Errorf("document %d: more than %d objects: split the input", t.doc, MaxDocuments)
	}
	apiVersion, kind := scalar(n, "apiVersion"), scalar(n, "kind")
	name := kind
	if meta := child(n, "metadata"); meta != nil {
		ref := scalar(meta, "name")
		if ns := scalar(meta, "namespace"); ns != "" {
			ref = ns + "/" + ref
		}
		name = strings.TrimSpace(kind + " " + ref)
	}
	name = where + cmp.Or(name, "an object without kind")
	if items := child(n, "items"); strings.HasSuffix(kind, "List") && items != nil && items.Kind == yamlv3.SequenceNode {
		if depth == maxListDepth {
			return false, fmt.Errorf("document %d (%s): Lists nested more than %d deep", t.doc, name, maxListDepth)
		}
		changed := false
		for i, item := range items.Content {
			if item.Kind != yamlv3.MappingNode {
				return false, fmt.Errorf("document %d (%s): item %d is not an object", t.doc, name, i+1)
			}
			c, err := t.object(item, fmt.Sprintf("%sitem %d of %s: ", where, i+1, kind), depth+1)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
		return changed, nil
	}
	path, ok := templatePaths[[2]string{apiVersion, kind}]
	if !ok {
		return false, nil
	}
	tmpl := n
	for _, k := range path {
		if tmpl = child(tmpl, k); tmpl == nil || tmpl.Kind != yamlv3.MappingNode {
			return false, fmt.Errorf("document %d (%s): no %s: a %s needs its pod template there", t.doc, name, strings.Join(path, "."), kind)
		}
	}
	fail := func(err error) (bool, error) { return false, fmt.Errorf("document %d (%s): %w", t.doc, name, err) }
	if s := child(tmpl, "spec"); s == nil || s.Kind != yamlv3.MappingNode {
		return fail(errors.New("no spec: a pod needs its containers"))
	}
	var pod struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     corev1.PodSpec    `json:"spec"`
	}
	y, err := yamlv3.Marshal(tmpl)
	if err != nil {
		return fail(err)
	}
	if err := yaml.Unmarshal(y, &pod); err != nil {
		return fail(fmt.Errorf("its pod template: %w", err))
	}
	ns := ""
	if meta := child(n, "metadata"); meta != nil {
		ns = scalar(meta, "namespace")
	}
	res, err := t.f(Pod{Namespace: ns, Meta: pod.Metadata, Spec: pod.Spec})
	if err != nil {
		return fail(err)
	}
	t.reports = append(t.reports, Report{Document: t.doc, Object: name, Changed: res.Changed(), Skipped: res.Skipped})
	for _, op := range res.Patch {
		if err := applyNode(tmpl, op); err != nil {
			return fail(fmt.Errorf("patch %s %s: %w", op.Op, op.Path, err))
		}
	}
	return res.Changed(), nil
}

// child is the value of key in mapping n, or nil.
func child(n *yamlv3.Node, key string) *yamlv3.Node {
	if n == nil || n.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// scalar is the value of key in mapping n when it is a scalar, or "".
func scalar(n *yamlv3.Node, key string) string {
	if c := child(n, key); c != nil && c.Kind == yamlv3.ScalarNode {
		return c.Value
	}
	return ""
}

// applyNode applies an add or remove operation to the YAML tree root.
func applyNode(root *yamlv3.Node, op Operation) error {
	if !strings.HasPrefix(op.Path, "/") {
		return errors.New("a path starts with /")
	}
	tokens := strings.Split(op.Path[1:], "/")
	for i := range tokens {
		tokens[i] = unescape(tokens[i])
	}
	parent := root
	for _, tok := range tokens[:len(tokens)-1] {
		var err error
		if parent, err = step(parent, tok); err != nil {
			return err
		}
	}
	last := tokens[len(tokens)-1]
	switch op.Op {
	case "add":
		v, err := valueNode(op.Value)
		if err != nil {
			return err
		}
		switch parent.Kind {
		case yamlv3.MappingNode:
			for i := 0; i+1 < len(parent.Content); i += 2 {
				if parent.Content[i].Value == last {
					parent.Content[i+1] = v
					return nil
				}
			}
			parent.Content = append(parent.Content, &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!str", Value: last}, v)
			return nil
		case yamlv3.SequenceNode:
			i := len(parent.Content)
			if last != "-" {
				if i, err = index(last, len(parent.Content)+1); err != nil {
					return err
				}
			}
			parent.Content = append(parent.Content[:i], append([]*yamlv3.Node{v}, parent.Content[i:]...)...)
			return nil
		}
	case "remove":
		switch parent.Kind {
		case yamlv3.MappingNode:
			for i := 0; i+1 < len(parent.Content); i += 2 {
				if parent.Content[i].Value == last {
					parent.Content = append(parent.Content[:i], parent.Content[i+2:]...)
					return nil
				}
			}
			return fmt.Errorf("no key %q", last)
		case yamlv3.SequenceNode:
			i, err := index(last, len(parent.Content))
			if err != nil {
				return err
			}
			parent.Content = append(parent.Content[:i], parent.Content[i+1:]...)
			return nil
		}
	default:
		return fmt.Errorf("operation %q: only add and remove", op.Op)
	}
	return errors.New("the parent is neither a mapping nor a list")
}

func step(n *yamlv3.Node, tok string) (*yamlv3.Node, error) {
	switch n.Kind {
	case yamlv3.MappingNode:
		if c := child(n, tok); c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("no key %q", tok)
	case yamlv3.SequenceNode:
		i, err := index(tok, len(n.Content))
		if err != nil {
			return nil, err
		}
		return n.Content[i], nil
	}
	return nil, fmt.Errorf("%q: not in a mapping or a list", tok)
}

func index(tok string, n int) (int, error) {
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 || i >= n {
		return 0, fmt.Errorf("index %q out of range (%d items)", tok, n)
	}
	return i, nil
}

// valueNode is v as a YAML tree in block style, its keys in the order
// encoding/json writes them (a container's name first).
func valueNode(v any) (*yamlv3.Node, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(j, &doc); err != nil {
		return nil, err
	}
	blockStyle(doc.Content[0])
	return doc.Content[0], nil
}

// blockStyle drops the flow style and quotes JSON gave n: the encoder
// quotes a string again where it would read as another type.
func blockStyle(n *yamlv3.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}
