package loadgen

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Result is what a run measured, over the requests due after the warm-up.
// It is a plain value: its JSON form (EncodeJSON, DecodeResult) carries
// everything, raw histograms included, and decodes to an equal Result.
//
// Latencies are in microseconds, measured from each request's intended send
// time (see the package doc).
type Result struct {
	// Protocol, Target and Method echo the normalized Target. A mixed
	// run's Protocol is its shares' protocols joined by "+" ("grpc+grpc-stream")
	// and its Method is empty: Mix has them.
	Protocol string `json:"protocol"`
	Target   string `json:"target"`
	Method   string `json:"method"`
	// Mix echoes the normalized Options.Mix; nil for an unmixed run.
	Mix []Share `json:"mix,omitempty"`
	// Messages echoes Target.Messages for a run with streaming calls;
	// zero otherwise.
	Messages int `json:"messages,omitempty"`
	// PayloadBytes, Connections and MaxInFlight echo the Options.
	PayloadBytes int `json:"payload_bytes"`
	Connections  int `json:"connections"`
	MaxInFlight  int `json:"max_in_flight"`
	// Pacer describes the schedule: the pacer's String form, or
	// "Linear{<start rate> <slope> hits/s²}" for vegeta's LinearPacer.
	Pacer string `json:"pacer"`
	// Started is the wall-clock time of the schedule's origin.
	Started time.Time `json:"started"`
	// DurationS, WarmUpS and TimeoutS echo the Options, in seconds.
	DurationS float64 `json:"duration_s"`
	WarmUpS   float64 `json:"warm_up_s"`
	TimeoutS  float64 `json:"timeout_s"`
	// ElapsedS is how long the run took, from Started until the last
	// response, in seconds.
	ElapsedS float64 `json:"elapsed_s"`
	// Interrupted is true when the context ended the run early. Requests
	// that failed because of it are not recorded.
	Interrupted bool `json:"interrupted"`

	// Requests is the number of recorded requests: sent ones plus Dropped.
	Requests int64 `json:"requests"`
	// Success counts the requests Options.Success accepted.
	Success int64 `json:"success"`
	// SuccessRate is Success/Requests, 0 when there were no requests.
	SuccessRate float64 `json:"success_rate"`
	// Dropped counts the requests never sent (ErrDropped). They are
	// errors and have no latency.
	Dropped int64 `json:"dropped"`
	// ScheduledRate is Requests over the measured window (Duration minus
	// WarmUp, or less when interrupted), per second.
	ScheduledRate float64 `json:"scheduled_rate_per_s"`
	// AchievedRate is the sent requests over the measured window, stretched
	// to the last actual send when the generator ran late, per second.
	AchievedRate float64 `json:"achieved_rate_per_s"`

	// Latency is the distribution of every sent request's latency,
	// successes and failures alike (a timeout counts as its timeout).
	Latency Latency `json:"latency_us"`
	// SendLag is the distribution of how late requests were sent after
	// their intended time: the generator's own lateness plus the wait for a
	// slot under MaxInFlight. It is part of Latency; a large SendLag means
	// the numbers describe the generator as much as the target.
	SendLag Latency `json:"send_lag_us"`

	// StatusCodes counts requests by status: the HTTP status as a number
	// ("200"), "grpc:<code name>" ("grpc:Unavailable"), or CodeNone.
	StatusCodes map[string]int64 `json:"status_codes"`
	// Errors counts the unsuccessful requests by message: the transport
	// error without addresses, "503 Service Unavailable",
	// "grpc:<code>: <message>", or ErrDropped. At most
	// Options.MaxErrorKinds distinct messages, then OtherErrors.
	Errors map[string]int64 `json:"errors"`

	// Series has one entry per second of the run, by intended send time,
	// from the first second after the warm-up starts to the last second of
	// Duration, including seconds with no requests.
	Series []Second `json:"series"`

	// Noise is how busy the machine was during the run, apart from this
	// process and its descendants; nil when it could not be read (off
	// Linux).
	Noise *Noise `json:"noise,omitempty"`
}

