package scenarios

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Series selects samples of one metric in a sidecar's /metrics (the
// Prometheus text exposition format): those of the metric Name whose
// labels include every one of Labels with its value. Pod.Sums takes
// series written as ParseSeries reads them. The zero Series matches
// nothing.
type Series struct {
	Name   string
	Labels []Label
}

// Label is a label matcher of a Series: the label Name with Value.
type Label struct{ Name, Value string }

// ParseSeries reads a series as it is written in an assertion or a Sums
// call: a metric name, alone (`tcp_open_total`: every sample of it) or
// followed by label matchers in braces (`protocol_detect_total{direction=
// "outbound",protocol="tls"}`). Names are [a-zA-Z_][a-zA-Z0-9_]*; a value
// is double-quoted, with \", \\ and \n escaped as in the text format. A
// label may be matched once.
func ParseSeries(s string) (Series, error) {
	name, rest, braces := strings.Cut(s, "{")
	if !validName(name) {
		return Series{}, fmt.Errorf("series %q: %q is not a metric name ([a-zA-Z_][a-zA-Z0-9_]*)", s, name)
	}
	out := Series{Name: name}
	if !braces {
		return out, nil
	}
	labels, n, err := parseLabels(rest)
	if err != nil {
		return Series{}, fmt.Errorf("series %q: %w", s, err)
	}
	if n != len(rest) {
		return Series{}, fmt.Errorf("series %q: %q after the closing brace", s, rest[n:])
	}
	for i, l := range labels {
		for _, prev := range labels[:i] {
			if prev.Name == l.Name {
				return Series{}, fmt.Errorf("series %q: label %q matched twice", s, l.Name)
			}
		}
	}
	out.Labels = labels
	return out, nil
}

// String writes s as ParseSeries reads it.
func (s Series) String() string {
	if len(s.Labels) == 0 {
		return s.Name
	}
	var b strings.Builder
	b.WriteString(s.Name + "{")
	for i, l := range s.Labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Name + "=" + quote(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// Match reads one line of a /metrics page and reports the sample's value
// when the line is a sample of s: the metric's name, then labels that
// include every matcher of s, then the value (and perhaps a timestamp).
// Comments, other metrics and malformed lines do not match.
func (s Series) Match(line string) (float64, bool) {
	if s.Name == "" {
		return 0, false
	}
	rest, ok := strings.CutPrefix(line, s.Name)
	if !ok || rest == "" {
		return 0, false
	}
	var labels []Label
	switch rest[0] {
	case ' ':
	case '{':
		var n int
		var err error
		if labels, n, err = parseLabels(rest[1:]); err != nil {
			return 0, false
		}
		rest = rest[1+n:]
		if rest == "" || rest[0] != ' ' {
			return 0, false
		}
	default:
		return 0, false // another metric whose name starts with s's
	}
	for _, want := range s.Labels {
		found := false
		for _, l := range labels {
			if l == want {
				found = true
				break
			}
		}
		if !found {
			return 0, false
		}
	}
	value, _, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
	v, err := strconv.ParseFloat(value, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// parseLabels reads `name="value",…}` (after the opening brace) and
// returns the labels and the bytes read, the closing brace included. A
// trailing comma before the brace is allowed, as in the text format.
func parseLabels(s string) ([]Label, int, error) {
	var out []Label
	i := 0
	for {
		if i < len(s) && s[i] == '}' {
			return out, i + 1, nil
		}
		j := i
		for j < len(s) && s[j] != '=' {
			j++
		}
		if j == len(s) || !validName(s[i:j]) {
			return nil, 0, fmt.Errorf("a label name at %q", s[i:min(j, len(s))])
		}
		value, n, err := unquote(s[j+1:])
		if err != nil {
			return nil, 0, fmt.Errorf("label %s: %w", s[i:j], err)
		}
		out = append(out, Label{Name: s[i:j], Value: value})
		i = j + 1 + n
		switch {
		case i < len(s) && s[i] == ',':
			i++
		case i < len(s) && s[i] == '}':
		default:
			return nil, 0, errors.New("labels not closed by }")
		}
	}
}

// unquote reads a double-quoted value with the text format's escapes and
// returns it with the bytes read.
func unquote(s string) (string, int, error) {
	if s == "" || s[0] != '"' {
		return "", 0, errors.New("the value is not double-quoted")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			if i+1 == len(s) {
				return "", 0, errors.New("the value ends in a backslash")
			}
			i++
			switch s[i] {
			case '\\', '"':
				b.WriteByte(s[i])
			case 'n':
				b.WriteByte('\n')
			default:
				return "", 0, fmt.Errorf("unknown escape \\%c", s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("the value's quote is not closed")
}

func quote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}
