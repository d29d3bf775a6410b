// Package spec is the scenario specification of the skiff harness: the Go
// form of one scenario file, its strict YAML decoding, its validation, and
// the --quick transformation. docs/scenarios.md documents the schema field
// by field; package catalog holds the scenarios themselves.
//
// # Parsing
//
// Parse (or Load, from an fs.FS by name) decodes a file strictly: unknown
// fields, duplicate keys, values of the wrong type and semantic mistakes are
// all reported, every one of them, as an Errors whose lines read
//
//	failover.yaml:14:7: unknown field "replcias" in topology.services[0]; did you mean "replicas"?
//	failover.yaml:31:13: timeline[0].target: pod "echo-3" does not exist: service "echo" has 3 replicas (echo-0..echo-2)
//
// The result is normalized (Normalize): every field with a default has it,
// so consumers read values, never zero-means-default rules.
//
// # Time
//
// Times in a scenario count from the end of the warm-up, which is the start
// of measurement: an event at 10s happens 10 s after the warm-up ends. The
// warm-up is the implicit phase "warmup", [-Load.Warmup, 0]; the measured
// run is the implicit phase "whole", [0, Load.Duration].
//
// # What this package does not do
//
// Assertion expressions are kept as strings: the assertion evaluator
// parses and checks them against measurements; this package only checks
// that each is one non-empty line over an existing phase. Fault parameters
// (Event.Params) are validated by the fault type, and the set of fault
// types comes from the fault registry through WithFaults.
package spec
