package gatewayapi

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// preamble is a valid document that comes before each error case, so that
// the cases check that document numbers and lines count what precedes
// them.
const preamble = `# A valid route first.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: first}
spec:
  parentRefs: [{group: "", kind: Service, name: first, port: 80}]
---
`

// marker ends the line an error is expected on.
const marker = "#<"

// markedLine is the line of s that holds marker, from 1; 0 when none does.
func markedLine(s string) int {
	for i, l := range strings.Split(s, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	return 0
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		doc    string // the second document of the stream
		object string // Error.Object
		field  string // Error.Field
		msg    string // in Error.Message
	}{
		{
			name: "unknown field",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  rules:
  - retires: {attempts: 2} #<
`,
			object: "HTTPRoute default/echo", field: "spec.rules[0].retires",
			msg: "unknown field; the fields here are backendRefs, filters, matches, name, retry, sessionPersistence, timeouts",
		},
		{
			name: "field names are case-sensitive",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
Spec: {} #<
`,
			object: "HTTPRoute default/echo", field: "Spec", msg: "unknown field",
		},
		{
			name: "wrong type",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: shop}
spec:
  rules:
  - retry:
      attempts: two #<
`,
			object: "HTTPRoute shop/echo", field: "spec.rules[0].retry.attempts", msg: "want an integer, not a string",
		},
		{
			name: "wrong type in a later list item",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  rules:
  - retry:
      attempts: 2
  - retry:
      attempts: [3] #<
`,
			object: "HTTPRoute default/echo", field: "spec.rules[1].retry.attempts", msg: "want an integer, not a list",
		},
		{
			name: "wrong type in an embedded struct",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: greeter}
spec:
  parentRefs:
  - group: ""
    name: greeter
    port: "9090" #<
`,
			object: "GRPCRoute default/greeter", field: "spec.parentRefs[0].port", msg: "want an integer, not a string",
		},
		{
			name: "a YAML 1.1 boolean where a string is wanted",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set:
        - name: x-debug
          value: yes #<
`,
			object: "HTTPRoute default/echo", field: "spec.rules[0].filters[0].requestHeaderModifier.set[0].value",
			msg: "want a string, not true or false (YAML reads yes, no, on, off, y and n as true or false: quote the value)",
		},
		{
			name: "bad duration",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  rules:
  - timeouts:
      request: 1.5s #<
`,
			object: "HTTPRoute default/echo", field: "spec.rules[0].timeouts.request", msg: `"1.5s" is not a Gateway API duration`,
		},
		{
			name: "negative duration",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  rules:
  - retry:
      backoff: -25ms #<
`,
			object: "HTTPRoute default/echo", field: "spec.rules[0].retry.backoff", msg: `duration "-25ms" is negative`,
		},
		{
			name: "backendRequest longer than request",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  rules:
  - timeouts:
      request: 1s
      backendRequest: 2s #<
`,
			object: "HTTPRoute default/echo", field: "spec.rules[0].timeouts.backendRequest", msg: "2s is longer than the request timeout 1s",
		},
		{
			name: "code 200 in retry.codes",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  rules:
  - retry:
      codes:
      - 503
      - 200 #<
`,
			object: "HTTPRoute default/echo", field: "spec.rules[0].retry.codes[1]", msg: "200 is not an HTTP error status",
		},
		{
			name: "attempts below the CRD's minimum",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  rules:
  - retry: {attempts: 0} #<
`,
			object: "HTTPRoute default/echo", field: "spec.rules[0].retry.attempts", msg: "wants 1 or more",
		},
		{
			name: "budget percent 101",
			doc: `apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: budget}
spec:
  targetRefs: [{group: "", kind: Service, name: echo}]
  retryConstraint:
    budget:
      percent: 101 #<
`,
			object: "XBackendTrafficPolicy default/budget", field: "spec.retryConstraint.budget.percent", msg: "101 is outside 0 to 100",
		},
		{
			name: "budget interval below the CRD's 1s",
			doc: `apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: budget}
