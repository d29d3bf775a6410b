package httpfault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// MaxConcurrentLimit bounds Behaviour.MaxConcurrent.
const MaxConcurrentLimit = 1_000_000

// DefaultErrorStatus is the status of injected errors when
// Behaviour.ErrorStatus is zero.
const DefaultErrorStatus = 503

// Behaviour is the server-wide fault behaviour, applied to every workload
// request on top of its own fault parameters. It is set from flags at start
// (Config.Behaviour) and can be replaced at run time through
// PUT /_demo/behaviour. The zero value is a healthy, fast backend.
//
// Its JSON form is
//
//	{"latency":"10ms","latency_jitter":"2ms","error_rate":0.3,"error_status":503,"reset_rate":0.1,"max_concurrent":4}
//
// where latency is in the Delays syntax ("10ms" or "1ms:50,10ms:1"). Decoding
// rejects unknown fields and leaves fields that are absent untouched.
type Behaviour struct {
	// Latency delays requests; nil means no added latency.
	Latency Delays
	// LatencyJitter adds a uniform random offset in [-LatencyJitter,
	// +LatencyJitter] to every request that Latency delays (never below
	// zero). Zero means none.
	LatencyJitter time.Duration
	// ErrorRate is the fraction (0..1) of requests answered with ErrorStatus.
	ErrorRate float64
	// ErrorStatus is the HTTP status of injected errors (gRPC maps it with
	// GRPCCode); zero means DefaultErrorStatus.
	ErrorStatus int
	// ResetRate is the fraction (0..1) of requests, and of TCP echo
	// connections, whose connection is closed without an answer.
	ResetRate float64
	// MaxConcurrent is how many HTTP and gRPC workload requests the server
	// serves at once, as a pool of that many workers: the others wait for
	// a slot in arrival order, and the wait counts in their latency. The
	// delay, close and status faults happen while a request holds its
	// slot, so with a latency S the server's capacity is MaxConcurrent/S
	// requests a second. Zero means no limit; at most MaxConcurrentLimit.
	MaxConcurrent int
}

// Validate reports the first out-of-range field.
func (b Behaviour) Validate() error {
	rate := func(name string, v float64) error {
		if math.IsNaN(v) || v < 0 || v > 1 {
			return fmt.Errorf("%s %v is outside [0, 1]; it is a fraction, e.g. 0.3 for 30 %%", name, v)
		}
		return nil
	}
	if err := rate("error_rate", b.ErrorRate); err != nil {
		return err
	}
	if err := rate("reset_rate", b.ResetRate); err != nil {
		return err
	}
	if b.ErrorStatus != 0 && (b.ErrorStatus < 200 || b.ErrorStatus > 599) {
		return fmt.Errorf("error_status %d is not an HTTP status between 200 and 599", b.ErrorStatus)
	}
	if b.MaxConcurrent < 0 || b.MaxConcurrent > MaxConcurrentLimit {
		return fmt.Errorf("max_concurrent %d is outside [0, %d]; 0 means no limit", b.MaxConcurrent, MaxConcurrentLimit)
	}
	if b.LatencyJitter < 0 || b.LatencyJitter > MaxDelay {
		return fmt.Errorf("latency_jitter %s is outside [0s, %s]", b.LatencyJitter, MaxDelay)
	}
	sum := 0.0
	for _, s := range b.Latency {
		if s.Delay < 0 || s.Delay > MaxDelay || math.IsNaN(s.Percent) || s.Percent < 0 || s.Percent > 100 {
			return fmt.Errorf("latency %s has an entry outside [0s, %s] or [0, 100] %%", b.Latency, MaxDelay)
		}
		sum += s.Percent
	}
	if sum > 100+1e-9 {
		return fmt.Errorf("latency %s: percentages add up to %g, more than 100", b.Latency, sum)
	}
	return nil
}

// StatusOrDefault returns ErrorStatus or its default.
func (b *Behaviour) StatusOrDefault() int {
	if b.ErrorStatus == 0 {
		return DefaultErrorStatus
	}
	return b.ErrorStatus
}

// PickLatency draws the added latency of one request.
func (b *Behaviour) PickLatency(r *rand.Rand) time.Duration {
	d := b.Latency.Pick(r)
	if d == 0 || b.LatencyJitter == 0 {
		return d
	}
	j := time.Duration(r.Int64N(2*int64(b.LatencyJitter)+1)) - b.LatencyJitter
	return max(d+j, 0)
}

// behaviourJSON is the wire form; pointers tell absent fields apart.
type behaviourJSON struct {
	Latency       *string  `json:"latency,omitempty"`
	LatencyJitter *string  `json:"latency_jitter,omitempty"`
	ErrorRate     *float64 `json:"error_rate,omitempty"`
	ErrorStatus   *int     `json:"error_status,omitempty"`
	ResetRate     *float64 `json:"reset_rate,omitempty"`
	MaxConcurrent *int     `json:"max_concurrent,omitempty"`
}

// MarshalJSON writes every field, durations as Go duration strings.
func (b Behaviour) MarshalJSON() ([]byte, error) {
	lat, jit := b.Latency.String(), b.LatencyJitter.String()
	st := b.StatusOrDefault()
	return json.Marshal(behaviourJSON{
		Latency: &lat, LatencyJitter: &jit, ErrorRate: &b.ErrorRate,
		ErrorStatus: &st, ResetRate: &b.ResetRate, MaxConcurrent: &b.MaxConcurrent,
	})
}

// UnmarshalJSON sets the fields present in data, rejects unknown fields and
// trailing data, and validates the result.
func (b *Behaviour) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w behaviourJSON
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("decode behaviour: %w; want {\"latency\":\"10ms\",\"latency_jitter\":\"2ms\",\"error_rate\":0.3,\"error_status\":503,\"reset_rate\":0.1,\"max_concurrent\":4}", err)
	}
	if dec.More() {
		return errors.New("decode behaviour: trailing data after the JSON object")
	}
	nb := *b
	if w.Latency != nil {
		if err := nb.Latency.UnmarshalText([]byte(*w.Latency)); err != nil {
			return err
		}
	}
	if w.LatencyJitter != nil {
		d, err := time.ParseDuration(*w.LatencyJitter)
		if err != nil {
			return fmt.Errorf("latency_jitter %q is not a duration like \"2ms\"", *w.LatencyJitter)
		}
		nb.LatencyJitter = d
	}
	if w.ErrorRate != nil {
		nb.ErrorRate = *w.ErrorRate
	}
	if w.ErrorStatus != nil {
		nb.ErrorStatus = *w.ErrorStatus
	}
	if w.ResetRate != nil {
		nb.ResetRate = *w.ResetRate
	}
	if w.MaxConcurrent != nil {
		nb.MaxConcurrent = *w.MaxConcurrent
	}
	if err := nb.Validate(); err != nil {
		return err
	}
	*b = nb
	return nil
}