// Latency summarizes one HDR histogram of microsecond values.
// Every field but Count and HDR is in microseconds; percentiles are the
// highest value equivalent to the percentile's bucket (3 significant
// figures). The zero value means nothing was recorded.
type Latency struct {
	// Count is the number of recorded values.
	Count  int64   `json:"count"`
	Min    int64   `json:"min"`
	Mean   float64 `json:"mean"`
	StdDev float64 `json:"stddev"`
	P50    int64   `json:"p50"`
	P90    int64   `json:"p90"`
	P99    int64   `json:"p99"`
	// P999 is the 99.9th percentile.
	P999 int64 `json:"p99_9"`
	Max  int64 `json:"max"`
	// HDR is the histogram in the standard HdrHistogram V2 compressed,
	// base64 form (what HistogramLogProcessor and the Java/C libraries
	// read). Decode it with Histogram.
	HDR string `json:"hdr"`
}

// Second is the part of a run whose requests were due within one second.
type Second struct {
	// Second is the offset of this second from Result.Started.
	Second int `json:"second"`
	// Requests, Success, Errors and Dropped are counted as in Result;
	// Errors is Requests minus Success.
	Requests int64 `json:"requests"`
	Success  int64 `json:"success"`
	Errors   int64 `json:"errors"`
	Dropped  int64 `json:"dropped"`
	// Outstanding, in the live view Options.Progress receives, counts the
	// requests due in this second that have no outcome yet: sent and not
	// answered, or waiting for a free slot. They belong to this second
	// (they were due in it) and are not in Requests yet. It is 0 in a
	// Result, where every request has its outcome.
	Outstanding int64 `json:"outstanding,omitempty"`
	// P50US, P99US and MaxUS summarize the second's latencies, in
	// microseconds; zero when nothing was sent.
	P50US int64 `json:"p50_us"`
	P99US int64 `json:"p99_us"`
	MaxUS int64 `json:"max_us"`
	// HDR is the second's histogram, as in Latency.HDR; empty when nothing
	// was sent.
	HDR string `json:"hdr,omitempty"`
}

// Histogram decodes the raw histogram of l (microseconds). A zero Latency
// decodes to nil and no error.
func (l Latency) Histogram() (*hdrhistogram.Histogram, error) {
	return decodeHDR(l.HDR)
}

// Histogram decodes the raw histogram of s (microseconds). A second with
// nothing sent decodes to nil and no error.
func (s Second) Histogram() (*hdrhistogram.Histogram, error) {
	return decodeHDR(s.HDR)
}

func decodeHDR(enc string) (*hdrhistogram.Histogram, error) {
	if enc == "" {
		return nil, nil
	}
	h, err := hdrhistogram.Decode([]byte(enc))
	if err != nil {
		return nil, fmt.Errorf("loadgen: decoding HDR histogram: %w", err)
	}
	return h, nil
}

// EncodeJSON writes r as indented JSON.
func (r *Result) EncodeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// DecodeResult reads a Result written by EncodeJSON. Unknown fields are an
// error.
func DecodeResult(rd io.Reader) (*Result, error) {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	var r Result
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("loadgen: decoding result: %w", err)
	}
	return &r, nil
}

// WritePercentiles writes h in HdrHistogram's standard "percentile
// distribution" text (Value, Percentile, TotalCount, 1/(1-Percentile), then
// mean, max and count), as wrk2 and HdrHistogram's tools print it. The
// histogram's values are microseconds; they are written in milliseconds.
func WritePercentiles(w io.Writer, h *hdrhistogram.Histogram) error {
	if h == nil {
		return errors.New("loadgen: no histogram to print")
	}
	_, err := h.PercentilesPrint(w, 5, 1000)
	return err
}

// WriteHistogramLog writes r's per-second histograms as an HdrHistogram
// interval log (format 1.3, readable by hdrhistogram.HistogramLogReader and
// HistogramLogProcessor), one interval per second with a time stamp relative
// to Started. Values are microseconds; the interval max column is written in
// milliseconds. Seconds with nothing sent are skipped.
func (r *Result) WriteHistogramLog(w io.Writer) error {
	lw := hdrhistogram.NewHistogramLogWriter(w)
	if err := lw.OutputLogFormatVersion(); err != nil {
		return err
	}
	if err := lw.OutputComment("[skiff loadgen: latency in microseconds from the intended send time]"); err != nil {
		return err
	}
	if err := lw.OutputStartTime(r.Started.UnixMilli()); err != nil {
		return err
	}
	if err := lw.OutputLegend(); err != nil {
		return err
	}
	for _, s := range r.Series {
		if s.HDR == "" {
			continue
		}
		// Written by hand rather than with OutputIntervalHistogram, which
		// always scales the max column as nanoseconds to milliseconds.
		if _, err := fmt.Fprintf(w, "%.3f,%.3f,%.3f,%s\n", float64(s.Second), 1.0, float64(s.MaxUS)/1000, s.HDR); err != nil {
			return err
		}
	}
	return nil
}

