package results

import (
	"math"
	"testing"
)

// Reference values: the Clopper–Pearson bounds and Fisher p-values were
// computed with mpmath at 40 digits (regularized incomplete beta, bisection;
// hypergeometric sums), the Wilson and Newcombe ones are the worked
// examples of Newcombe (1998), Statistics in Medicine 17, 857–872 and 873–890.

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestRateBounds(t *testing.T) {
	for _, tc := range []struct {
		k, n       int64
		confidence float64
		lo, hi     float64
	}{
		{0, 10, 0.95, 0, 0.258865550893052}, // 1 − 0.05^(1/10)
		{10, 10, 0.95, 0.741134449106948, 1},
		{5, 10, 0.975, 0.187086028447399, 0.812913971552601}, // the two-sided 95 % interval of 5/10
		{3, 7, 0.95, 0.128756392804243, 0.774678415967552},
		// failover-service's failover phase: 2 400 requests, SLO 0.999.
		{2398, 2400, 0.95, 0.997379099363964, 0.999851912812488},
		{2396, 2400, 0.95, 0.996190127158358, 0.999430506777474}, // 4 × 502: not shown below 0.999
		{2395, 2400, 0.95, 0.995624598380148, 0.999178756911447},
		{2394, 2400, 0.95, 0.995071672831525, 0.998910701889638}, // 6 × 502: shown below 0.999
		{7990, 8000, 0.95, 0.997880645203437, 0.999321672702},
	} {
		lo, hi := RateLower(tc.k, tc.n, tc.confidence), RateUpper(tc.k, tc.n, tc.confidence)
		if !near(lo, tc.lo, 1e-9) || !near(hi, tc.hi, 1e-9) {
			t.Errorf("%d of %d at %v: bounds [%.15f, %.15f], want [%.15f, %.15f]", tc.k, tc.n, tc.confidence, lo, hi, tc.lo, tc.hi)
		}
	}
	for _, bad := range [][2]int64{{0, 0}, {-1, 5}, {6, 5}} {
		if !math.IsNaN(RateLower(bad[0], bad[1], 0.95)) || !math.IsNaN(RateUpper(bad[0], bad[1], 0.95)) {
			t.Errorf("%d of %d: want NaN bounds", bad[0], bad[1])
		}
	}
}

// Large counts converge and stay ordered around the observed rate.
func TestRateBoundsLarge(t *testing.T) {
	const k, n = 999_000, 1_000_000
	lo, hi := RateLower(k, n, 0.95), RateUpper(k, n, 0.95)
	// Normal approximation: 0.999 ± 1.645 × sqrt(0.999 × 0.001 / 1e6).
	half := 1.6449 * math.Sqrt(0.999*0.001/n)
	if !(lo < 0.999 && 0.999 < hi) || !near(lo, 0.999-half, 3e-6) || !near(hi, 0.999+half, 3e-6) {
		t.Errorf("bounds [%v, %v], want about 0.999 ∓ %v", lo, hi, half)
	}
}

func TestWilsonAndNewcombe(t *testing.T) {
	for _, tc := range []struct {
		k, n   int64
		lo, hi float64
	}{
		{0, 10, 0, 0.2775},
		{15, 148, 0.0624, 0.1605},
		{81, 263, 0.2553, 0.3662},
	} {
		lo, hi := Wilson(tc.k, tc.n, 0.95)
		if !near(lo, tc.lo, 5e-5) || !near(hi, tc.hi, 5e-5) {
			t.Errorf("Wilson(%d, %d) = [%.4f, %.4f], want [%.4f, %.4f]", tc.k, tc.n, lo, hi, tc.lo, tc.hi)
		}
	}
	// Newcombe's table II, example (a): 56/70 − 48/80 = 0.2, method 10.
	d, lo, hi := RateDiff(48, 80, 56, 70, 0.95)
	if !near(d, 0.2, 1e-12) || !near(lo, 0.0524, 5e-5) || !near(hi, 0.3339, 5e-5) {
		t.Errorf("RateDiff = %.4f [%.4f, %.4f], want 0.2 [0.0524, 0.3339]", d, lo, hi)
	}
	// Example (h): 0/10 − 0/20 = 0, [−0.1611, 0.2775].
	d, lo, hi = RateDiff(0, 20, 0, 10, 0.95)
	if d != 0 || !near(lo, -0.1611, 5e-5) || !near(hi, 0.2775, 5e-5) {
		t.Errorf("RateDiff(0/20, 0/10) = %.4f [%.4f, %.4f], want 0 [-0.1611, 0.2775]", d, lo, hi)
	}
	if d, _, _ := RateDiff(0, 0, 1, 2, 0.95); !math.IsNaN(d) {
		t.Errorf("no requests on one side: want NaN, got %v", d)
	}
}

func TestFisherExact(t *testing.T) {
	for _, tc := range []struct {
		k1, n1, k2, n2 int64
		p              float64
	}{
		{3, 4, 1, 4, 0.485714285714},        // Fisher's lady tasting tea
		{6, 2400, 0, 2400, 0.0311523844825}, // 6 × 502 against none: a change
		{0, 2400, 6, 2400, 0.0311523844825}, // symmetric
		{6, 12000, 0, 12000, 0.0312304703779},
		{4, 2400, 1, 2400, 0.37473944762}, // 4 against 1: cannot tell
		{30, 1000, 12, 1000, 0.00728795350717},
		{0, 100, 0, 100, 1},
	} {
		if p := FisherExact(tc.k1, tc.n1, tc.k2, tc.n2); !near(p, tc.p, 1e-9) {
			t.Errorf("FisherExact(%d/%d, %d/%d) = %.12f, want %.12f", tc.k1, tc.n1, tc.k2, tc.n2, p, tc.p)
		}
	}
	if p := FisherExact(1, 0, 0, 5); p != 1 {
		t.Errorf("invalid counts: p = %v, want 1", p)
	}
}