spec:
  targetRefs: [{group: "", kind: Service, name: echo}]
  retryConstraint:
    budget:
      interval: 500ms #<
`,
			object: "XBackendTrafficPolicy default/budget", field: "spec.retryConstraint.budget.interval", msg: "from 1s to 1h",
		},
		{
			name: "unsupported kind",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway #<
metadata: {name: gw}
`,
			object: "Gateway default/gw",
			msg:    `apiVersion "gateway.networking.k8s.io/v1" kind "Gateway" is not supported; supported: gateway.networking.k8s.io/v1 HTTPRoute, gateway.networking.k8s.io/v1 GRPCRoute, gateway.networking.x-k8s.io/v1alpha1 XBackendTrafficPolicy, policy.skiff.dev/v1alpha1 CircuitBreaker`,
		},
		{
			name: "unsupported apiVersion",
			doc: `apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute #<
metadata: {name: echo}
`,
			object: "HTTPRoute default/echo",
			msg:    `apiVersion "gateway.networking.k8s.io/v1beta1" kind "HTTPRoute" is not supported; supported: gateway.networking.k8s.io/v1 HTTPRoute`,
		},
		{
			name: "no kind",
			doc: `apiVersion: v1 #<
metadata: {name: echo}
`,
			msg: "apiVersion and kind are required",
		},
		{
			name: "no name",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: #<
  namespace: shop
`,
			object: "HTTPRoute", field: "metadata.name", msg: "required",
		},
		{
			name: "Service parentRef without group",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  parentRefs:
  - kind: Service #<
    name: echo
    port: 8080
`,
			object: "HTTPRoute default/echo", field: "spec.parentRefs[0]", msg: `a Service parentRef needs group: ""`,
		},
		{
			name: "repeated key",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  rules:
  - retry:
      attempts: 2
      attempts: 3 #<
`,
			object: "HTTPRoute default/echo", msg: `key "attempts" already set in map`,
		},
		{
			name: "annotation value",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo
  annotations:
    retry.skiff.dev/max-body-bytes: lots #<
`,
			object: "HTTPRoute default/echo", field: `metadata.annotations["retry.skiff.dev/max-body-bytes"]`, msg: `"lots": want a positive number of bytes`,
		},
		{
			name: "annotation of another kind",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: echo
  annotations:
    retry.skiff.dev/grpc-codes: "14" #<
`,
			object: "HTTPRoute default/echo", field: `metadata.annotations["retry.skiff.dev/grpc-codes"]`, msg: "Skiff does not read this annotation on kind HTTPRoute",
		},
		{
			name: "gRPC code out of range",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: greeter
  annotations:
    retry.skiff.dev/grpc-codes: "14,17" #<
`,
			object: "GRPCRoute default/greeter", field: `metadata.annotations["retry.skiff.dev/grpc-codes"]`, msg: `code 2, "17": want comma-separated gRPC status codes from 1 to 16`,
		},
		{
			name: "gRPC attempt timeout not a duration",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: greeter
  annotations:
    retry.skiff.dev/backend-request-timeout: "soon" #<
`,
			object: "GRPCRoute default/greeter", field: `metadata.annotations["retry.skiff.dev/backend-request-timeout"]`, msg: `"soon"`,
		},
		{
			name: "gRPC attempt timeout longer than the call's",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: greeter
  annotations:
    retry.skiff.dev/backend-request-timeout: 2s #<
    retry.skiff.dev/request-timeout: 1s
`,
			object: "GRPCRoute default/greeter", field: `metadata.annotations["retry.skiff.dev/backend-request-timeout"]`, msg: "timeouts",
		},
		{
			name: "success rate above 1",
			doc: `apiVersion: policy.skiff.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: echo}
spec:
  targetRef: {group: "", kind: Service, name: echo}
  minSuccessRate: "1.5" #<
`,
			object: "CircuitBreaker default/echo", field: "spec.minSuccessRate", msg: `"1.5" is not a rate`,
		},
		{
			name: "breaker target not a Service",
			doc: `apiVersion: policy.skiff.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: echo}
spec:
  targetRef: {group: apps, kind: Deployment, name: echo} #<
`,
			object: "CircuitBreaker default/echo", field: "spec.targetRef", msg: "a CircuitBreaker's target is a Service",
		},
		{
			name: "maxEjection shorter than the default baseEjection",
			doc: `apiVersion: policy.skiff.dev/v1alpha1
kind: CircuitBreaker
metadata: {name: echo}
spec:
  targetRef: {group: "", kind: Service, name: echo}
  maxEjection: 500ms #<
`,
			object: "CircuitBreaker default/echo", field: "spec.maxEjection", msg: "500ms is shorter than baseEjection 1s",
		},
		{
			name: "a second document hidden behind a value",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
--- {kind: Gateway} #<
`,
			msg: "a second YAML document starts here",
		},
		{
			name: "an object defined twice",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: first #<
`,
			object: "HTTPRoute default/first", field: "metadata.name", msg: "HTTPRoute default/first is already defined by document 1 (line 1)",
		},
		{
			name: "a list, not a mapping",
			doc: `- apiVersion: gateway.networking.k8s.io/v1 #<
  kind: HTTPRoute
`,
			msg: "a document must be a mapping",
		},
		{
			name: "not YAML",
			doc: `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
spec: {rules: [ #<
`,
			msg: "did not find expected node content",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := preamble + tc.doc
			_, err := Parse("routes.yaml", []byte(stream))
			if err == nil {
				t.Fatal("accepted")
			}
			t.Log(err)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%v: not an *Error", err)
			}
			want := Error{Source: "routes.yaml", Document: 2, Object: tc.object, Line: markedLine(stream), Field: tc.field}
			got := *e
			got.Message = ""
			if got != want || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("error %q\n got %+v\nwant %+v and a message holding %q", err, *e, want, tc.msg)
			}
			// The message says it all on its own.
			for _, part := range []string{"routes.yaml", "document 2", fmt.Sprintf("line %d", want.Line), tc.object, tc.field} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not say %q", err, part)
				}
			}
		})
	}
}

