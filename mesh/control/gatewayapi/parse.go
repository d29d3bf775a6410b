package gatewayapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayxv1alpha1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/skiff-mesh/skiff/internal/yamlstream"
)

// Bounds of a stream Parse reads.
const (
	// MaxStreamBytes bounds a stream.
	MaxStreamBytes = 1 << 20
	// MaxDocuments bounds the documents of a stream that are not blank.
	MaxDocuments = 1000
)

// Resources are the objects of a stream, by kind, in the order the stream
// holds them. The zero value holds none. Routes reads them; a controller
// may also fill one from its informers.
type Resources struct {
	// HTTPRoutes are gateway.networking.k8s.io/v1 HTTPRoutes.
	HTTPRoutes []gatewayv1.HTTPRoute
	// GRPCRoutes are gateway.networking.k8s.io/v1 GRPCRoutes.
	GRPCRoutes []gatewayv1.GRPCRoute
	// BackendTrafficPolicies are gateway.networking.x-k8s.io/v1alpha1
	// XBackendTrafficPolicies.
	BackendTrafficPolicies []gatewayxv1alpha1.XBackendTrafficPolicy
	// CircuitBreakers are policy.skiff.dev/v1alpha1 CircuitBreakers.
	CircuitBreakers []CircuitBreaker

	// source and origins say where Parse found each object, for the
	// errors of Routes; nil for objects from elsewhere.
	source  string
	origins map[objectRef]origin
}

// origin is where an object is in its stream: its document's number and
// first line, and its text, read again to place an error of Routes on the
// field's own line.
type origin struct {
	document, line int
	data           []byte
}

// lineOf is the stream's line of field path p in the object, or of the
// document's start when the field cannot be found.
func (o origin) lineOf(p string) int {
	var root yamlv3.Node
	if p == "" || yamlv3.Unmarshal(o.data, &root) != nil {
		return o.line
	}
	if l := lineOf(&root, p); l > 0 {
		return o.line + l - 1
	}
	return o.line
}

// apiKind is an apiVersion and kind Parse reads.
type apiKind struct{ apiVersion, kind string }

var (
	httpRouteKind      = apiKind{gatewayv1.GroupVersion.String(), kindHTTPRoute}
	grpcRouteKind      = apiKind{gatewayv1.GroupVersion.String(), kindGRPCRoute}
	backendPolicyKind  = apiKind{gatewayxv1alpha1.GroupVersion.String(), kindBackendPolicy}
	circuitBreakerKind = apiKind{PolicyGroup + "/" + PolicyVersion, CircuitBreakerKind}
)

func supportedKinds() string {
	var s []string
	for _, k := range []apiKind{httpRouteKind, grpcRouteKind, backendPolicyKind, circuitBreakerKind} {
		s = append(s, k.apiVersion+" "+k.kind)
	}
	return strings.Join(s, ", ")
}

// Parse decodes a stream of YAML documents separated by "---" lines, as
// kubectl apply takes them; name names the stream (a file name) in
// errors. It reads HTTPRoute and GRPCRoute (gateway.networking.k8s.io/v1),
// XBackendTrafficPolicy (gateway.networking.x-k8s.io/v1alpha1) and
// CircuitBreaker (policy.skiff.dev/v1alpha1); blank documents are skipped
// and any other kind is an error.
//
// Each document is decoded strictly into the Gateway API's own Go types:
// an unknown or repeated field, a value of the wrong type, or one the
// CRDs' schema and rules would refuse is an error. An object without a
// namespace is in "default". Errors are *Error values, joined; each names
// the document (its number in the stream and its kind, namespace and name
// when known), the field and its line.
func Parse(name string, data []byte) (*Resources, error) {
	if len(data) > MaxStreamBytes {
		return nil, &Error{Source: name, Message: fmt.Sprintf("%d bytes: a stream may hold at most %d (1 MiB)", len(data), MaxStreamBytes)}
	}
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, &Error{Source: name, Message: err.Error()}
	}
	res := &Resources{source: name, origins: make(map[objectRef]origin)}
	var errs []error
	for _, doc := range docs {
		errs = append(errs, res.decode(name, doc)...)
	}
	if len(errs) > 0 {
		return nil, join(errs)
	}
	return res, nil
}

