package assert

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/results"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want Expr
	}{
		{"success_rate >= 0.999", Expr{Metric: "success_rate", Op: GE, Threshold: 0.999}},
		{"p99_added_ms<1", Expr{Metric: "p99_added_ms", Op: LT, Threshold: 1}},
		{"  p99_ms <= 25  ", Expr{Metric: "p99_ms", Op: LE, Threshold: 25}},
		{"proxy_vmhwm_mb <= 10", Expr{Metric: "proxy_vmhwm_mb", Op: LE, Threshold: 10}},
		{"recovery_s < 3", Expr{Metric: "recovery_s", Op: LT, Threshold: 3}},
		{"retry_ratio <= .2", Expr{Metric: "retry_ratio", Op: LE, Threshold: 0.2}},
		{"share(echo-2) >= 0.2", Expr{Metric: "share(echo-2)", Op: GE, Threshold: 0.2}},
		{"share ( echo-2 ) >= 0.2", Expr{Metric: "share(echo-2)", Op: GE, Threshold: 0.2}},
		{"p(99)<1", Expr{Metric: "p(99)", Op: LT, Threshold: 1}},
		{"split_share(v2) within 0.10±0.02", Expr{Metric: "split_share(v2)", Op: Within, Threshold: 0.1, Tolerance: 0.02}},
		{"split_share(v2) within 0.10 +- 0.02", Expr{Metric: "split_share(v2)", Op: Within, Threshold: 0.1, Tolerance: 0.02}},
		{"split_share(v2) within 1e-1+-2E-2", Expr{Metric: "split_share(v2)", Op: Within, Threshold: 0.1, Tolerance: 0.02}},
		{"plaintext_bytes == 0", Expr{Metric: "plaintext_bytes", Op: EQ, Threshold: 0}},
		{"errors != 0", Expr{Metric: "errors", Op: NE, Threshold: 0}},
		{"delta_ms > -0.5", Expr{Metric: "delta_ms", Op: GT, Threshold: -0.5}},
		{"withinness > 1", Expr{Metric: "withinness", Op: GT, Threshold: 1}},
	} {
		got, err := Parse(tc.src)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.src, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.src, got, tc.want)
		}
		again, err := Parse(got.String())
		if err != nil || again != got {
			t.Errorf("Parse(%q.String() = %q) = %+v, %v", tc.src, got.String(), again, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		src string
		col int
		msg string
	}{
		{"", 1, "expected a metric name"},
		{">= 1", 1, "expected a metric name"},
		{"9lives > 1", 1, "expected a metric name"},
		{"p99_ms", 7, "expected an operator"},
		{"p99_ms = 1", 8, `"=" is not an operator; use "=="`},
		{"p99_ms <", 9, "expected a number, found the end"},
		{"p99_ms < abc", 10, "expected a number"},
		{"p99_ms < 1ms", 11, "units are part of the metric name"},
		{"p99_ms < 1 2", 12, `unexpected '2' after the assertion`},
		{"p99_ms < inf", 10, "expected a number"},
		{"p99_ms < NaN", 10, "expected a number"},
		{"p99_ms < 1e", 11, "exponent without digits"},
		{"p99_ms < 1e999", 10, "out of range"},
		{"share() > 1", 7, "expected an argument"},
		{"share(a b) > 1", 9, `expected ")" to close the "(" at column 6`},
		{"share(a > 1", 9, `expected ")"`},
		{"x within 0.1", 13, `expected "±" or "+-"`},
		{"x within 0.1 ± -0.02", 16, "tolerance -0.02 is negative"},
		{"x within0.1±0.1", 9, `expected a space after "within"`},
		{"within > 1", 1, `found the operator "within"`},
		// Columns count characters, not bytes: "±" is one column.
		{"x within 0.1±0.02 ±", 19, `unexpected '±'`},
	} {
		_, err := Parse(tc.src)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want a *SyntaxError", tc.src, err)
			continue
		}
		if se.Col != tc.col || !strings.Contains(se.Msg, tc.msg) || se.Expr != tc.src {
			t.Errorf("Parse(%q): column %d %q, want column %d and %q", tc.src, se.Col, se.Msg, tc.col, tc.msg)
		}
		if !strings.Contains(err.Error(), `"`+tc.src+`"`) && !strings.Contains(err.Error(), "column") {
			t.Errorf("error %q does not name the expression and the column", err)
		}
	}
}

