package faultinject

import (
	"context"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type resourcesPod struct {
	fakePod
	got []byte
}

func (p *resourcesPod) ApplyResources(data []byte) error { p.got = data; return nil }

func params(t *testing.T, src string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(src), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

const route = `
resources:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: echo, namespace: default}
    spec:
      parentRefs: [{group: "", kind: Service, name: echo, port: 8080}]
      rules:
        - retry: {attempts: 2, codes: [503]}
`

func TestApplyReplacesTheObjects(t *testing.T) {
	f, err := Default().Get("apply")
	if err != nil {
		t.Fatal(err)
	}
	p := params(t, route)
	if err := f.Validate(p); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	ctl := &resourcesPod{fakePod: fakePod{name: "controller"}}
	if _, err := f.Apply(context.Background(), []Pod{ctl}, p); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, want := range []string{"kind: HTTPRoute", "attempts: 2", "- 503"} {
		if !strings.Contains(string(ctl.got), want) {
			t.Errorf("the controller got\n%s\nwithout %q", ctl.got, want)
		}
	}
	// A pod that holds no objects is named in the error.
	if _, err := f.Apply(context.Background(), []Pod{&fakePod{name: "echo-0"}}, p); err == nil || !strings.Contains(err.Error(), "echo-0") {
		t.Errorf("apply to a workload pod: %v", err)
	}
}

func TestApplyRefusesBadObjects(t *testing.T) {
	f, _ := Default().Get("apply")
	for name, src := range map[string]string{
		"no list":       "resources: x",
		"empty":         "resources: []",
		"unknown param": route + "\nfiles: [a]",
		"unknown field": strings.Replace(route, "attempts: 2", "tries: 2", 1),
		"bad code":      strings.Replace(route, "[503]", "[99]", 1),
	} {
		if err := f.Validate(params(t, src)); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
