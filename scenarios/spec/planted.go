package spec

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Planted is a planted defect that must make the scenario fail: a switch of
// a test build (package internal/plant, `skiff scenario run NAME --plant
// DEFECT`) that breaks the feature the scenario proves, and the assertion
// that catches it. It is the evidence that the scenario can fail; every
// catalogue scenario declares at least one.
type Planted struct {
	// Defect is the defect's name, as internal/plant names it (e.g.
	// "ewma-off"). Required.
	Defect string `yaml:"defect" json:"defect"`
	// Phase and Expr name the assertion that must fail with the defect:
	// the same phase (empty: whole) and expression as one of the
	// scenario's assertions. Expr is required.
	Phase string `yaml:"phase,omitempty" json:"phase,omitempty"`
	Expr  string `yaml:"expr" json:"expr"`
}

// Label is how results name the assertion: "phase: expr".
func (p Planted) Label() string {
	ph := p.Phase
	if ph == "" {
		ph = PhaseWhole
	}
	return ph + ": " + strings.TrimSpace(p.Expr)
}

var defectName = regexp.MustCompile(`^[a-z][a-z0-9-]*[a-z0-9]$`)

// planted checks each planted defect names an assertion of the scenario.
func (v *validator) planted() {
	for i, pl := range v.s.Planted {
		p := fmt.Sprintf("planted[%d]", i)
		if !defectName.MatchString(pl.Defect) {
			v.errf(p+".defect", "%q: want a defect's name such as %q (internal/plant lists them)", pl.Defect, "ewma-off")
		}
		ph := pl.Phase
		if ph == "" {
			ph = PhaseWhole
		}
		found := slices.ContainsFunc(v.s.Assertions, func(a Assertion) bool {
			aph := a.Phase
			if aph == "" {
				aph = PhaseWhole
			}
			return aph == ph && strings.TrimSpace(a.Judged()) == strings.TrimSpace(pl.Expr)
		})
		if !found {
			var have []string
			for _, a := range v.s.Assertions {
				have = append(have, fmt.Sprintf("%q", Planted{Phase: a.Phase, Expr: a.Judged()}.Label()))
			}
			v.errf(p+".expr", "no assertion %q that decides the run: the defect must be caught by one of the scenario's own, a known failure's ceiling in its place (%s)", pl.Label(), strings.Join(have, ", "))
		}
	}
}

// successMetric matches an assertion on the success rate.
var successMetric = regexp.MustCompile(`^\s*success_rate\b`)

// successCoverage checks that every request of the run is judged by a
// success-rate assertion: one on the whole run, or ones whose phases
// together cover it. A request that fails between two judged phases (a
// 502 in the seconds after a fault) must fail the run if it breaks an
// SLO, not go unseen.
func (v *validator) successCoverage() {
	if !v.durOK || len(v.s.Assertions) == 0 {
		return
	}
	dur := v.s.Load.Duration
	type span struct{ from, to time.Duration }
	var spans []span
	judged := false
	for _, a := range v.s.Assertions {
		if !successMetric.MatchString(a.Judged()) {
			continue
		}
		judged = true
		from, to, ok := v.s.Phase(a.Phase)
		if !ok {
			return // reported by assertions()
		}
		spans = append(spans, span{max(from, 0), min(to, dur)})
	}
	if !judged {
		return // a scenario that judges no success rate (a scale run)
	}
	slices.SortFunc(spans, func(a, b span) int { return int(a.from - b.from) })
	var gaps []string
	at := time.Duration(0)
	for _, s := range spans {
		if s.from > at {
			gaps = append(gaps, fmt.Sprintf("%s-%s", at, s.from))
		}
		at = max(at, s.to)
	}
	if at < dur {
		gaps = append(gaps, fmt.Sprintf("%s-%s", at, dur))
	}
	if len(gaps) > 0 {
		v.errf("assertions", "the requests of %s are judged by no success_rate assertion: add one on phase %s (e.g. a looser %q), or phases that cover them",
			strings.Join(gaps, ", "), PhaseWhole, "success_rate >= 0.99")
	}
}