// The example from the package's brief, word for word but the field list.
func TestParseErrorText(t *testing.T) {
	stream := preamble + `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo}
spec:
  rules:
  - timeouts: {request: 1s}
  - retires: {}
`
	_, err := Parse("routes.yaml", []byte(stream))
	want := `routes.yaml: document 2 (HTTPRoute default/echo), line 14: spec.rules[1].retires: unknown field; the fields here are `
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v\nwant %s…", err, want)
	}
}

func TestParseStreamErrors(t *testing.T) {
	big := make([]byte, MaxStreamBytes+1)
	for i := range big {
		big[i] = '#'
	}
	many := strings.Repeat("a: 1\n---\n", MaxDocuments+1)
	for _, tc := range []struct {
		name, stream, msg string
	}{
		{"oversize", string(big), "1048577 bytes: a stream may hold at most 1048576 (1 MiB)"},
		{"too many documents", many, "more than 1000 documents"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("routes.yaml", []byte(tc.stream))
			var e *Error
			if !errors.As(err, &e) || e.Document != 0 || e.Source != "routes.yaml" || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("got %v, want a stream error holding %q", err, tc.msg)
			}
		})
	}
	// At the bound exactly, blank documents and separators with comments
	// are fine.
	ok := "---\n# nothing\n--- # still nothing\n\n" + strings.Repeat("---\n~\n", MaxDocuments)
	if _, err := Parse("routes.yaml", []byte(ok)); err != nil {
		t.Errorf("%d empty documents: %v", MaxDocuments, err)
	}
}

