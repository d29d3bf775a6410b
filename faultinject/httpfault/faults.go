package httpfault

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Names of the per-request fault parameters. They are query parameters on
// HTTP requests and metadata keys on gRPC calls.
const (
	// ParamStatus picks a status for a share of requests: "503:10,429:5"
	// answers 503 to 10 % and 429 to 5 % of requests; a bare "503" means 100 %.
	// Codes range over 200..599. On HTTP an injected answer has a short text
	// body whatever the code; on gRPC the code is mapped with GRPCCode, and
	// one that maps to OK lets the call proceed normally.
	ParamStatus = "status"
	// ParamDelay delays a share of requests: "2ms:5,150us:10"; a bare "2ms"
	// means 100 %.
	ParamDelay = "delay"
	// ParamSize sets the size in bytes of the response payload.
	ParamSize = "size"
	// ParamClose closes the connection (HTTP/1.1, gRPC) or resets the stream
	// (HTTP/2) for a percentage of requests: "5", "0.5", or "true" for 100 %.
	ParamClose = "close"
)

// Limits on what a request may ask for. They keep a hostile or mistyped
// request from pinning memory or a goroutine for long.
const (
	// MaxSize is the largest accepted ?size=, in bytes.
	MaxSize = 64 << 20
	// MaxDelay is the longest accepted single delay.
	MaxDelay = time.Hour
	// maxShares bounds the number of entries in one percentage list.
	maxShares = 64
)

// ParamError reports a fault parameter that could not be parsed. HTTP
// handlers turn it into 400 Bad Request, gRPC into InvalidArgument.
type ParamError struct {
	// Param is the parameter name, e.g. "status".
	Param string
	// Value is the value as received.
	Value string
	// Reason says what is wrong and what is expected.
	Reason string
}

// Error implements error: `bad status="5x3": …`.
func (e *ParamError) Error() string {
	return fmt.Sprintf("bad %s=%q: %s", e.Param, e.Value, e.Reason)
}

// StatusShare answers Code to Percent % of requests.
type StatusShare struct {
	Code    int
	Percent float64
}

// DelayShare delays Percent % of requests by Delay.
type DelayShare struct {
	Delay   time.Duration
	Percent float64
}

// Delays is a percentage-weighted list of delays in the syntax of ?delay=:
// "1ms:50,10ms:1" delays half of the requests by 1 ms, 1 % by 10 ms and the
// rest not at all; a bare "2ms" delays every request. The shares add up to at
// most 100. A nil Delays never delays. It marshals to and from that text form
// (nil is "0s").
type Delays []DelayShare

// Faults are the per-request fault controls of one request. The zero value
// injects nothing and leaves the payload size to the endpoint.
type Faults struct {
	// Status lists the injected statuses; their percentages add up to ≤ 100.
	Status []StatusShare
	// Delay lists the injected delays.
	Delay Delays
	// Size is the response payload size in bytes; only meaningful if SizeSet.
	Size int
	// SizeSet reports whether the request asked for a size.
	SizeSet bool
	// ClosePercent is the percentage of requests whose connection is closed.
	ClosePercent float64
}

// ParseFaults reads the fault parameters (status, delay, size, close) from q
// and ignores every other key. A key given more than once is read as if its
// values were joined with commas. The error is a *ParamError naming the bad
// parameter and value.
func ParseFaults(q url.Values) (Faults, error) {
	var f Faults
	var err error
	if v, ok := joined(q, ParamStatus); ok {
		if f.Status, err = ParseStatusShares(ParamStatus, v, 200, 599); err != nil {
			return Faults{}, err
		}
	}
	if v, ok := joined(q, ParamDelay); ok {
		if f.Delay, err = parseDelays(ParamDelay, v); err != nil {
			return Faults{}, err
		}
	}
	if vs := q[ParamSize]; len(vs) > 0 {
		v := vs[len(vs)-1]
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > MaxSize {
			return Faults{}, &ParamError{Param: ParamSize, Value: v,
				Reason: fmt.Sprintf("want a byte count between 0 and %d", MaxSize)}
		}
		f.Size, f.SizeSet = n, true
	}
	if vs := q[ParamClose]; len(vs) > 0 {
		v := vs[len(vs)-1]
		switch s := strings.TrimSpace(v); s {
		case "true":
			f.ClosePercent = 100
		case "false", "":
			f.ClosePercent = 0
		default:
			p, ok := parsePercent(s)
			if !ok {
				return Faults{}, &ParamError{Param: ParamClose, Value: v,
					Reason: "want a percentage between 0 and 100 (decimals allowed) or true"}
			}
			f.ClosePercent = p
		}
	}
	return f, nil
}

// joined returns the values of key joined with commas, and whether the key
// had a non-empty value.
func joined(q url.Values, key string) (string, bool) {
	vs := q[key]
	if len(vs) == 0 {
		return "", false
	}
	v := strings.Join(vs, ",")
	return v, strings.TrimSpace(strings.ReplaceAll(v, ",", "")) != ""
}

