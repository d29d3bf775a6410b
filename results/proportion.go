package results

import (
	"math"
)

// Statistics of counts: a rate measured as k events out of n (successful
// requests of those due), its confidence bounds, and tests of two such
// rates against each other. The assertions (results/assert), the bench
// gate and Compare use them, so that a rate from a small sample is judged
// by what its count can show, not by its bare ratio.

// RateLower is the one-sided Clopper–Pearson lower confidence bound of a
// rate observed as k events out of n: the smallest p for which seeing k or
// more events has probability at least 1−confidence. It is exact (no normal
// approximation), so it holds for small n and for k near 0 or n. It is 0
// when k is 0, and NaN when n is 0 or k is outside [0, n].
func RateLower(k, n int64, confidence float64) float64 {
	if n <= 0 || k < 0 || k > n {
		return math.NaN()
	}
	if k == 0 {
		return 0
	}
	alpha := 1 - confidence
	// P(X >= k | p) = I_p(k, n-k+1) grows with p.
	return bisect(func(p float64) bool { return regIncBeta(float64(k), float64(n-k+1), p) < alpha })
}

// RateUpper is the one-sided Clopper–Pearson upper confidence bound of a
// rate observed as k events out of n: the largest p for which seeing k or
// fewer events has probability at least 1−confidence. It is 1 when k is n,
// and NaN when n is 0 or k is outside [0, n].
func RateUpper(k, n int64, confidence float64) float64 {
	if n <= 0 || k < 0 || k > n {
		return math.NaN()
	}
	if k == n {
		return 1
	}
	alpha := 1 - confidence
	// P(X <= k | p) = I_{1-p}(n-k, k+1) falls as p grows.
	return bisect(func(p float64) bool { return regIncBeta(float64(n-k), float64(k+1), 1-p) > alpha })
}

// bisect returns the boundary in [0, 1] where below turns from true to
// false; below must be monotone.
func bisect(below func(p float64) bool) float64 {
	lo, hi := 0.0, 1.0
	for range 100 {
		mid := (lo + hi) / 2
		if mid == lo || mid == hi {
			break
		}
		if below(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// Wilson is the Wilson score interval of k events out of n at a two-sided
// confidence level. It is NaN, NaN when n is 0.
func Wilson(k, n int64, confidence float64) (lo, hi float64) {
	if n <= 0 || k < 0 || k > n {
		return math.NaN(), math.NaN()
	}
	z := normalQuantile(1 - (1-confidence)/2)
	nf := float64(n)
	p := float64(k) / nf
	den := 1 + z*z/nf
	center := (p + z*z/(2*nf)) / den
	half := z / den * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf))
	lo, hi = max(0, center-half), min(1, center+half)
	if k == 0 {
		lo = 0
	}
	if k == n {
		hi = 1
	}
	return lo, hi
}

// RateDiff is the difference p2−p1 of two rates (k1 of n1, then k2 of n2)
// with Newcombe's hybrid score interval at a two-sided confidence level
// (Newcombe 1998, method 10: it combines the two Wilson intervals and,
// unlike the normal approximation, behaves at 0 and 1 and with few
// events). All three are NaN when either n is 0.
func RateDiff(k1, n1, k2, n2 int64, confidence float64) (diff, lo, hi float64) {
	if n1 <= 0 || n2 <= 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	p1, p2 := float64(k1)/float64(n1), float64(k2)/float64(n2)
	l1, u1 := Wilson(k1, n1, confidence)
	l2, u2 := Wilson(k2, n2, confidence)
	diff = p2 - p1
	lo = diff - math.Sqrt((p2-l2)*(p2-l2)+(u1-p1)*(u1-p1))
	hi = diff + math.Sqrt((u2-p2)*(u2-p2)+(p1-l1)*(p1-l1))
	return diff, lo, hi
}

// FisherExact is the two-sided p-value of Fisher's exact test that two
// rates, k1 of n1 and k2 of n2, are the same: the probability, with the
// margins fixed, of a table no more likely than the one observed. It is
// exact for any counts, so 6 errors out of 2 400 against none out of 2 400
// is judged by the counts themselves (p ≈ 0.031), not by a ratio. It is 1
// when either n is 0.
func FisherExact(k1, n1, k2, n2 int64) float64 {
	if n1 <= 0 || n2 <= 0 || k1 < 0 || k2 < 0 || k1 > n1 || k2 > n2 {
		return 1
	}
	// Hypergeometric: x events in the first row, given K events in all
	// and N draws.
	N, K := n1+n2, k1+k2
	lo, hi := max(0, n1-(N-K)), min(K, n1)
	logP := func(x int64) float64 {
		return lchoose(K, x) + lchoose(N-K, n1-x) - lchoose(N, n1)
	}
	obs := logP(k1)
	// Tables "as or less likely" than the observed one, with a relative
	// tolerance for rounding (as R's fisher.test does).
	limit := obs + math.Log1p(1e-7)
	var p float64
	for x := lo; x <= hi; x++ {
		if lp := logP(x); lp <= limit {
			p += math.Exp(lp)
		}
	}
	return min(1, p)
}

// lchoose is log(n choose k).
func lchoose(n, k int64) float64 {
	a, _ := math.Lgamma(float64(n) + 1)
	b, _ := math.Lgamma(float64(k) + 1)
	c, _ := math.Lgamma(float64(n-k) + 1)
	return a - b - c
}

// normalQuantile is the standard normal distribution's quantile function.
func normalQuantile(p float64) float64 {
	return math.Sqrt2 * math.Erfinv(2*p-1)
}

// regIncBeta is the regularized incomplete beta function I_x(a, b), by the
// continued fraction of Numerical Recipes (betai/betacf, modified Lentz),
// using the symmetry I_x(a,b) = 1 − I_{1−x}(b,a) where the fraction
// converges faster. It is accurate to about 1e-12 for the a, b of request
// counts (up to millions).
func regIncBeta(a, b, x float64) float64 {
	switch {
	case x <= 0:
		return 0
	case x >= 1:
		return 1
	}
	la, _ := math.Lgamma(a + b)
	lb, _ := math.Lgamma(a)
	lc, _ := math.Lgamma(b)
	front := math.Exp(la - lb - lc + a*math.Log(x) + b*math.Log1p(-x))
	if x < (a+1)/(a+b+2) {
		return front * betaCF(a, b, x) / a
	}
	return 1 - front*betaCF(b, a, 1-x)/b
}

func betaCF(a, b, x float64) float64 {
	const (
		eps   = 1e-15
		tiny  = 1e-300
		maxIt = 100_000
	)
	qab, qap, qam := a+b, a+1, a-1
	c, d := 1.0, 1-qab*x/qap
	if math.Abs(d) < tiny {
		d = tiny
	}
	d = 1 / d
	h := d
	for m := 1; m <= maxIt; m++ {
		fm := float64(m)
		m2 := 2 * fm
		aa := fm * (b - fm) * x / ((qam + m2) * (a + m2))
		d = 1 + aa*d
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = 1 + aa/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		h *= d * c
		aa = -(a + fm) * (qab + fm) * x / ((a + m2) * (qap + m2))
		d = 1 + aa*d
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = 1 + aa/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < eps {
			break
		}
	}
	return h
}
