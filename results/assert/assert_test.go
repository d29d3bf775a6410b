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
