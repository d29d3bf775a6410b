package route

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/breaker"
	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

// MaxFileBytes bounds a routes file.
const MaxFileBytes = 4 << 20

// The routes file, for the proxy's --routes flag: JSON whose field names
// are the Gateway API's (HTTPRoute rules[].timeouts and retry,
// XBackendTrafficPolicy retryConstraint) and, for the breaker, Skiff's.
// Durations are Gateway API durations ("300ms", "10s", "1m").
//
//	{"routes": [{
//	  "authority": "echo.default.svc:8080", "name": "echo",
//	  "timeouts": {"request": "300ms", "backendRequest": "100ms"},
//	  "retry": {"attempts": 2, "codes": [503], "grpcCodes": [14],
//	            "backoff": "25ms", "maxBackoff": "250ms",
//	            "nonIdempotent": false, "maxBodyBytes": 65536},
//	  "retryConstraint": {"budget": {"percent": 20, "interval": "10s"},
//	                      "minRetryRate": {"count": 10, "interval": "1s"}},
//	  "breaker": {"consecutiveFailures": 7, "minSuccessRate": 0.5,
//	              "window": "10s", "minRequests": 20,
//	              "baseEjection": "1s", "maxEjection": "1m"}}]}
type file struct {
	Routes []fileRoute `json:"routes"`
}

type fileRoute struct {
	Authority       string           `json:"authority"`
	Name            string           `json:"name"`
	Timeouts        *fileTimeouts    `json:"timeouts,omitempty"`
	Retry           *fileRetry       `json:"retry,omitempty"`
	RetryConstraint *fileConstraint  `json:"retryConstraint,omitempty"`
	Breaker         *fileBreakerSpec `json:"breaker,omitempty"`
}

type fileTimeouts struct {
	Request        duration `json:"request,omitempty"`
	BackendRequest duration `json:"backendRequest,omitempty"`
}

type fileRetry struct {
	Attempts      int      `json:"attempts"`
	Codes         []int    `json:"codes,omitempty"`
	GRPCCodes     []int    `json:"grpcCodes,omitempty"`
	Backoff       duration `json:"backoff,omitempty"`
	MaxBackoff    duration `json:"maxBackoff,omitempty"`
	NonIdempotent bool     `json:"nonIdempotent,omitempty"`
	MaxBodyBytes  int64    `json:"maxBodyBytes,omitempty"`
}

type fileConstraint struct {
	Budget       *fileBudget   `json:"budget,omitempty"`
	MinRetryRate *fileMinRetry `json:"minRetryRate,omitempty"`
}

type fileBudget struct {
	Percent  *int     `json:"percent,omitempty"`
	Interval duration `json:"interval,omitempty"`
}

type fileMinRetry struct {
	Count    *int     `json:"count,omitempty"`
	Interval duration `json:"interval,omitempty"`
}

type fileBreakerSpec struct {
	ConsecutiveFailures int      `json:"consecutiveFailures,omitempty"`
	MinSuccessRate      float64  `json:"minSuccessRate,omitempty"`
	Window              duration `json:"window,omitempty"`
	MinRequests         int      `json:"minRequests,omitempty"`
	BaseEjection        duration `json:"baseEjection,omitempty"`
	MaxEjection         duration `json:"maxEjection,omitempty"`
}

// duration is a Gateway API duration in JSON: a string such as "300ms".
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"300ms\", not %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = duration(v)
	return nil
}

// Parse reads a routes file. An error names what is wrong and where: the
// line and column for JSON that does not parse or has a field of the wrong
// type or name, the route's index and authority for a value out of range.
// Routes are checked as Replace checks them.
func Parse(r io.Reader) ([]Route, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("routes file over %d MiB", MaxFileBytes>>20)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, locate(data, dec, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: more after the routes object", position(data, dec.InputOffset()))
	}
	if len(f.Routes) > MaxRoutes {
		return nil, fmt.Errorf("%d routes: at most %d are allowed", len(f.Routes), MaxRoutes)
	}
	out := make([]Route, 0, len(f.Routes))
	var errs []error
	for i, fr := range f.Routes {
		rt := fr.route()
		if err := rt.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("routes[%d] (%q): %w", i, fr.Authority, err))
		}
		out = append(out, rt)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Marshal writes routes as a routes file that Parse reads back to the
