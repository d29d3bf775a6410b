// Package catalog is the scenario catalogue: one YAML file per scenario,
// embedded in the binary. `make scenario NAME=failover` and
// `skiff scenario run failover` load from it.
//
// The schema is package spec's and is documented in docs/scenarios.md. To
// add a scenario, add NAME.yaml here (its name field must be NAME) with a
// one-line description, SLOs whose bounds are justified in comments and a
// quick section that keeps --quick under about a minute; the tests of this
// package check all of that.
package catalog

import (
	"embed"

	"github.com/skiff-mesh/skiff/scenarios/spec"
)

// FS holds the scenario files, NAME.yaml at its root.
//
//go:embed *.yaml
var FS embed.FS

// List returns the names of the scenarios in the catalogue, sorted.
func List() []string {
	names, err := spec.Names(FS)
	if err != nil {
		// Reading the root of an embed.FS cannot fail.
		panic("catalog: " + err.Error())
	}
	return names
}

// Load parses and validates the scenario called name. An unknown name is
// an error that lists the known ones.
func Load(name string, opts ...spec.Option) (*spec.Scenario, error) {
	return spec.Load(FS, name, opts...)
}