// document is one YAML document of a stream.
type document struct {
	number int    // its number among the stream's documents that are not blank, from 1
	line   int    // the stream's line its first byte is on, from 1
	data   []byte // the document, without its "---" line
}

// splitDocuments cuts a stream at its separator lines, as kubectl's
// reader does: a line that begins with "---" and has nothing after it but
// spaces or a comment. Documents holding only blank lines and comments
// are dropped.
func splitDocuments(data []byte) ([]document, error) {
	var docs []document
	start, startLine, line := 0, 1, 1
	flush := func(end int) error {
		if d := data[start:end]; !yamlstream.Blank(d) {
			if len(docs) == MaxDocuments {
				return fmt.Errorf("more than %d documents: a stream may hold at most %d", MaxDocuments, MaxDocuments)
			}
			docs = append(docs, document{number: len(docs) + 1, line: startLine, data: d})
		}
		return nil
	}
	for off := 0; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		if yamlstream.Separator(data[off:next]) {
			if err := flush(off); err != nil {
				return nil, err
			}
			start, startLine = next, line+1
		}
		off = next
	}
	if err := flush(len(data)); err != nil {
		return nil, err
	}
	return docs, nil
}

// head is what a document says about itself, read leniently so that an
// error in the rest can still name the object.
type head struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
}

// headOf reads the head of JSON document j, leniently: the strict
// decoding reports what is wrong with it.
func headOf(j []byte) head {
	var h head
	_ = json.Unmarshal(j, &h)
	return h
}

// String names the object when the head says enough: "HTTPRoute
// default/echo".
func (h head) String() string {
	if h.Kind == "" || h.Metadata.Name == "" {
		return ""
	}
	return objectRef{kind: truncate(h.Kind), namespace: truncate(cmp.Or(h.Metadata.Namespace, "default")), name: truncate(h.Metadata.Name)}.String()
}

// decoding is the document being decoded, for its errors.
type decoding struct {
	source string
	doc    document
	root   *yamlv3.Node // nil when go.yaml.in/yaml/v3 could not read it
	object string
}

// errAt is an error at path p (empty: the document itself).
func (d *decoding) errAt(p, format string, args ...any) *Error {
	line := d.doc.line
	if l := lineOf(d.root, p); l > 0 {
		line = d.doc.line + l - 1
	}
	return &Error{Source: d.source, Document: d.doc.number, Object: d.object, Line: line, Field: p, Message: fmt.Sprintf(format, args...)}
}

// errNear is an error about the document placed at the line of path p,
// naming no field.
func (d *decoding) errNear(p, format string, args ...any) *Error {
	e := d.errAt(p, format, args...)
	e.Field = ""
	return e
}

func (d *decoding) fieldErrors(fes []fieldError) []error {
	errs := make([]error, 0, len(fes))
	for _, fe := range fes {
		errs = append(errs, d.errAt(fe.path, "%s", fe.msg))
	}
	return errs
}

