package loadgen

import (
	"fmt"
	"math"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Rate shapes understood by Rate.Shape.
const (
	ShapeConstant = "constant"
	ShapeRamp     = "ramp"
	ShapeSteps    = "steps"
)

// DefaultRate is the request rate, per second, of a zero Rate.
const DefaultRate = 50

// Rate is the declarative form of a schedule, for configuration files. Run
// turns it into a vegeta pacer with Rate.Pacer unless Options.Pacer is set.
//
// The zero value is a constant DefaultRate requests per second.
type Rate struct {
	// Shape is ShapeConstant, ShapeRamp or ShapeSteps; empty means constant.
	Shape string `json:"shape,omitempty"`
	// PerSecond is the constant rate in requests per second; zero means
	// DefaultRate. Used by ShapeConstant only.
	PerSecond int `json:"per_second,omitempty"`
	// From and To are the rates, in requests per second, at the start and at
	// the end of the run for ShapeRamp. Both must be positive.
	From int `json:"from,omitempty"`
	To   int `json:"to,omitempty"`
	// Steps is the schedule for ShapeSteps.
	Steps Steps `json:"steps,omitempty"`
}

// Pacer returns the vegeta pacer for r. over is the length of the whole run
// (warm-up included); a ramp goes from From to To over it.
func (r Rate) Pacer(over time.Duration) (vegeta.Pacer, error) {
	switch r.Shape {
	case "", ShapeConstant:
		n := r.PerSecond
		if n == 0 {
			n = DefaultRate
		}
		if n < 0 {
			return nil, fmt.Errorf("loadgen: rate per_second is %d: give a positive number of requests per second", n)
		}
		return Constant(n), nil
	case ShapeRamp:
		if r.From <= 0 || r.To <= 0 {
			return nil, fmt.Errorf("loadgen: ramp from %d to %d: both rates must be positive (a vegeta linear pacer reads a zero start rate as unlimited)", r.From, r.To)
		}
		if over <= 0 {
			return nil, fmt.Errorf("loadgen: ramp needs a positive duration, got %s", over)
		}
		return Ramp(r.From, r.To, over), nil
	case ShapeSteps:
		if err := r.Steps.Validate(); err != nil {
			return nil, err
		}
		return r.Steps, nil
	default:
		return nil, fmt.Errorf("loadgen: unknown rate shape %q: use %q, %q or %q", r.Shape, ShapeConstant, ShapeRamp, ShapeSteps)
	}
}

// Constant returns a vegeta pacer sending perSecond requests each second.
// The k-th request (k from 1) is due at k/perSecond seconds.
func Constant(perSecond int) vegeta.Pacer {
	return vegeta.ConstantPacer{Freq: perSecond, Per: time.Second}
}

// Ramp returns a vegeta linear pacer going from `from` to `to` requests per
// second over `over`. Past `over` the rate keeps changing with the same slope,
// so give the run the same duration. from must be positive: vegeta reads a
// zero start rate as unlimited.
func Ramp(from, to int, over time.Duration) vegeta.Pacer {
	return vegeta.LinearPacer{
		StartAt: vegeta.Rate{Freq: from, Per: time.Second},
		Slope:   float64(to-from) / over.Seconds(),
	}
}

// Step is one constant-rate stretch of a Steps schedule.
type Step struct {
	// Rate in requests per second; zero sends nothing for the step.
	Rate float64 `json:"rate"`
	// For is how long the step lasts.
	For time.Duration `json:"for"`
}

// Steps is a vegeta pacer made of constant-rate steps, one after the other.
// The k-th request (k from 1) is due when the steps' cumulative expected count
// reaches k, as with vegeta's ConstantPacer. The pacer stops the run after the
// last step. A nil Steps stops at once.
type Steps []Step

var _ vegeta.Pacer = Steps(nil)

// Validate reports the first step with a negative or non-finite rate or a
// non-positive length, and an empty schedule.
func (s Steps) Validate() error {
	if len(s) == 0 {
		return fmt.Errorf("loadgen: steps schedule is empty: give at least one {rate, for}")
	}
	for i, st := range s {
		if st.Rate < 0 || math.IsNaN(st.Rate) || math.IsInf(st.Rate, 0) {
			return fmt.Errorf("loadgen: step %d has rate %v: give a finite rate >= 0", i, st.Rate)
		}
		if st.For <= 0 {
			return fmt.Errorf("loadgen: step %d lasts %s: give a positive duration", i, st.For)
		}
	}
	return nil
}

// Total returns the sum of the steps' lengths.
func (s Steps) Total() time.Duration {
	var t time.Duration
	for _, st := range s {
		t += st.For
	}
	return t
}

// Pace implements vegeta.Pacer: it returns the wait, from elapsed, until hit
// number hits+1 is due, and stop once the schedule has no more hits.
func (s Steps) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	target := float64(hits + 1)
	var cum float64
	var start time.Duration
	for _, st := range s {
		n := st.Rate * st.For.Seconds()
		if st.Rate > 0 && cum+n >= target {
			due := start + time.Duration((target-cum)/st.Rate*float64(time.Second))
			if due > start+st.For {
				due = start + st.For // float rounding at the step's end
			}
			return due - elapsed, false
		}
		cum += n
		start += st.For
	}
	return 0, true
}

// Rate implements vegeta.Pacer: the rate of the step at elapsed, zero after
// the last step.
func (s Steps) Rate(elapsed time.Duration) float64 {
	var start time.Duration
	for _, st := range s {
		if elapsed < start+st.For {
			return st.Rate
		}
		start += st.For
	}
	return 0
}

// String describes the schedule, as vegeta's pacers do.
func (s Steps) String() string {
	out := "Steps{"
	for i, st := range s {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%g/s for %s", st.Rate, st.For)
	}
	return out + "}"
}
