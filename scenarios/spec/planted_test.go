package spec

import (
	"strings"
	"testing"
)

// TestPlantedAndCoverage: a planted defect must name one of the
// scenario's assertions, and every request of the run must be judged by a
// success-rate assertion.
func TestPlantedAndCoverage(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"planted names an assertion", `
topology: {services: [{name: echo}]}
assertions:
  - {expr: "success_rate >= 0.999"}
planted:
  - {defect: fail-some, expr: "success_rate >= 0.999"}
`, ""},
		{"planted assertion of another phase", `
topology: {services: [{name: echo}]}
phases: {late: {from: 5s}}
assertions:
  - {expr: "success_rate >= 0.999"}
  - {phase: late, expr: "p99_ms < 5"}
planted:
  - {defect: slow-hop, expr: "p99_ms < 5"}
`, `t.yaml:7:30: planted[0].expr: no assertion "whole: p99_ms < 5" that decides the run: the defect must be caught by one of the scenario's own, a known failure's ceiling in its place ("whole: success_rate >= 0.999", "late: p99_ms < 5")`},
		{"planted names a known failure's ceiling", `
topology: {services: [{name: echo}]}
assertions:
  - {expr: "success_rate >= 0.999"}
  - {expr: "p99_ms < 5", known_failure: "slow today", ceiling: "p99_ms < 8"}
planted:
  - {defect: slow-hop, expr: "p99_ms < 8"}
`, ""},
		{"planted names a known failure itself", `
topology: {services: [{name: echo}]}
assertions:
  - {expr: "success_rate >= 0.999"}
  - {expr: "p99_ms < 5", known_failure: "slow today", ceiling: "p99_ms < 8"}
planted:
  - {defect: slow-hop, expr: "p99_ms < 5"}
`, `t.yaml:6:30: planted[0].expr: no assertion "whole: p99_ms < 5" that decides the run: the defect must be caught by one of the scenario's own, a known failure's ceiling in its place ("whole: success_rate >= 0.999", "whole: p99_ms < 8")`},
		{"a known failure without a ceiling", `
topology: {services: [{name: echo}]}
assertions:
  - {expr: "p99_ms < 5", known_failure: "slow today"}
`, `t.yaml:3:5: assertions[0].ceiling: required with known_failure: the same metric with a looser threshold (today's level and a margin), so that a known failure cannot get worse unnoticed`},
		{"a ceiling tighter than the assertion", `
topology: {services: [{name: echo}]}
assertions:
  - {expr: "success_rate >= 0.999", known_failure: "flaky", ceiling: "success_rate >= 0.9999"}
`, `t.yaml:3:70: assertions[0].ceiling: "success_rate >= 0.9999" must test success_rate with >= and a looser threshold than 0.999`},
		{"a ceiling of another metric", `
topology: {services: [{name: echo}]}
assertions:
  - {expr: "p99_ms < 5", known_failure: "slow today", ceiling: "p50_ms < 8"}
`, `t.yaml:3:64: assertions[0].ceiling: "p50_ms < 8" must test p99_ms with < and a looser threshold than 5`},
		{"a ceiling without a known failure", `
topology: {services: [{name: echo}]}
assertions:
  - {expr: "p99_ms < 5", ceiling: "p99_ms < 8"}
`, `t.yaml:3:35: assertions[0].ceiling: only with known_failure: a ceiling bounds an assertion known to fail`},
		{"an exact assertion cannot be a known failure", `
topology: {services: [{name: echo}]}
assertions:
  - {expr: "success_rate == 1", known_failure: "flaky", ceiling: "success_rate == 0.9"}
`, `t.yaml:3:48: assertions[0].known_failure: == cannot be a known failure: only <, <=, > and >= have a looser ceiling`},
		{"planted defect name", `
topology: {services: [{name: echo}]}
assertions:
  - {expr: "success_rate >= 0.999"}
planted:
  - {defect: "EWMA off", expr: "success_rate >= 0.999"}
`, `t.yaml:5:14: planted[0].defect: "EWMA off": want a defect's name such as "ewma-off" (internal/plant lists them)`},
		{"a gap between judged phases", `
topology: {services: [{name: echo}]}
load: {duration: 30s}
phases: {a: {from: 0s, to: 10s}, b: {from: 15s}}
assertions:
  - {phase: a, expr: "success_rate >= 0.999"}
  - {phase: b, expr: "success_rate >= 0.999"}
`, `t.yaml:5:3: assertions: the requests of 10s-15s are judged by no success_rate assertion: add one on phase whole (e.g. a looser "success_rate >= 0.99"), or phases that cover them`},
		{"the whole phase covers the gap", `
topology: {services: [{name: echo}]}
load: {duration: 30s}
phases: {a: {from: 0s, to: 10s}, b: {from: 15s}}
assertions:
  - {phase: a, expr: "success_rate >= 0.999"}
  - {phase: b, expr: "success_rate >= 0.999"}
  - {expr: "success_rate >= 0.99"}
`, ""},
		{"no success assertion at all", `
topology: {services: [{name: echo}]}
assertions:
  - {expr: "p99_ms < 5"}
`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(strings.TrimPrefix(tc.in, "\n")))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("got:\n%v\nwant:\n%s", err, tc.want)
			}
		})
	}
}