func TestHolds(t *testing.T) {
	within := Expr{Metric: "s", Op: Within, Threshold: 0.10, Tolerance: 0.02}
	for _, tc := range []struct {
		e    Expr
		v    float64
		want bool
	}{
		{Expr{Op: LT, Threshold: 1}, 0.99, true},
		{Expr{Op: LT, Threshold: 1}, 1, false},
		{Expr{Op: LE, Threshold: 1}, 1, true},
		{Expr{Op: GT, Threshold: 1}, 1, false},
		{Expr{Op: GE, Threshold: 0.999}, 0.999, true},
		{Expr{Op: GE, Threshold: 0.999}, 0.99899, false},
		{Expr{Op: EQ, Threshold: 0}, 0, true},
		{Expr{Op: NE, Threshold: 0}, 0, false},
		{Expr{Op: NE, Threshold: 0}, math.NaN(), false},
		{Expr{Op: LT, Threshold: 1}, math.NaN(), false},
		{within, 0.10, true},
		{within, 0.08, true}, // 0.1-0.02 is 0.08000000000000000166 in binary
		{within, 0.12, true},
		{within, 0.0799, false},
		{within, 0.1201, false},
	} {
		if got := tc.e.Holds(tc.v); got != tc.want {
			t.Errorf("%v holds for %v: %v, want %v", tc.e, tc.v, got, tc.want)
		}
	}
}

func TestEval(t *testing.T) {
	metrics := map[string]float64{"success_rate": 0.98712, "p99_ms": 3.2, "split_share(v2)": 0.13, "p50_ms": math.NaN(), "q": 0.99899}
	for _, tc := range []struct {
		src, msg string
		verdict  results.Verdict
	}{
		{"success_rate >= 0.999", "FAIL [during_fault] success_rate >= 0.999: measured 0.9871", results.Fail},
		{"p99_ms <= 25", "PASS [during_fault] p99_ms <= 25: measured 3.2", results.Pass},
		{"split_share(v2) within 0.10±0.02", "FAIL [during_fault] split_share(v2) within 0.10±0.02: measured 0.13 (outside 0.08..0.12)", results.Fail},
		{"p50_ms < 1", "FAIL [during_fault] p50_ms < 1: no measurement (NaN: no data in this phase?)", results.Fail},
		// Four figures would print 0.999 and hide why it failed.
		{"q >= 0.999", "FAIL [during_fault] q >= 0.999: measured 0.99899", results.Fail},
	} {
		a := Check(tc.src, "during_fault", metrics)
		if a.Message != tc.msg || a.Verdict != tc.verdict || a.Expr != tc.src || a.Phase != "during_fault" {
			t.Errorf("Check(%q) = %+v\nwant verdict %s, message %q", tc.src, a, tc.verdict, tc.msg)
		}
	}
	a := Check("success_rate >= 0.999", "x", metrics)
	if a.Measured == nil || *a.Measured != 0.98712 || a.Threshold != 0.999 || a.Op != ">=" || a.Metric != "success_rate" {
		t.Errorf("assertion record %+v", a)
	}
}