// Every error is reported, up to a bound, and each stands on its own.
func TestParseManyErrors(t *testing.T) {
	var b strings.Builder
	for i := range 30 {
		fmt.Fprintf(&b, "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r%d}\nspec: {rules: [{retry: {attempts: 0}}]}\n", i)
	}
	_, err := Parse("many.yaml", []byte(b.String()))
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("%v: not joined errors", err)
	}
	errs := joined.Unwrap()
	if len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Error(), "and 10 more errors") {
		t.Errorf("%d errors, the last %v", len(errs), errs[len(errs)-1])
	}
	var e *Error
	if !errors.As(errs[3], &e) || e.Document != 4 || e.Line != 20 {
		t.Errorf("the fourth error: %v", errs[3])
	}
}

func TestParseExample(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Parse("example.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.HTTPRoutes) != 1 || len(res.GRPCRoutes) != 1 || len(res.BackendTrafficPolicies) != 1 || len(res.CircuitBreakers) != 1 {
		t.Fatalf("%d HTTPRoutes, %d GRPCRoutes, %d policies, %d breakers; want one of each",
			len(res.HTTPRoutes), len(res.GRPCRoutes), len(res.BackendTrafficPolicies), len(res.CircuitBreakers))
	}
	if ns := res.BackendTrafficPolicies[0].Namespace; ns != "default" {
		t.Errorf("a policy without a namespace is in %q, want default", ns)
	}
	if got := res.origins[objectRef{CircuitBreakerKind, "shop", "greeter"}]; got.document != 4 || got.line != 60 || got.lineOf("spec.window") != 69 {
		t.Errorf("the breaker's origin: document %d, line %d; its window on line %d", got.document, got.line, got.lineOf("spec.window"))
	}
}

func TestSplitDocuments(t *testing.T) {
	docs, err := splitDocuments([]byte("# head\n---\na: 1\n--- # two\r\nb: 2\n---x\n---\n\n# c\n---\nc: 3"))
	if err != nil {
		t.Fatal(err)
	}
	want := []document{
		{number: 1, line: 3, data: []byte("a: 1\n")},
		{number: 2, line: 5, data: []byte("b: 2\n---x\n")},
		{number: 3, line: 11, data: []byte("c: 3")},
	}
	if !reflect.DeepEqual(docs, want) {
		t.Errorf("got %+v\nwant %+v", docs, want)
	}
}

// Hostile streams are refused with a message, within the bounds: nesting,
// aliases that expand a small file into a huge one, a type error far down
// a long list, more routes than the proxy takes.
func TestParseHostile(t *testing.T) {
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for i := range 9 {
		name := fmt.Sprintf("b%d", i)
		bomb += fmt.Sprintf("%s: &%s [%s]\n", name, name, strings.TrimSuffix(strings.Repeat("*"+prev+", ", 10), ", "))
		prev = name
	}
	var long strings.Builder
	long.WriteString(httpRouteHead + "spec:\n  rules:\n")
	for range 5000 {
		long.WriteString("  - retry: {attempts: 1}\n")
	}
	long.WriteString("  - retry: {attempts: many}\n")
	var wide strings.Builder
	for i := range 400 {
		fmt.Fprintf(&wide, "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r%d}\nspec:\n  parentRefs:\n", i)
		for p := 1; p <= 32; p++ {
			fmt.Fprintf(&wide, "  - {group: \"\", kind: Service, name: s%d, port: %d}\n", i, p)
		}
	}
	for _, tc := range []struct {
		name, stream, want string
	}{
		{"nesting", strings.Repeat("[", 100_000), "exceeded max depth"},
		{"alias expansion", bomb, "excessive aliasing"},
		{"a type error far down a list", long.String(), "line 5006: spec.rules[5000].retry.attempts: want an integer, not a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("hostile.yaml", []byte(tc.stream))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %.300v, want an error holding %q", err, tc.want)
			}
		})
	}
	res, err := Parse("wide.yaml", []byte(wide.String()))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := res.Routes(clusterAuthority); err == nil || !strings.Contains(err.Error(), "12800 routes: the proxy takes at most 10000") {
		t.Errorf("12,800 routes: %.300v", err)
	}
}
