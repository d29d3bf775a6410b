// Package assert parses and evaluates the SLO assertions of a scenario,
// k6-threshold style, over the metrics the runner measured for a phase.
//
// # Grammar
//
//	assertion := metric op number
//	           | metric "within" number ("±" | "+-") number
//	metric    := ident [ "(" arg ")" ]
//	op        := "<" | "<=" | ">" | ">=" | "==" | "!="
//	ident     := letter { letter | digit | "_" }        (letter includes "_")
//	arg       := one or more characters other than "(", ")" and white space
//	number    := [sign] digits ["." digits] [exponent]   (also ".5", "5.")
//
// Spaces are optional around operators and inside the parentheses;
// "within" must be separated from the metric and the number. Examples:
//
//	success_rate >= 0.999
//	p99_added_ms < 1
//	share(echo-2) >= 0.2
//	split_share(v2) within 0.10±0.02
//
// A metric with an argument is looked up by its canonical key, without
// spaces: share( echo-2 ) is the key "share(echo-2)". "within" holds when
// the value lies in [center−tolerance, center+tolerance], bounds included
// (with a relative slack of 1e-9 so that 0.08 is within 0.10±0.02 despite
// binary floating point).
//
// # Verdicts
//
// An assertion passes, fails, or is inconclusive; how depends on the
// evidence its metric comes with (Measure):
//
//   - A rate with its count (success_rate: K successful of N due) fails only
//     when a one-sided 95 % Clopper–Pearson bound shows the rate is on the
//     wrong side of the threshold (for ">= 0.999": its upper bound is below
//     0.999); passes when the measured rate meets the threshold; and is
//     inconclusive when the rate misses the threshold by no more than chance
//     allows in a sample of N. So 4 failures of 2 400 against 0.999 (2
//     allowed) is inconclusive, 6 fail, and 1 of 10 fails too: a small
//     sample does not fail on noise, and a clearly bad run never passes.
//   - A figure estimated over interleaved trials, with its 95 % interval
//     (p50_added_ms: the median over trials of meshed minus direct) passes
//     when the whole interval meets the threshold, fails when none of it
//     does, and is inconclusive when the interval straddles the threshold or
//     is unbounded (fewer than MinTrialsFor95 trials).
//   - Anything else, and "==" or "!=" always, is judged by its value.
//
// A metric without data (NaN) fails. On a machine measured busy apart from
// the run (Measure.Busy), a latency that fails by no more than the machine's
// own noise (Measure.Margin: the direct path's spread over trials, or the
// load generator's lateness) is inconclusive instead: the run cannot tell
// the mesh's latency from a neighbour's. A failure that clears the noise
// stands, and rates and memory are never excused.
package assert

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/skiff-mesh/skiff/results"
)

// Op is a comparison operator.
type Op string

// Operators.
const (
	LT     Op = "<"
	LE     Op = "<="
	GT     Op = ">"
	GE     Op = ">="
	EQ     Op = "=="
	NE     Op = "!="
	Within Op = "within"
)

// Expr is a parsed assertion. The zero Expr is not valid; get one from
// Parse.
type Expr struct {
	// Metric is the canonical metric key: "p99_ms", "share(echo-2)".
	Metric string
	Op     Op
	// Threshold is the number on the right; for Within, the center.
	Threshold float64
	// Tolerance is Within's half-width (>= 0); 0 for other operators.
	Tolerance float64
}

// String writes e in canonical form, which Parse reads back to e.
func (e Expr) String() string {
	n := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	if e.Op == Within {
		return fmt.Sprintf("%s within %s±%s", e.Metric, n(e.Threshold), n(e.Tolerance))
	}
	return fmt.Sprintf("%s %s %s", e.Metric, e.Op, n(e.Threshold))
}

// relSlack absorbs decimal-to-binary rounding at the edges of a Within
// range. The other operators compare exactly.
const relSlack = 1e-9

// Holds reports whether v satisfies e. NaN satisfies nothing (not even !=):
// a metric without data must not pass.
func (e Expr) Holds(v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	switch e.Op {
	case LT:
		return v < e.Threshold
	case LE:
		return v <= e.Threshold
	case GT:
		return v > e.Threshold
	case GE:
		return v >= e.Threshold
	case EQ:
		return v == e.Threshold
	case NE:
		return v != e.Threshold
	case Within:
		slack := relSlack * max(math.Abs(e.Threshold), e.Tolerance, 1e-300)
		return math.Abs(v-e.Threshold) <= e.Tolerance+slack
	}
	return false
}

