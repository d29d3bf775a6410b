package spec

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-mesh/skiff/faultinject/httpfault"

	"go.yaml.in/yaml/v3"
)

// Bound is one end of a phase: an offset from time 0 (the end of the
// warm-up), or End, the end of the run whatever its duration. Its text form
// is a Go duration ("10s") or "end". The zero value is time 0.
type Bound struct {
	// Offset is the time from the end of the warm-up; unused when End.
	Offset time.Duration
	// End marks the end of the run.
	End bool
}

// End is the Bound at the end of the run.
var End = Bound{End: true}

// At returns the Bound at offset d.
func At(d time.Duration) Bound { return Bound{Offset: d} }

// Resolve returns the offset of b in a run that lasts duration.
func (b Bound) Resolve(duration time.Duration) time.Duration {
	if b.End {
		return duration
	}
	return b.Offset
}

// String returns "end" or the offset as a Go duration.
func (b Bound) String() string {
	if b.End {
		return "end"
	}
	return b.Offset.String()
}

// MarshalText implements encoding.TextMarshaler with the String form.
func (b Bound) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler: "end" or a duration
// with a unit ("0" is also accepted).
func (b *Bound) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "end" {
		*b = End
		return nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("%w, or end", err)
	}
	*b = Bound{Offset: d}
	return nil
}

func (b Bound) scale(k float64) Bound {
	if b.End {
		return b
	}
	return Bound{Offset: scale(b.Offset, k)}
}

// parseDuration reads a Go duration and explains the usual mistakes.
func parseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return 0, fmt.Errorf("%s has no unit: write a duration like %ss or %sms", strconv.Quote(s), s, s)
		}
		return 0, fmt.Errorf("%s is not a duration: write one like 10s, 1.5s or 200ms", strconv.Quote(s))
	}
	return d, nil
}

// DelayShare delays Percent % of requests by Delay: skiff-demo's type,
// since the scenario's behaviour is the demo's.
type DelayShare = httpfault.DelayShare

// Distribution is a latency distribution in skiff-demo's syntax:
// "1ms:50,10ms:1" delays half of the requests by 1 ms, 1 % by 10 ms and the
// rest not at all; a bare "2ms" delays every request. Percentages add up to
// at most 100. Nil never delays; its text form is "0s". It is
// skiff-demo's Delays, so both read and write the same text.
type Distribution = httpfault.Delays

// ParseDistribution parses the text form of a Distribution; "", "0s" and
// lists of zero delays give nil.
func ParseDistribution(s string) (Distribution, error) {
	var d Distribution
	if err := d.UnmarshalText([]byte(s)); err != nil {
		return nil, err
	}
	return d, nil
}

// MarshalYAML writes the phases as a mapping from name to {from, to}, in
// order.
func (ps Phases) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, p := range ps {
		var v yaml.Node
		if err := v.Encode(p); err != nil {
			return nil, err
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: p.Name}, &v)
	}
	return n, nil
}

// UnmarshalYAML reads the mapping form of MarshalYAML. Parse does not use
// it (it decodes with positions and strict field checks); it is here so
// that yaml.Unmarshal round-trips a Scenario.
func (ps *Phases) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return errors.New("phases: want a mapping from phase name to {from, to}")
	}
	out := make(Phases, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		var p Phase
		if err := n.Content[i+1].Decode(&p); err != nil {
			return err
		}
		p.Name = n.Content[i].Value
		out = append(out, p)
	}
	*ps = out
	return nil
}