// decode reads one document into res, returning its errors.
func (res *Resources) decode(source string, doc document) []error {
	d := &decoding{source: source, doc: doc}
	j, err := yaml.YAMLToJSONStrict(doc.data)
	if err != nil {
		l, msg := yamlError(err)
		line := doc.line
		if l > 0 {
			line += l - 1
		}
		// A repeated key fails only the strict conversion: the lenient
		// one may still tell which object this is.
		if lenient, err := yaml.YAMLToJSON(doc.data); err == nil {
			d.object = headOf(lenient).String()
		}
		return []error{&Error{Source: source, Document: doc.number, Object: d.object, Line: line, Message: msg}}
	}
	// go.yaml.in/yaml/v3 keeps the lines of the nodes, for errors, and
	// sees a second document hidden behind a "--- value" line that the
	// YAML-to-JSON step silently drops.
	var root yamlv3.Node
	dec := yamlv3.NewDecoder(bytes.NewReader(doc.data))
	if dec.Decode(&root) == nil {
		d.root = &root
		var extra yamlv3.Node
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			line := doc.line
			if err == nil {
				line += extra.Line - 1
			}
			return []error{&Error{Source: source, Document: doc.number, Line: line,
				Message: "a second YAML document starts here: separate documents with a line holding only ---"}}
		}
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil // a document of "~" or "null": nothing to apply
	}
	if len(j) == 0 || j[0] != '{' {
		return []error{d.errAt("", "a document must be a mapping with apiVersion, kind, metadata and spec")}
	}
	h := headOf(j)
	d.object = h.String()
	if h.APIVersion == "" || h.Kind == "" {
		return []error{d.errNear("apiVersion", "apiVersion and kind are required; supported: %s", supportedKinds())}
	}
	var (
		obj      any
		meta     *metav1.ObjectMeta
		validate func() []fieldError
		add      func()
	)
	switch (apiKind{h.APIVersion, h.Kind}) {
	case httpRouteKind:
		var r gatewayv1.HTTPRoute
		obj, meta = &r, &r.ObjectMeta
		validate = func() []fieldError { return validateHTTPRoute(&r) }
		add = func() { res.HTTPRoutes = append(res.HTTPRoutes, r) }
	case grpcRouteKind:
		var r gatewayv1.GRPCRoute
		obj, meta = &r, &r.ObjectMeta
		validate = func() []fieldError { return validateGRPCRoute(&r) }
		add = func() { res.GRPCRoutes = append(res.GRPCRoutes, r) }
	case backendPolicyKind:
		var p gatewayxv1alpha1.XBackendTrafficPolicy
		obj, meta = &p, &p.ObjectMeta
		validate = func() []fieldError { return validateBackendPolicy(&p) }
		add = func() { res.BackendTrafficPolicies = append(res.BackendTrafficPolicies, p) }
	case circuitBreakerKind:
		var c CircuitBreaker
		obj, meta = &c, &c.ObjectMeta
		validate = func() []fieldError { return validateCircuitBreaker(&c) }
		add = func() { res.CircuitBreakers = append(res.CircuitBreakers, c) }
	default:
		return []error{d.errNear("kind", "apiVersion %q kind %q is not supported; supported: %s", truncate(h.APIVersion), truncate(h.Kind), supportedKinds())}
	}
	if errs := d.strict(j, obj); len(errs) > 0 {
		return errs
	}
	if meta.Namespace == "" {
		meta.Namespace = "default"
	}
	ref := refOf(h.Kind, meta)
	d.object = ref.String()
	if errs := validate(); len(errs) > 0 {
		return d.fieldErrors(errs)
	}
	if prev, dup := res.origins[ref]; dup {
		return []error{d.errAt("metadata.name", "%s is already defined by document %d (line %d)", ref, prev.document, prev.line)}
	}
	res.origins[ref] = origin{document: doc.number, line: doc.line, data: bytes.Clone(doc.data)}
	add()
	return nil
}

// strict decodes JSON j into obj as the API server does: field names are
// case-sensitive and unknown or repeated fields are errors.
func (d *decoding) strict(j []byte, obj any) []error {
	strictErrs, err := kjson.UnmarshalStrict(j, obj)
	if err != nil {
		if value, field, typ, ok := typeError(err); ok {
			p, line := locateTypeError(d.root, field, strings.Fields(value)[0])
			e := d.errAt(p, "want %s, not %s", describeType(typ), describeValue(value))
			if value == "bool" && describeType(typ) == "a string" {
				// YAML 1.1, which the decoding follows, reads y, yes, on,
				// n, no and off as true or false.
				e.Message += ` (YAML reads yes, no, on, off, y and n as true or false: quote the value)`
			}
			if line > 0 {
				e.Line = d.doc.line + line - 1
			}
			if p == "" {
				e.Field = field
			}
			return []error{e}
		}
		// A value a type of its own refuses, such as a creationTimestamp
		// that is not a time: the decoder does not say where.
		return []error{d.errAt("", "%v", err)}
	}
	var errs []error
	for _, se := range strictErrs {
		var fe kjson.FieldError
		if !errors.As(se, &fe) {
			errs = append(errs, d.errAt("", "%v", se))
			continue
		}
		p := fe.FieldPath()
		switch {
		case strings.HasPrefix(se.Error(), "unknown field"):
			msg := "unknown field"
			if known := knownFields(reflect.TypeOf(obj).Elem(), p); len(known) > 0 {
				msg += "; the fields here are " + strings.Join(known, ", ")
			}
			errs = append(errs, d.errAt(p, "%s", msg))
		case strings.HasPrefix(se.Error(), "duplicate field"):
			errs = append(errs, d.errAt(p, "the field is given twice"))
		default:
			errs = append(errs, d.errAt(p, "%v", se))
		}
	}
	return errs
}