// parsePercent parses a finite percentage in [0, 100].
func parsePercent(s string) (float64, bool) {
	p, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(p) || p < 0 || p > 100 {
		return 0, false
	}
	return p, true
}

// splitShares splits raw into (value, percent) pairs, checking percentages
// and their sum. A bare value means 100 %.
func splitShares(param, raw string) ([]string, []float64, error) {
	entries := strings.Split(raw, ",")
	if len(entries) > maxShares {
		return nil, nil, &ParamError{Param: param, Value: raw,
			Reason: fmt.Sprintf("at most %d entries", maxShares)}
	}
	vals := make([]string, 0, len(entries))
	pcts := make([]float64, 0, len(entries))
	sum := 0.0
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			return nil, nil, &ParamError{Param: param, Value: raw, Reason: "empty entry between commas"}
		}
		v, ps, hasPct := strings.Cut(e, ":")
		p := 100.0
		if hasPct {
			var ok bool
			if p, ok = parsePercent(ps); !ok {
				return nil, nil, &ParamError{Param: param, Value: raw,
					Reason: fmt.Sprintf("percentage %q is not a number between 0 and 100", ps)}
			}
		}
		sum += p
		vals = append(vals, strings.TrimSpace(v))
		pcts = append(pcts, p)
	}
	if sum > 100+1e-9 {
		return nil, nil, &ParamError{Param: param, Value: raw,
			Reason: fmt.Sprintf("percentages add up to %g, more than 100", sum)}
	}
	return vals, pcts, nil
}

// ParseStatusShares parses "503:10,429:5" with codes in [lo, hi].
func ParseStatusShares(param, raw string, lo, hi int) ([]StatusShare, error) {
	vals, pcts, err := splitShares(param, raw)
	if err != nil {
		return nil, err
	}
	out := make([]StatusShare, len(vals))
	for i, v := range vals {
		c, err := strconv.Atoi(v)
		if err != nil || c < lo || c > hi {
			return nil, &ParamError{Param: param, Value: raw,
				Reason: fmt.Sprintf("code %q is not a number between %d and %d; want CODE[:PERCENT],… like 503:10,429:5", v, lo, hi)}
		}
		out[i] = StatusShare{Code: c, Percent: pcts[i]}
	}
	return out, nil
}

// parseDelays parses "2ms:5,150us:10".
func parseDelays(param, raw string) (Delays, error) {
	vals, pcts, err := splitShares(param, raw)
	if err != nil {
		return nil, err
	}
	out := make(Delays, len(vals))
	for i, v := range vals {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxDelay {
			return nil, &ParamError{Param: param, Value: raw,
				Reason: fmt.Sprintf("delay %q is not a duration between 0s and %s; want DURATION[:PERCENT],… like 2ms:5,150us:10", v, MaxDelay)}
		}
		out[i] = DelayShare{Delay: d, Percent: pcts[i]}
	}
	return out, nil
}

// ParseDelays parses the text form of Delays ("2ms", "1ms:50,10ms:1"); an
// empty string gives nil.
func ParseDelays(s string) (Delays, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	return parseDelays("latency", s)
}

// String returns the text form, "0s" for an empty list.
func (d Delays) String() string {
	if len(d) == 0 {
		return "0s"
	}
	var b strings.Builder
	for i, s := range d {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.Delay.String())
		if s.Percent != 100 {
			b.WriteByte(':')
			b.WriteString(strconv.FormatFloat(s.Percent, 'g', -1, 64))
		}
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler.
func (d Delays) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; "", "0s" and any
// list of zero delays give nil.
func (d *Delays) UnmarshalText(b []byte) error {
	v, err := ParseDelays(string(b))
	if err != nil {
		return err
	}
	allZero := true
	for _, e := range v {
		allZero = allZero && e.Delay == 0
	}
	if allZero {
		v = nil
	}
	*d = v
	return nil
}

// Pick draws one delay from d, zero when no share is hit.
func (d Delays) Pick(r *rand.Rand) time.Duration {
	if len(d) == 0 {
		return 0
	}
	u, cum := r.Float64()*100, 0.0
	for _, s := range d {
		cum += s.Percent
		if u < cum {
			return s.Delay
		}
	}
	return 0
}

// PickStatus draws one status from shares, zero when no share is hit.
func PickStatus(shares []StatusShare, r *rand.Rand) (int, bool) {
	if len(shares) == 0 {
		return 0, false
	}
	u, cum := r.Float64()*100, 0.0
	for _, s := range shares {
		cum += s.Percent
		if u < cum {
			return s.Code, true
		}
	}
	return 0, false
}

// Hit reports whether a draw falls into percent %.
func Hit(r *rand.Rand, percent float64) bool {
	return percent > 0 && r.Float64()*100 < percent
}