// result builds the Result from the recorder once every worker is done.
func (r *recorder) result(o *Options, started time.Time, elapsed time.Duration, interrupted bool) (*Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &Result{
		Protocol:     o.Target.Protocol,
		Target:       o.Target.URL,
		Method:       o.Target.Method,
		Mix:          slices.Clone(o.Mix),
		PayloadBytes: o.Target.PayloadBytes,
		Connections:  o.Connections,
		MaxInFlight:  o.MaxInFlight,
		Pacer:        describePacer(o.Pacer),
		Started:      started,
		DurationS:    o.Duration.Seconds(),
		WarmUpS:      o.WarmUp.Seconds(),
		TimeoutS:     o.Timeout.Seconds(),
		ElapsedS:     elapsed.Seconds(),
		Interrupted:  interrupted,
		Requests:     r.requests,
		Success:      r.ok,
		Dropped:      r.dropped,
		StatusCodes:  make(map[string]int64, len(r.codes)),
		Errors:       make(map[string]int64, len(r.errs)),
	}
	if len(o.Mix) > 0 {
		ps := make([]string, len(o.Mix))
		for i, sh := range o.Mix {
			ps[i] = sh.Protocol
		}
		res.Protocol = strings.Join(ps, "+")
	}
	if o.streams() {
		res.Messages = o.Target.Messages
	}
	for k, v := range r.codes {
		res.StatusCodes[k] = v
	}
	for k, v := range r.errs {
		res.Errors[k] = v
	}
	if r.requests > 0 {
		res.SuccessRate = float64(r.ok) / float64(r.requests)
	}
	window := o.Duration
	if interrupted {
		window = min(window, elapsed)
	}
	if w := (window - o.WarmUp).Seconds(); w > 0 {
		res.ScheduledRate = float64(r.requests) / w
	}
	if w := (max(window, r.lastSentAt) - o.WarmUp).Seconds(); w > 0 {
		res.AchievedRate = float64(r.requests-r.dropped) / w
	}
	var err error
	if res.Latency, err = summarize(r.latency); err != nil {
		return nil, err
	}
	if res.SendLag, err = summarize(r.lag); err != nil {
		return nil, err
	}
	res.Series = make([]Second, len(r.seconds))
	for i := range r.seconds {
		sec := &r.seconds[i]
		s := Second{
			Second:   r.firstSec + i,
			Requests: sec.requests,
			Success:  sec.success,
			Errors:   sec.errors,
			Dropped:  sec.dropped,
		}
		if h := sec.hist; h != nil {
			s.P50US = h.ValueAtPercentile(50)
			s.P99US = h.ValueAtPercentile(99)
			s.MaxUS = h.Max()
			enc, err := h.Encode()
			if err != nil {
				return nil, fmt.Errorf("loadgen: encoding second %d: %w", s.Second, err)
			}
			s.HDR = string(enc)
		}
		res.Series[i] = s
	}
	return res, nil
}

// describePacer names a pacer; vegeta's LinearPacer has no String method.
func describePacer(p vegeta.Pacer) string {
	if lp, ok := p.(vegeta.LinearPacer); ok {
		return fmt.Sprintf("Linear{%s %+g hits/s²}", lp.StartAt, lp.Slope)
	}
	return fmt.Sprintf("%v", p)
}

func summarize(h *hdrhistogram.Histogram) (Latency, error) {
	if h.TotalCount() == 0 {
		return Latency{}, nil
	}
	enc, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return Latency{}, fmt.Errorf("loadgen: encoding histogram: %w", err)
	}
	return Latency{
		Count:  h.TotalCount(),
		Min:    h.Min(),
		Mean:   h.Mean(),
		StdDev: h.StdDev(),
		P50:    h.ValueAtQuantile(50),
		P90:    h.ValueAtQuantile(90),
		P99:    h.ValueAtQuantile(99),
		P999:   h.ValueAtQuantile(99.9),
		Max:    h.Max(),
		HDR:    string(enc),
	}, nil
}
