package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic or hang;
// an error must be an Errors of single-line messages; a scenario it accepts
// must validate again, survive ApplyQuick, and marshal to YAML that parses
// back.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	catalog, _ := filepath.Glob("../catalog/*.yaml")
	for _, file := range append(files, catalog...) {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(briefExample))
	f.Add([]byte(aliasBomb()))
	f.Add([]byte("topology: {services: [{name: a, replica_behaviour: {0: {latency: 1ms:50}}}]}\n"))
	f.Add([]byte("topology: &t {services: [&s {name: a, <<: *s}], <<: *t}\n"))
	f.Add([]byte("phases: {a: {to: end}, b: {from: 1h}}\nquick: {rate: {steps: [{rps: 1, for: 1s}]}}\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not a non-empty Errors: %#v", err)
			}
			for _, e := range es {
				if e.Msg == "" || strings.ContainsAny(e.Msg, "\r\n") {
					t.Fatalf("bad message %q", e.Msg)
				}
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v", err)
		}
		q := s.Clone()
		q.ApplyQuick()
		if err := q.Validate(); err != nil {
			t.Fatalf("quick form invalid after Parse accepted it: %v", err)
		}
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := Parse("fuzz.yaml", out); err != nil {
			t.Fatalf("marshalled scenario does not parse: %v\n%s", err, out)
		}
	})
}
