package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxErrors bounds the problems one Parse reports; a file with more gets a
// last line saying how many were left out.
const maxErrors = 100

// Error is one problem found in a scenario: where it is and what is wrong.
type Error struct {
	// File is the file name given to Parse; empty for a Scenario built in Go.
	File string
	// Line and Column locate the offending YAML node, both from 1. Zero when
	// unknown: a Scenario built in Go, or a YAML syntax error the parser
	// could not place.
	Line, Column int
	// Path names the offending field, e.g. "topology.services[0].replicas";
	// empty for the document as a whole.
	Path string
	// Msg says what is wrong and, where it helps, what to write instead. It
	// is a complete sentence fragment that already names Path when it
	// matters, e.g. `topology.services[0].replicas: must be at least 1, got 0`.
	Msg string
}

// Error formats e as "file:line:col: msg", dropping the parts that are
// unknown ("file:line: msg", "file: msg", "msg").
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
		if e.Column > 0 {
			b.WriteString(strconv.Itoa(e.Column))
			b.WriteByte(':')
		}
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one scenario, in file order. Parse,
// Load and Validate return a non-empty Errors as their error; use errors.As
// to get at the individual problems.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems, for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// errorList accumulates problems with their positions.
type errorList struct {
	file string
	errs Errors
	more int // problems dropped past maxErrors
}

// add records one problem. Newlines in msg are flattened so that each
// problem stays on one line of Errors.Error.
func (l *errorList) add(p pos, path, msg string) {
	if len(l.errs) >= maxErrors {
		l.more++
		return
	}
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
	l.errs = append(l.errs, &Error{File: l.file, Line: p.line, Column: p.col, Path: path, Msg: msg})
}

// err returns the problems sorted by position (stable, so problems on one
// node keep the order they were found in), or nil.
func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	es := slices.Clone(l.errs)
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	if l.more > 0 {
		es = append(es, &Error{File: l.file, Msg: fmt.Sprintf("… and %d more problems", l.more)})
	}
	return es
}

// suggest returns the candidate closest to word when it is within edit
// distance 2 (case-insensitive), or "".
func suggest(word string, candidates []string) string {
	best, bestD := "", 3
	lw := strings.ToLower(word)
	for _, c := range candidates {
		if d := levenshtein(lw, strings.ToLower(c), bestD); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// didYouMean returns `; did you mean "x"?` for the closest candidate, or "".
func didYouMean(word string, candidates []string) string {
	if s := suggest(word, candidates); s != "" && s != word {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return ""
}

// levenshtein returns the edit distance between a and b, or limit when it is
// at least limit (so long inputs cost little).
func levenshtein(a, b string, limit int) int {
	ra, rb := []rune(a), []rune(b)
	if abs(len(ra)-len(rb)) >= limit {
		return limit
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(rb)], limit)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// quoteList formats names as `"a", "b" and "c"`.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	switch len(q) {
	case 0:
		return "none"
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