// SyntaxError is a parse error: what was wrong and where.
type SyntaxError struct {
	Expr string
	// Col is the 1-based column, in characters, where the problem is.
	Col int
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("assert: %q, column %d: %s", e.Expr, e.Col, e.Msg)
}

// Parse parses one assertion (see the package documentation).
func Parse(src string) (Expr, error) {
	p := &parser{src: src}
	e, err := p.parse()
	if err != nil {
		return Expr{}, err
	}
	return e, nil
}

type parser struct {
	src string
	pos int // byte offset
}

func (p *parser) fail(at int, format string, args ...any) error {
	return &SyntaxError{Expr: p.src, Col: utf8.RuneCountInString(p.src[:at]) + 1, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) skipSpace() {
	for p.pos < len(p.src) {
		r, n := utf8.DecodeRuneInString(p.src[p.pos:])
		if !unicode.IsSpace(r) {
			return
		}
		p.pos += n
	}
}

// found describes what is at the current position, for error messages.
func (p *parser) found() string {
	if p.pos >= len(p.src) {
		return "the end"
	}
	r, _ := utf8.DecodeRuneInString(p.src[p.pos:])
	return strconv.QuoteRune(r)
}

func isIdentStart(r rune) bool { return r == '_' || unicode.IsLetter(r) }
func isIdentPart(r rune) bool  { return isIdentStart(r) || unicode.IsDigit(r) }

func (p *parser) parse() (Expr, error) {
	var e Expr
	p.skipSpace()
	metric, err := p.metric()
	if err != nil {
		return e, err
	}
	e.Metric = metric
	p.skipSpace()
	if e.Op, err = p.op(); err != nil {
		return e, err
	}
	p.skipSpace()
	if e.Threshold, err = p.number(); err != nil {
		return e, err
	}
	if e.Op == Within {
		p.skipSpace()
		switch {
		case strings.HasPrefix(p.src[p.pos:], "±"):
			p.pos += len("±")
		case strings.HasPrefix(p.src[p.pos:], "+-"):
			p.pos += len("+-")
		default:
			return e, p.fail(p.pos, `expected "±" or "+-" and a tolerance after the center, found %s`, p.found())
		}
		p.skipSpace()
		tolAt := p.pos
		if e.Tolerance, err = p.number(); err != nil {
			return e, err
		}
		if e.Tolerance < 0 {
			return e, p.fail(tolAt, "tolerance %v is negative", e.Tolerance)
		}
	}
	p.skipSpace()
	if p.pos < len(p.src) {
		return e, p.fail(p.pos, "unexpected %s after the assertion", p.found())
	}
	return e, nil
}

// metric reads ident ["(" arg ")"] and returns its canonical key.
func (p *parser) metric() (string, error) {
	start := p.pos
	for p.pos < len(p.src) {
		r, n := utf8.DecodeRuneInString(p.src[p.pos:])
		if !(isIdentPart(r) && (p.pos > start || isIdentStart(r))) {
			break
		}
		p.pos += n
	}
	if p.pos == start {
		return "", p.fail(start, "expected a metric name (letters, digits, '_'), found %s", p.found())
	}
	name := p.src[start:p.pos]
	if name == string(Within) {
		return "", p.fail(start, `expected a metric name, found the operator "within"`)
	}
	save := p.pos
	p.skipSpace()
	if p.pos >= len(p.src) || p.src[p.pos] != '(' {
		p.pos = save
		return name, nil
	}
	open := p.pos
	p.pos++
	p.skipSpace()
	argAt := p.pos
	for p.pos < len(p.src) {
		r, n := utf8.DecodeRuneInString(p.src[p.pos:])
		if r == '(' || r == ')' || unicode.IsSpace(r) {
			break
		}
		p.pos += n
	}
	arg := p.src[argAt:p.pos]
	if arg == "" {
		return "", p.fail(argAt, "expected an argument inside %s( ), found %s", name, p.found())
	}
	p.skipSpace()
	if p.pos >= len(p.src) || p.src[p.pos] != ')' {
		return "", p.fail(p.pos, `expected ")" to close the "(" at column %d, found %s`, utf8.RuneCountInString(p.src[:open])+1, p.found())
	}
	p.pos++
	return name + "(" + arg + ")", nil
}

func (p *parser) op() (Op, error) {
	rest := p.src[p.pos:]
	for _, op := range []Op{LE, GE, EQ, NE, LT, GT} { // two-character operators first
		if strings.HasPrefix(rest, string(op)) {
			p.pos += len(op)
			return op, nil
		}
	}
	if strings.HasPrefix(rest, string(Within)) {
		after := p.pos + len(Within)
		if after < len(p.src) {
			r, _ := utf8.DecodeRuneInString(p.src[after:])
			if !unicode.IsSpace(r) {
				return "", p.fail(after, `expected a space after "within", found %s`, strconv.QuoteRune(r))
			}
		}
		p.pos = after
		return Within, nil
	}
	if rest != "" && p.src[p.pos] == '=' {
		return "", p.fail(p.pos, `"=" is not an operator; use "==" (or <, <=, >, >=, !=, within)`)
	}
	return "", p.fail(p.pos, "expected an operator (<, <=, >, >=, ==, !=, within), found %s", p.found())
}

// number reads a decimal number; Inf, NaN, hex and '_' are not numbers here.
func (p *parser) number() (float64, error) {
	start := p.pos
	i := p.pos
	if i < len(p.src) && (p.src[i] == '+' || p.src[i] == '-') { // sign
		i++
	}
	digits := 0
	for i < len(p.src) && isDigit(p.src[i]) {
		i++
		digits++
	}
	if i < len(p.src) && p.src[i] == '.' {
		i++
		for i < len(p.src) && isDigit(p.src[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, p.fail(start, "expected a number, found %s", p.found())
	}
	if i < len(p.src) && (p.src[i] == 'e' || p.src[i] == 'E') {
		j := i + 1
		if j < len(p.src) && (p.src[j] == '+' || p.src[j] == '-') {
			j++
		}
		k := j
		for k < len(p.src) && isDigit(p.src[k]) {
			k++
		}
		if k == j {
			return 0, p.fail(i, "exponent without digits")
		}
		i = k
	}
	v, err := strconv.ParseFloat(p.src[start:i], 64)
	if err != nil { // out of range
		return 0, p.fail(start, "number %q is out of range", p.src[start:i])
	}
	if i < len(p.src) {
		if r, _ := utf8.DecodeRuneInString(p.src[i:]); isIdentPart(r) {
			return 0, p.fail(i, "unexpected %s after the number %s (units are part of the metric name, as in p99_ms)", strconv.QuoteRune(r), p.src[start:i])
		}
	}
	p.pos = i
	return v, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Eval judges e over the metrics measured for phase, by value alone
// (results.RulePoint; EvalMeasures takes counts and intervals too). It
// returns the assertion with its measured value, verdict and message
// ("FAIL [during_fault] success_rate >= 0.999: measured 0.9871"). src is
// the assertion as written, for the record; empty means e.String(). A
// metric missing from metrics is an error naming the metrics there are. A
// NaN value (no data) fails; a NaN or infinite value leaves Measured nil.
func Eval(e Expr, src, phase string, metrics map[string]float64) (results.Assertion, error) {
	return EvalMeasures(e, src, phase, Values(metrics))
}

// Check parses src and evaluates it by value alone, never failing: a
// parse error or an unknown metric gives an assertion with Verdict
// results.Error and the error as its Message. CheckMeasures is the same
// over Metrics, which is what the runner calls for each scenario
// assertion.
func Check(src, phase string, metrics map[string]float64) results.Assertion {
	return CheckMeasures(src, phase, Values(metrics))
}

// formatMeasured writes v with 4 significant figures, or more when fewer
// would hide which side of a bound it is on (0.99899 against >= 0.999
// must not print as 0.999).
func formatMeasured(v float64, e Expr) string {
	bounds := []float64{e.Threshold}
	if e.Op == Within {
		bounds = []float64{e.Threshold - e.Tolerance, e.Threshold + e.Tolerance}
	}
	for prec := 4; prec < 17; prec++ {
		s := strconv.FormatFloat(v, 'g', prec, 64)
		r, _ := strconv.ParseFloat(s, 64)
		same := true
		for _, b := range bounds {
			if cmpf(r, b) != cmpf(v, b) {
				same = false
			}
		}
		if same {
			return s
		}
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func cmpf(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func formatNum(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