func TestEvalUnknownMetric(t *testing.T) {
	e, _ := Parse("p99_msec < 1")
	_, err := Eval(e, "", "steady", map[string]float64{"p99_ms": 1, "p50_ms": 1, "share(echo-2)": 0.3})
	if err == nil || !strings.Contains(err.Error(), `unknown metric "p99_msec"; known metrics: p50_ms, p99_ms, share(echo-2)`) {
		t.Fatalf("Eval: %v", err)
	}
	a := Check("p99_msec < 1", "steady", map[string]float64{"p99_ms": 1})
	if a.Verdict != results.Error || !strings.HasPrefix(a.Message, "ERROR [steady] p99_msec < 1: unknown metric") {
		t.Errorf("Check: %+v", a)
	}
	a = Check("p99_ms <", "steady", nil)
	if a.Verdict != results.Error || !strings.Contains(a.Message, "column 9") {
		t.Errorf("Check of a bad expression: %+v", a)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"success_rate >= 0.999", "p99_added_ms < 1", "share(echo-2) >= 0.2",
		"split_share(v2) within 0.10±0.02", "x within 1 +- 2", "p(99)<1e-3", "a(", "a(b", "±", "within",
		"x == -0", "x != .5", "é(ü) > 1", "x < 1e", "x\t<=\n1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Col < 1 || se.Col > len([]rune(src))+1 {
				t.Fatalf("Parse(%q): %v: want a *SyntaxError with a column inside the text", src, err)
			}
			return
		}
		if math.IsNaN(e.Threshold) || math.IsInf(e.Threshold, 0) || e.Tolerance < 0 || math.IsInf(e.Tolerance, 0) {
			t.Fatalf("Parse(%q) = %+v: a threshold must be finite", src, e)
		}
		again, err := Parse(e.String())
		if err != nil || again != e {
			t.Fatalf("Parse(%q) = %+v, but its String %q parses to %+v, %v", src, e, e.String(), again, err)
		}
		_ = Check(src, "p", map[string]float64{e.Metric: 1})
	})
}

