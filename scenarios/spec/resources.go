package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/skiff-mesh/skiff/mesh/control/gatewayapi"
	"github.com/skiff-mesh/skiff/mesh/proxy/route"
)

// Resource is one Kubernetes object of a scenario's resources, kept as the
// YAML it was written in.
type Resource struct {
	// YAML is the object, a YAML mapping with apiVersion, kind, metadata
	// and spec.
	YAML []byte
	// Line is where the object starts in the scenario file; zero for one
	// built in Go.
	Line int
}

// MarshalYAML writes the object itself.
func (r Resource) MarshalYAML() (any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(r.YAML, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// MarshalJSON writes the object itself, as JSON.
func (r Resource) MarshalJSON() ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(r.YAML, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads an object written by MarshalJSON.
func (r *Resource) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	*r = Resource{YAML: out}
	return nil
}

// resourceStream joins the resources into one stream of YAML documents,
// with the line each document starts on in the stream.
func resourceStream(rs []Resource) ([]byte, []int) {
	var b []byte
	starts := make([]int, len(rs))
	line := 1
	for i, r := range rs {
		if i > 0 {
			b = append(b, "---\n"...)
			line++
		}
		starts[i] = line
		doc := r.YAML
		if len(doc) > 0 && doc[len(doc)-1] != '\n' {
			doc = append(slices.Clone(doc), '\n')
		}
		b = append(b, doc...)
		line += bytes.Count(doc, []byte("\n"))
	}
	return b, starts
}

// ResourcesYAML is the scenario's Kubernetes objects as one YAML stream,
// what `kubectl apply -f` would take.
func (s *Scenario) ResourcesYAML() []byte {
	b, _ := resourceStream(s.Resources)
	return b
}

// Authority is the authority requests use for port of the topology's
// service name: "<name>.default.svc:<port>". Services live in namespace
// "default".
func (s *Scenario) Authority(namespace, name string, port int32) (string, bool) {
	if namespace != "default" {
		return "", false
	}
	for _, svc := range s.Topology.Services {
		if svc.Name == name && int32(svc.Port) == port {
			return fmt.Sprintf("%s.default.svc:%d", name, port), true
		}
	}
	return "", false
}

// Routes turns the scenario's resources into the proxies' routes, checked
// with the real API types, with what they hold that Skiff ignores. Errors
// are an Errors placed in the scenario file (named file).
func (s *Scenario) Routes(file string) ([]route.Route, []gatewayapi.Warning, error) {
	errs := &errorList{file: file}
	routes, warnings := s.routes(errs)
	return routes, warnings, errs.err()
}

// routes is Routes, reporting into errs.
func (s *Scenario) routes(errs *errorList) ([]route.Route, []gatewayapi.Warning) {
	if len(s.Resources) == 0 {
		return nil, nil
	}
	stream, starts := resourceStream(s.Resources)
	place := func(err error) {
		for _, e := range unjoin(err) {
			var ge *gatewayapi.Error
			if !errors.As(e, &ge) {
				errs.add(pos{}, "resources", "resources: "+e.Error())
				continue
			}
			i := ge.Document - 1
			p, line := "resources", 0
			if i >= 0 && i < len(s.Resources) {
				p = fmt.Sprintf("resources[%d]", i)
				if r := s.Resources[i]; r.Line > 0 {
					line = r.Line
					if ge.Line >= starts[i] {
						line += ge.Line - starts[i]
					}
				}
			}
			msg := p
			if ge.Object != "" {
				msg += " (" + ge.Object + ")"
			}
			if ge.Field != "" {
				msg += " " + ge.Field
			}
			errs.add(pos{line: line}, p, msg+": "+ge.Message)
		}
	}
	res, err := gatewayapi.Parse("resources", stream)
	if err != nil {
		place(err)
		return nil, nil
	}
	routes, warnings, err := res.Routes(s.Authority)
	if err != nil {
		place(err)
		return nil, warnings
	}
	// A cluster may hold what Skiff ignores; a scenario that does would
	// claim to test what it does not, so there each is an error.
	for _, w := range warnings {
		i := s.resourceIndex(w.Object)
		p, line := "resources", 0
		if i >= 0 {
			p, line = fmt.Sprintf("resources[%d]", i), s.Resources[i].Line
		}
		msg := p + " (" + w.Object + ")"
		if w.Field != "" {
			msg += " " + w.Field
		}
		errs.add(pos{line: line}, p, msg+": "+w.Message+"; a scenario may use only what Skiff applies")
	}
	return routes, warnings
}

// resourceIndex finds the resource that is object ("Kind namespace/name"),
// -1 when none is.
func (s *Scenario) resourceIndex(object string) int {
	for i, r := range s.Resources {
		var m struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
		}
		if yaml.Unmarshal(r.YAML, &m) != nil {
			continue
		}
		ns := m.Metadata.Namespace
		if ns == "" {
			ns = "default"
		}
		if m.Kind+" "+ns+"/"+m.Metadata.Name == object {
			return i
		}
	}
	return -1
}

// resources checks the scenario's Kubernetes objects.
func (v *validator) resources() {
	if !v.quick { // --quick changes nothing in them
		v.s.routes(v.errs)
	}
}

// unjoin lists the errors errors.Join put together, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
