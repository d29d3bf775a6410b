// Package planted proves that every catalogue scenario can fail. Its test
// (build tag plant: `make planted`) runs each scenario in its quick form
// twice: on the real build, where it must pass, and on a test build with
// the defect the scenario declares (planted: in its YAML, package
// internal/plant), where it must fail on the assertion the scenario names.
// It keeps the table of scenarios, defects and catching assertions in
// docs/scenarios.md up to date (-update rewrites it).
package planted
