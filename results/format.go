package results

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Number formats shared by summary.md and report.html.

// fmtMs formats milliseconds with three significant figures, at most three
// decimals (µs resolution): 0.412, 3.27, 41.2, 1234.
func fmtMs(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a < 10:
		return strconv.FormatFloat(v, 'f', min(3, max(0, 2-int(math.Floor(math.Log10(a))))), 64)
	case a < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

// fmtPct formats a rate in [0, 1] as a percentage with up to three
// decimals, never rounding a rate below 1 up to "100 %".
func fmtPct(v float64) string {
	for prec := 3; prec <= 8; prec++ {
		s := strings.TrimRight(strings.TrimRight(strconv.FormatFloat(v*100, 'f', prec, 64), "0"), ".")
		if v >= 1 || s != "100" {
			return s + " %"
		}
	}
	return strconv.FormatFloat(v*100, 'g', -1, 64) + " %"
}

// fmtNum formats a general measurement: shortest form, at most 4
// significant figures.
func fmtNum(v float64) string {
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// fmtMB formats MiB with one decimal.
func fmtMB(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// fmtCounts lists a count map by count, largest first: "200×4990, 503×10".
func fmtCounts(m map[string]int64) string {
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// verdictMark is the one-character verdict for tables.
func verdictMark(v Verdict) string {
	switch v {
	case Pass:
		return "✓"
	case Fail:
		return "✗"
	case Inconclusive:
		return "?"
	default:
		return "⚠"
	}
}

// assertionMark is an assertion's verdict mark, and "known" after it for
// a known failure that did not decide the run.
func assertionMark(a Assertion) string {
	if !a.Counts() {
		return verdictMark(a.Verdict) + " known"
	}
	return verdictMark(a.Verdict)
}

// verdictWord is the verdict in capitals, "NOT JUDGED" for the zero value.
func verdictWord(v Verdict) string {
	if v == "" {
		return "NOT JUDGED"
	}
	return strings.ToUpper(string(v))
}

// measured formats an assertion's measured value, "—" when there is none.
func measured(a Assertion) string {
	if a.Measured == nil {
		return "—"
	}
	return strconv.FormatFloat(*a.Measured, 'g', 6, 64)
}

// duration is the run's length in seconds, 0 when the times are unset.
func (r *Result) duration() float64 {
	if r.Start.IsZero() || r.End.Before(r.Start) {
		return 0
	}
	return r.End.Sub(r.Start).Seconds()
}