func TestDecide(t *testing.T) {
	count := func(k, n int64) *results.Count { return &results.Count{K: k, N: n} }
	trials := func(lo, hi float64, n int) *results.Interval { return results.NewInterval(lo, hi, 0.95, n) }
	rate := func(k, n int64) Measure { return Measure{Value: float64(k) / float64(n), Count: count(k, n)} }
	for _, tc := range []struct {
		src  string
		m    Measure
		want results.Verdict
		rule string
	}{
		// failover-service's failover phase: 2 400 requests, 0.999 allows 2.
		{"success_rate >= 0.999", rate(2400, 2400), results.Pass, results.RuleBinomial},
		{"success_rate >= 0.999", rate(2398, 2400), results.Pass, results.RuleBinomial},
		{"success_rate >= 0.999", rate(2396, 2400), results.Inconclusive, results.RuleBinomial}, // 4 × 502 on a loaded machine
		{"success_rate >= 0.999", rate(2395, 2400), results.Inconclusive, results.RuleBinomial},
		{"success_rate >= 0.999", rate(2394, 2400), results.Fail, results.RuleBinomial}, // 6 × 502: shown below
		// A small sample still fails when it clearly breaks the promise.
		{"success_rate >= 0.999", rate(9, 10), results.Fail, results.RuleBinomial},
		{"success_rate >= 0.999", rate(10, 10), results.Pass, results.RuleBinomial},
		{"success_rate > 0.5", rate(1, 2), results.Inconclusive, results.RuleBinomial},
		{"error_rate <= 0.001", rate(4, 2400), results.Inconclusive, results.RuleBinomial},
		{"error_rate <= 0.001", rate(6, 2400), results.Fail, results.RuleBinomial},
		{"error_rate < 0.001", rate(2, 2400), results.Pass, results.RuleBinomial},
		{"share within 0.5±0.1", rate(50, 100), results.Pass, results.RuleBinomial},
		{"share within 0.5±0.1", rate(36, 100), results.Inconclusive, results.RuleBinomial},
		{"share within 0.5±0.1", rate(20, 100), results.Fail, results.RuleBinomial},
		{"share within 0.5±0.1", rate(80, 100), results.Fail, results.RuleBinomial},
		// "==" asks for exactness: one failure in 2 400 breaks it.
		{"success_rate == 1", rate(2399, 2400), results.Fail, results.RulePoint},
		{"success_rate == 1", rate(2400, 2400), results.Pass, results.RulePoint},
		// No requests: no measurement, no pass.
		{"success_rate >= 0.999", Measure{Value: math.NaN(), Count: count(0, 0)}, results.Fail, results.RulePoint},
		// Added latency over interleaved trials (baseline, the bench gate).
		{"p50_added_ms <= 0.5", Measure{Value: 0.41, Interval: trials(0.38, 0.45, 6)}, results.Pass, results.RuleInterval},
		{"p50_added_ms <= 0.5", Measure{Value: 0.5, Interval: trials(0.45, 0.5, 6)}, results.Pass, results.RuleInterval},
		{"p50_added_ms <= 0.5", Measure{Value: 0.55, Interval: trials(0.48, 0.64, 6)}, results.Inconclusive, results.RuleInterval},
		// A point estimate within the limit is not a pass while the
		// interval reaches past it (the p99 at +0.628 up to +2.371).
		{"p99_added_ms <= 1", Measure{Value: 0.628, Interval: trials(0.2, 2.371, 6)}, results.Inconclusive, results.RuleInterval},
		{"p50_added_ms <= 0.5", Measure{Value: 0.56, Interval: trials(0.52, 0.6, 12)}, results.Fail, results.RuleInterval},
		{"p50_added_ms < 0.5", Measure{Value: 0.52, Interval: trials(0.5, 0.6, 12)}, results.Fail, results.RuleInterval},
		{"p50_added_ms <= 0.5", Measure{Value: 0.3, Interval: trials(math.Inf(-1), math.Inf(1), 3)}, results.Inconclusive, results.RuleInterval},
		{"rps >= 90", Measure{Value: 95, Interval: trials(91, 99, 6)}, results.Pass, results.RuleInterval},
		{"rps >= 90", Measure{Value: 85, Interval: trials(80, 89, 6)}, results.Fail, results.RuleInterval},
		// Plain values keep the point rule.
		{"p99_ms < 50", Measure{Value: 49}, results.Pass, results.RulePoint},
		{"p99_ms < 50", Measure{Value: 50}, results.Fail, results.RulePoint},
	} {
		e, err := Parse(tc.src)
		if err != nil {
			t.Fatal(err)
		}
		d := e.Decide(tc.m)
		if d.Verdict != tc.want || d.Rule != tc.rule {
			t.Errorf("%s with %+v: %s by %s (%s), want %s by %s", tc.src, tc.m, d.Verdict, d.Rule, d.Why, tc.want, tc.rule)
		}
	}
}

func TestCheckMeasuresMessages(t *testing.T) {
	m := Metrics{
		"success_rate": {Value: 2396.0 / 2400, Count: &results.Count{K: 2396, N: 2400}},
		"p50_added_ms": {Value: 0.55, Interval: results.NewInterval(0.48, 0.64, 0.95, 6)},
		"p99_added_ms": {Value: 0.3, Interval: results.NewInterval(math.Inf(-1), math.Inf(1), 0.95, 3)},
		"rss_slope":    {Value: 0.8, Interval: results.NewInterval(0.4, 1.3, 0.95, 10), Over: "the medians of 10 stretches"},
	}
	for _, tc := range []struct{ src, msg string }{
		{"success_rate >= 0.999", "INCONCLUSIVE [failover] success_rate >= 0.999: measured 0.9983 (2396 of 2400: misses 0.999, but by no more than chance allows in 2400: its one-sided 95 % upper bound is 0.9994)"},
		{"success_rate >= 0.998", "PASS [failover] success_rate >= 0.998: measured 0.9983 (2396 of 2400)"},
		{"success_rate >= 0.9995", "FAIL [failover] success_rate >= 0.9995: measured 0.9983 (2396 of 2400; even its one-sided 95 % upper bound 0.9994 misses 0.9995)"},
		{"p50_added_ms <= 0.5", "INCONCLUSIVE [failover] p50_added_ms <= 0.5: measured 0.55 (95 % CI [0.48, 0.64] over 6 trials: straddles 0.5; more trials would tell)"},
		{"p99_added_ms <= 1", "INCONCLUSIVE [failover] p99_added_ms <= 1: measured 0.3 (3 trials give no 95 % interval; it needs at least 6)"},
		{"rss_slope <= 1", "INCONCLUSIVE [failover] rss_slope <= 1: measured 0.8 (95 % CI [0.4, 1.3] over the medians of 10 stretches: straddles 1; a longer run would tell)"},
	} {
		a := CheckMeasures(tc.src, "failover", m)
		if a.Message != tc.msg {
			t.Errorf("CheckMeasures(%q):\n got %q\nwant %q", tc.src, a.Message, tc.msg)
		}
	}
	a := CheckMeasures("success_rate >= 0.999", "failover", m)
	if a.Count == nil || *a.Count != (results.Count{K: 2396, N: 2400}) || a.Rule != results.RuleBinomial || a.Interval == nil || a.Interval.Hi == nil || *a.Interval.Hi < 0.999 {
		t.Errorf("the record lacks the evidence: %+v", a)
	}
	a = CheckMeasures("p99_added_ms <= 1", "failover", m)
	if a.Interval == nil || a.Interval.Lo != nil || a.Interval.Hi != nil || a.Interval.Samples != 3 {
		t.Errorf("an unbounded interval must be recorded without bounds: %+v", a.Interval)
	}
}