// same routes.
func Marshal(routes []Route) ([]byte, error) {
	f := file{Routes: make([]fileRoute, 0, len(routes))}
	for i := range routes {
		r := &routes[i]
		fr := fileRoute{Authority: r.Authority, Name: r.Name}
		if r.Timeouts != (timeout.Route{}) {
			fr.Timeouts = &fileTimeouts{Request: duration(r.Timeouts.Request), BackendRequest: duration(r.Timeouts.BackendRequest)}
		}
		if p := r.Retry; p.Attempts != 0 || len(p.Codes) > 0 || len(p.GRPCCodes) > 0 {
			fr.Retry = &fileRetry{Attempts: p.Attempts, Codes: p.Codes, GRPCCodes: p.GRPCCodes, Backoff: duration(p.Backoff),
				MaxBackoff: duration(r.MaxBackoff), NonIdempotent: p.NonIdempotent, MaxBodyBytes: p.MaxBodyBytes}
		}
		b := r.Budget
		if b.Percent != nil || b.Interval != 0 || b.MinRetries != nil || b.MinInterval != 0 {
			fr.RetryConstraint = &fileConstraint{}
			if b.Percent != nil || b.Interval != 0 {
				fr.RetryConstraint.Budget = &fileBudget{Percent: b.Percent, Interval: duration(b.Interval)}
			}
			if b.MinRetries != nil || b.MinInterval != 0 {
				fr.RetryConstraint.MinRetryRate = &fileMinRetry{Count: b.MinRetries, Interval: duration(b.MinInterval)}
			}
		}
		if c := r.Breaker; c != nil {
			fr.Breaker = &fileBreakerSpec{ConsecutiveFailures: c.ConsecutiveFailures, MinSuccessRate: c.MinSuccessRate,
				Window: duration(c.Window), MinRequests: c.MinRequests,
				BaseEjection: duration(c.BaseEjection), MaxEjection: duration(c.MaxEjection)}
		}
		f.Routes = append(f.Routes, fr)
	}
	return json.MarshalIndent(f, "", "  ")
}

func (fr *fileRoute) route() Route {
	rt := Route{Authority: fr.Authority, Name: fr.Name}
	if rt.Name == "" {
		rt.Name = fr.Authority
	}
	if t := fr.Timeouts; t != nil {
		rt.Timeouts = timeout.Route{Request: time.Duration(t.Request), BackendRequest: time.Duration(t.BackendRequest)}
	}
	if r := fr.Retry; r != nil {
		rt.Retry = retry.Policy{Attempts: r.Attempts, Codes: r.Codes, GRPCCodes: r.GRPCCodes,
			Backoff: time.Duration(r.Backoff), NonIdempotent: r.NonIdempotent, MaxBodyBytes: r.MaxBodyBytes}
		rt.MaxBackoff = time.Duration(r.MaxBackoff)
	}
	if c := fr.RetryConstraint; c != nil {
		if b := c.Budget; b != nil {
			rt.Budget.Percent, rt.Budget.Interval = b.Percent, time.Duration(b.Interval)
		}
		if m := c.MinRetryRate; m != nil {
			rt.Budget.MinRetries, rt.Budget.MinInterval = m.Count, time.Duration(m.Interval)
		}
	}
	if b := fr.Breaker; b != nil {
		rt.Breaker = &breaker.Config{ConsecutiveFailures: b.ConsecutiveFailures, MinSuccessRate: b.MinSuccessRate,
			Window: time.Duration(b.Window), MinRequests: b.MinRequests,
			BaseEjection: time.Duration(b.BaseEjection), MaxEjection: time.Duration(b.MaxEjection)}
	}
	return rt
}

// locate turns a JSON decoding error into one that says where in data.
func locate(data []byte, dec *json.Decoder, err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("%s: %w", position(data, se.Offset), se)
	case errors.As(err, &te):
		return fmt.Errorf("%s: field %s: %s is not a %s", position(data, te.Offset), te.Field, te.Value, te.Type)
	case errors.Is(err, io.EOF):
		return errors.New("routes file is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: the file ends inside a value", position(data, int64(len(data))))
	}
	// Unknown fields and the values our own types refuse: the decoder has
	// read up to (about) the offending value.
	return fmt.Errorf("%s: %w", position(data, dec.InputOffset()), err)
}

// position is "line L, column C" of offset in data.
func position(data []byte, offset int64) string {
	offset = min(max(offset, 0), int64(len(data)))
	line := 1 + bytes.Count(data[:offset], []byte("\n"))
	col := offset - int64(bytes.LastIndexByte(data[:offset], '\n'))
	return fmt.Sprintf("line %d, column %d", line, col)
}
