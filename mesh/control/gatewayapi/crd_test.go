package gatewayapi

import (
	"bytes"
	"flag"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

const crdGolden = "testdata/circuitbreaker-crd.yaml"

// The CRD checked in is the one the Go type renders.
func TestCircuitBreakerCRD(t *testing.T) {
	got := CircuitBreakerCRD()
	if *update {
		if err := os.WriteFile(crdGolden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(crdGolden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestCircuitBreakerCRD -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("CircuitBreakerCRD() differs from %s: run go test ./mesh/control/gatewayapi -run TestCircuitBreakerCRD -update and review the diff", crdGolden)
	}
}

// Every Go field of CircuitBreakerSpec has a schema property with a
// description and a matching type, every property has a Go field, and
// the required ones are those without omitempty. The schema is read back
// from the rendered YAML, not from the values that rendered it.
func TestCircuitBreakerSchemaCoversType(t *testing.T) {
	var crd map[string]any
	if err := yaml.UnmarshalStrict(CircuitBreakerCRD(), &crd); err != nil {
		t.Fatal(err)
	}
	root := dig(t, crd, "spec", "versions", 0, "schema", "openAPIV3Schema")
	if req := dig(t, root, "required"); !reflect.DeepEqual(req, []any{"spec"}) {
		t.Errorf("required %v, want [spec]", req)
	}
	compareSchema(t, "spec", reflect.TypeFor[CircuitBreakerSpec](), dig(t, root, "properties", "spec").(map[string]any))

	// No description or bound is kept for a field that is gone.
	for p := range circuitBreakerFields() {
		props := dig(t, root, "properties")
		segs := strings.Split(p, ".")
		for i, s := range segs {
			m, ok := props.(map[string]any)[s]
			if !ok {
				t.Errorf("circuitBreakerFields has %s, which the type does not", p)
				break
			}
			if i < len(segs)-1 {
				props = m.(map[string]any)["properties"]
			}
		}
	}
}

func compareSchema(t *testing.T, p string, typ reflect.Type, s map[string]any) {
	t.Helper()
	if d, _ := s["description"].(string); d == "" {
		t.Errorf("%s: no description", p)
	}
	if pat, ok := s["pattern"].(string); ok {
		if _, err := regexp.Compile(pat); err != nil {
			t.Errorf("%s: pattern %q: %v", p, pat, err)
		}
	}
	typ = indirect(typ)
	want := map[reflect.Kind]string{reflect.String: "string", reflect.Int32: "integer", reflect.Struct: "object"}[typ.Kind()]
	if s["type"] != want {
		t.Errorf("%s: type %v, Go type %s", p, s["type"], typ)
	}
	if typ.Kind() != reflect.Struct {
		return
	}
	props, _ := s["properties"].(map[string]any)
	var names, required []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, skip := jsonName(f)
		if skip {
			continue
		}
		names = append(names, name)
		if !strings.Contains(f.Tag.Get("json"), "omitempty") {
			required = append(required, name)
		}
		ps, ok := props[name].(map[string]any)
		if !ok {
			t.Errorf("%s: no property %s for Go field %s", p, name, f.Name)
			continue
		}
		compareSchema(t, child(p, name), f.Type, ps)
	}
	for name := range props {
		if !slices.Contains(names, name) {
			t.Errorf("%s: property %s has no Go field", p, name)
		}
	}
	var gotRequired []string
	for _, r := range asSlice(s["required"]) {
		gotRequired = append(gotRequired, r.(string))
	}
	slices.Sort(required)
	slices.Sort(gotRequired)
	if !slices.Equal(gotRequired, required) {
		t.Errorf("%s: required %v, want %v", p, gotRequired, required)
	}
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// dig follows keys and indexes into decoded YAML.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, k := range path {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not a mapping at %q", path, k)
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				t.Fatalf("%v: no item %d", path, k)
			}
			v = s[k]
		}
	}
	return v
}