// On a busy machine a latency FAIL stands only when it clears the limit by
// more than the machine's own noise; otherwise it is inconclusive.
func TestDecideBusyMachine(t *testing.T) {
	busy := "other processes used 1.34 of 2 CPUs"
	for _, tc := range []struct {
		src  string
		m    Measure
		want results.Verdict
		why  string
	}{
		// The bench on a loaded machine: [0.524, 18.9] is beyond 0.5, by
		// 0.024 ms, less than the direct path's own 0.18 ms spread.
		{"added_p50_ms <= 0.5", Measure{Value: 0.76, Interval: results.NewInterval(0.524, 18.9, 0.95, 6), Busy: busy, Margin: 0.18, MarginOf: "the direct path's spread"},
			results.Inconclusive, "95 % CI [0.524, 18.9] over 6 trials: none of it meets 0.5; but beyond 0.5 by only 0.024, within the machine's own noise (0.18, the direct path's spread) while it was busy: " + busy},
		// A proxy 1 ms slower is beyond any neighbour's noise.
		{"added_p50_ms <= 0.5", Measure{Value: 1.5, Interval: results.NewInterval(1.4, 1.7, 0.95, 6), Busy: busy, Margin: 0.18, MarginOf: "the direct path's spread"},
			results.Fail, ""},
		// Quiet: the rule of the interval alone.
		{"added_p50_ms <= 0.5", Measure{Value: 0.76, Interval: results.NewInterval(0.524, 18.9, 0.95, 6), Margin: 0.18}, results.Fail, ""},
		// A single run's absolute latency, against the load generator's
		// own lateness.
		{"p99_ms < 50", Measure{Value: 53, Busy: busy, Margin: 5.7, MarginOf: "the load generator's p99 lateness"}, results.Inconclusive, ""},
		{"p99_ms < 50", Measure{Value: 80, Busy: busy, Margin: 5.7, MarginOf: "the load generator's p99 lateness"}, results.Fail,
			"the machine was busy (" + busy + "), but this is beyond 50 by 30, more than its own noise (5.7, the load generator's p99 lateness)"},
		// A pass is a pass, busy or not.
		{"p99_ms < 50", Measure{Value: 20, Busy: busy, Margin: 5.7}, results.Pass, ""},
	} {
		e, _ := Parse(tc.src)
		d := e.Decide(tc.m)
		if d.Verdict != tc.want || (tc.why != "" && d.Why != tc.why) {
			t.Errorf("%s %+v: %s (%s), want %s (%s)", tc.src, tc.m, d.Verdict, d.Why, tc.want, tc.why)
		}
	}
}
