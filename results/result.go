package results

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// SchemaV1 is the value of Result.Schema for the layout this package writes.
// A change that removes or renames a field, or changes a unit, gets a new
// version; adding a field does not. Fields added since the first v1 files
// (Result.Noise, Assertion.Count, Assertion.Interval, Assertion.Rule, the
// "inconclusive" verdict) are optional: a file without them still reads.
const SchemaV1 = "skiff.result/v1"

// Exit codes of a scenario run, for `skiff scenario run` and
// `make scenario`. ExitAssertionFailed follows k6, whose failed thresholds
// exit with 99 (errext/exitcodes ThresholdsHaveFailed), so CI can tell "the
// mesh broke a promise" from "the harness could not run".
const (
	// ExitOK: every assertion held.
	ExitOK = 0
	// ExitError: the run could not be carried out or judged (bad scenario,
	// environment failure, an assertion that names an unknown metric).
	ExitError = 1
	// ExitAssertionFailed: the run completed and at least one assertion
	// failed.
	ExitAssertionFailed = 99
	// ExitInconclusive: the run completed, no assertion failed, and at
	// least one could not be decided: its data neither show the promise
	// kept nor broken (an interval that straddles the bound, or more
	// failures than the bound allows but too few to show the rate is
	// below it). It is not a pass; CI may choose to let it through loudly.
	ExitInconclusive = 98
)

// Verdict is the outcome of an assertion or of a whole run.
type Verdict string

// Verdicts. The zero Verdict means "not judged yet".
const (
	Pass Verdict = "pass"
	Fail Verdict = "fail"
	// Error: the assertion could not be evaluated (parse error, unknown
	// metric, no measurement), or the run did not complete.
	Error Verdict = "error"
	// Inconclusive: the data cannot tell whether the assertion holds (see
	// ExitInconclusive and package results/assert for the rules).
	Inconclusive Verdict = "inconclusive"
)

// ExitCode maps a run's verdict to the process exit code: ExitOK for Pass,
// ExitAssertionFailed for Fail, ExitInconclusive for Inconclusive,
// ExitError for Error and for the zero Verdict (a run nobody judged did
// not pass).
func ExitCode(v Verdict) int {
	switch v {
	case Pass:
		return ExitOK
	case Fail:
		return ExitAssertionFailed
	case Inconclusive:
		return ExitInconclusive
	default:
		return ExitError
	}
}

// Conventional path names. A path is one way the load generator reaches the
// app; the baseline scenario measures both, interleaved, in the same run.
const (
	PathMeshed = "meshed" // through the skiff proxies
	PathDirect = "direct" // straight to the app, no proxy
)

// Result is everything one scenario run measured: what result.json holds.
// The runner fills it; Write stores it as a results folder and Read loads one
// back. Offsets ("_s" fields) are seconds since Start. Latencies are
// milliseconds; raw histograms are microseconds. Memory is MiB (the kernel's
// kB in /proc are KiB; "mb" in names means MiB).
type Result struct {
	// Schema is SchemaV1. Write sets it when empty; Read rejects any other.
	Schema      string `json:"schema"`
	Scenario    string `json:"scenario"`
	Description string `json:"description,omitempty"`
	// Environment is where the run happened: "local", "kind", …
	Environment string `json:"environment"`
	// GitRevision is the revision of the code under test, as the runner
	// found it (with a "-dirty" suffix if it says so).
	GitRevision string  `json:"git_revision"`
	Machine     Machine `json:"machine"`
	// Seed drives every random choice of the run (fault percentages,
	// jitter), so the run can be repeated.
	Seed int64 `json:"seed"`
	// Quick is true for a shortened run (fewer trials, shorter phases).
	Quick bool      `json:"quick"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Verdict is Pass, Fail or Error; Judge sets it from Assertions and Err.
	Verdict Verdict `json:"verdict"`
	// Err says why the run did not complete, when it did not.
	Err string `json:"error,omitempty"`

	// Phases are the named time windows the runner measured separately.
	Phases []Phase `json:"phases"`
	// Series is the per-second time series of every path, ordered by path
	// then offset. timeseries.csv holds the same rows.
	Series     []Second    `json:"series"`
	Processes  []Process   `json:"processes"`
	Events     []Event     `json:"events"`
	Assertions []Assertion `json:"assertions"`
	// Trials are the interleaved A/B repetitions (A B A B …), one entry per
	// trial and path, for Compare's statistics. Empty when the scenario
	// does not repeat.
	Trials []Trial `json:"trials,omitempty"`
	// Propagation is what a control-plane scale run measured; nil for
	// other runs.
	Propagation *Propagation `json:"propagation,omitempty"`
	// Noise is how busy the machine was during the load, apart from the
	// run's own processes; nil when it was not measured (runs written
	// before it existed, or off Linux).
	Noise *Noise `json:"noise,omitempty"`
}

// Machine describes the host the run happened on; CurrentMachine gathers it.
type Machine struct {
	Hostname string `json:"hostname"`
	// Cores is the number of CPUs the run could use (runtime.NumCPU: the
	// affinity mask, not the host's total).
	Cores int `json:"cores"`
	// CPUModel is /proc/cpuinfo's first "model name", when there is one.
	CPUModel  string `json:"cpu_model,omitempty"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
}

// Phase is one named time window of the run, [StartS, EndS) in seconds since
// Result.Start, for example "warmup", "steady", "during_fault",
// "after_recovery" or "whole".
type Phase struct {
	Name   string  `json:"name"`
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
	// CountedStartS and CountedEndS, when the phase's bounds are not whole
	// seconds, are the whole seconds its requests were counted over: the
	// load counts requests by the second they were due in, so latency and
	// success cover every second the bounds touch. Pod shares, sampled
	// finer, keep StartS and EndS.
	CountedStartS *float64 `json:"counted_start_s,omitempty"`
	CountedEndS   *float64 `json:"counted_end_s,omitempty"`
	// Excluded marks a phase that is not measured against the SLOs
	// (warm-up); it is reported but greyed out.
	Excluded bool        `json:"excluded,omitempty"`
	Paths    []PathStats `json:"paths"`
}

// PathStats is what one path (PathMeshed, PathDirect, …) saw during a phase.
type PathStats struct {
	Path string `json:"path"`
	// Count is the number of requests due in the phase, including those
	// that failed or were never sent.
	Count   int64 `json:"count"`
	Success int64 `json:"success"`
	// SuccessRate is Success/Count; 0 when Count is 0.
	SuccessRate float64 `json:"success_rate"`
	// StatusCodes counts requests by status ("200", "503",
	// "grpc:Unavailable", "none").
	StatusCodes map[string]int64 `json:"status_codes,omitempty"`
	// Errors counts failed requests by message.
	Errors map[string]int64 `json:"errors,omitempty"`
	// Retries is the number of retries the proxies made for this path's
	// requests (from proxy metrics); 0 for the direct path.
	Retries int64 `json:"retries"`
	// Latency summarizes Histogram, in milliseconds (see Summarize).
	Latency Latency `json:"latency_ms"`
	// Histogram is the raw latency distribution in microseconds, measured
	// from each request's intended send time; nil when none was recorded.
	// It is not in result.json: Write stores it in HistFile and Read loads
	// it back.
	Histogram *hdrhistogram.Histogram `json:"-"`
	// HistFile is where Histogram is stored, relative to the results
	// folder ("hist/steady-meshed.hdr"); Write sets it, empty when
	// Histogram is nil.
	HistFile string `json:"hist,omitempty"`
}

// Latency is a latency distribution's summary in milliseconds. The zero
// value means nothing was recorded.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Summarize returns the percentiles of h, a histogram of microseconds, in
// milliseconds. Percentiles are HdrHistogram's (the highest value equivalent
// to the percentile's bucket). A nil or empty histogram gives the zero
// Latency.
func Summarize(h *hdrhistogram.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		P50:  ms(h.ValueAtPercentile(50)),
		P90:  ms(h.ValueAtPercentile(90)),
		P99:  ms(h.ValueAtPercentile(99)),
		P999: ms(h.ValueAtPercentile(99.9)),
		Max:  ms(h.Max()),
		Mean: h.Mean() / 1000,
	}
}

// Second is one second of one path's time series, by intended send time.
type Second struct {
	Path string `json:"path"`
	// OffsetS is the second's start, in whole seconds since Result.Start;
	// the row covers [OffsetS, OffsetS+1).
	OffsetS  int   `json:"offset_s"`
	Requests int64 `json:"requests"`
	// Errors counts the second's unsuccessful requests.
	Errors int64 `json:"errors"`
	// P50Ms and P99Ms are the second's latency percentiles; 0 when nothing
	// was sent.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// ActiveFaults names the faults in force during the second
	// ("kill echo-2"), as the runner knows them.
	ActiveFaults []string `json:"active_faults,omitempty"`
}

// SuccessRate is (Requests-Errors)/Requests, or 0 when Requests is 0.
func (s Second) SuccessRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Requests-s.Errors) / float64(s.Requests)
}

// Event is one step of the fault timeline as it actually happened.
type Event struct {
	// OffsetS is when the step was carried out, seconds since Result.Start.
	OffsetS float64 `json:"offset_s"`
	// Type is the fault ("kill", "restore", "latency", "abort",
	// "partition", "pause", …).
	Type   string `json:"type"`
	Target string `json:"target"`
	// Detail is the fault's parameters ("200ms", "30% 503"), if any.
	Detail string `json:"detail,omitempty"`
	OK     bool   `json:"ok"`
	// Err says why the step failed, when OK is false.
	Err string `json:"error,omitempty"`
}

// Label is a short description of e for plots and tables:
// "kill echo-2 (200ms)".
func (e Event) Label() string {
	s := e.Type
	if e.Target != "" {
		s += " " + e.Target
	}
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Assertion is one SLO check and its outcome (package results/assert
// evaluates them).
type Assertion struct {
	// Expr is the assertion as written in the scenario.
	Expr  string `json:"expr"`
	Phase string `json:"phase"`
	// Metric is the metric's key ("success_rate", "share(echo-2)").
	Metric string `json:"metric,omitempty"`
	// Op is one of < <= > >= == != or "within".
	Op string `json:"op,omitempty"`
	// Threshold is the right-hand number; for "within" the center.
	Threshold float64 `json:"threshold"`
	// Tolerance is the half-width of a "within" range; 0 otherwise.
	Tolerance float64 `json:"tolerance,omitempty"`
	// Measured is the metric's value; nil when it could not be measured
	// (Verdict is then Error or Fail, and Message says why).
	Measured *float64 `json:"measured,omitempty"`
	// Count is the count a rate metric is the ratio of (success_rate: K
	// successful requests of N due); nil for other metrics.
	Count *Count `json:"count,omitempty"`
	// Interval is the confidence interval the verdict was decided with:
	// one-sided binomial bounds for a Count, the median's interval over
	// interleaved trials for added latency; nil when the verdict compares
	// the measured value alone.
	Interval *Interval `json:"interval,omitempty"`
	// Rule names how the verdict was decided: RulePoint, RuleBinomial or
	// RuleInterval. Empty in files written before rules existed (they
	// were all RulePoint).
	Rule    string  `json:"rule,omitempty"`
	Verdict Verdict `json:"verdict"`
	// Message names the assertion, its threshold and the measured value,
	// and for Count and Interval the evidence: "FAIL [during_fault]
	// success_rate >= 0.999: measured 0.9975 (6 of 2400 failed; 95 %
	// upper bound 0.99891 < 0.999)".
	Message string `json:"message"`
	// KnownFailure, when set, says why this assertion is known to fail
	// today (the scenario's known_failure). Its FAIL or INCONCLUSIVE does
	// not decide the run's verdict; its ceiling, a separate assertion,
	// does.
	KnownFailure string `json:"known_failure,omitempty"`
}

// Counts says whether a's verdict decides the run: every assertion but a
// known failure that did not pass.
func (a Assertion) Counts() bool {
	return a.KnownFailure == "" || a.Verdict == Pass || a.Verdict == Error || a.Verdict == ""
}

// Rules an assertion's verdict is decided by (Assertion.Rule).
const (
	// RulePoint compares the measured value with the threshold.
	RulePoint = "point"
	// RuleBinomial judges a rate by its count: fail only when a one-sided
	// 95 % Clopper–Pearson bound is beyond the threshold, pass when the
	// measured rate meets it, inconclusive otherwise.
	RuleBinomial = "binomial"
	// RuleInterval judges a figure estimated over interleaved trials by
	// its 95 % confidence interval: pass when the whole interval meets the
	// threshold, fail when none of it does, inconclusive when it straddles.
	RuleInterval = "interval"
)

// Count is a rate's evidence: K events of N (successes of requests due).
type Count struct {
	K int64 `json:"k"`
	N int64 `json:"n"`
}

// Interval is a confidence interval. A nil bound is unbounded (too few
// samples for the level: JSON has no infinity).
type Interval struct {
	Lo *float64 `json:"lo,omitempty"`
	Hi *float64 `json:"hi,omitempty"`
	// Confidence is the level of each bound: for RuleBinomial each bound
	// is one-sided at this level, for RuleInterval the interval is
	// two-sided at (at least) this level.
	Confidence float64 `json:"confidence"`
	// Samples is the number of trials the interval is over (for a slope,
	// the points the line was fitted through); 0 for a Count.
	Samples int `json:"samples,omitempty"`
}

// NewInterval makes an Interval, leaving infinite or NaN bounds unset.
func NewInterval(lo, hi, confidence float64, samples int) *Interval {
	iv := &Interval{Confidence: confidence, Samples: samples}
	if !math.IsInf(lo, 0) && !math.IsNaN(lo) {
		iv.Lo = &lo
	}
	if !math.IsInf(hi, 0) && !math.IsNaN(hi) {
		iv.Hi = &hi
	}
	return iv
}

// Bounds returns the interval's bounds, −Inf and +Inf where unset.
func (iv *Interval) Bounds() (lo, hi float64) {
	lo, hi = math.Inf(-1), math.Inf(1)
	if iv.Lo != nil {
		lo = *iv.Lo
	}
	if iv.Hi != nil {
		hi = *iv.Hi
	}
	return lo, hi
}

// Trial is one repetition of one path in an interleaved A/B run.
type Trial struct {
	// Trial numbers the repetition from 1; the paths of one repetition
	// share it.
	Trial int `json:"trial"`
	// Phase is the phase the trial belongs to ("steady").
	Phase     string  `json:"phase"`
	Path      string  `json:"path"`
	OffsetS   float64 `json:"offset_s"`
	DurationS float64 `json:"duration_s"`
	Count     int64   `json:"count"`
	// SuccessRate is as in PathStats.
	SuccessRate float64 `json:"success_rate"`
	Latency     Latency `json:"latency_ms"`
}

// Judge sets r.Verdict from r.Err and r.Assertions and returns it: Error if
// the run did not complete or an assertion could not be evaluated, else Fail
// if an assertion failed, else Inconclusive if one could not be decided,
// else Pass.
func (r *Result) Judge() Verdict {
	v := Pass
	if r.Err != "" {
		v = Error
	}
	for _, a := range r.Assertions {
		switch {
		case !a.Counts():
		case a.Verdict == Error || a.Verdict == "":
			v = Error
		case a.Verdict == Fail && (v == Pass || v == Inconclusive):
			v = Fail
		case a.Verdict == Inconclusive && v == Pass:
			v = Inconclusive
		}
	}
	r.Verdict = v
	return v
}

// Failures returns an error that lists, one per line, the message of every
// assertion that did not pass and r.Err, or nil when there are none. It is
// what the CLI prints before exiting with ExitCode(r.Verdict).
func (r *Result) Failures() error {
	var errs []error
	if r.Err != "" {
		errs = append(errs, fmt.Errorf("ERROR run: %s", r.Err))
	}
	for _, a := range r.Assertions {
		if a.Verdict != Pass && a.Counts() {
			errs = append(errs, errors.New(a.Message))
		}
	}
	return errors.Join(errs...)
}

// KnownFailures lists the messages of the known failures that did not
// pass, which did not decide the verdict.
func (r *Result) KnownFailures() []string {
	var out []string
	for _, a := range r.Assertions {
		if !a.Counts() {
			out = append(out, a.Message)
		}
	}
	return out
}

// Phase returns the phase named name, or nil.
func (r *Result) Phase(name string) *Phase {
	for i := range r.Phases {
		if r.Phases[i].Name == name {
			return &r.Phases[i]
		}
	}
	return nil
}

// Path returns the stats of the path named name, or nil.
func (p *Phase) Path(name string) *PathStats {
	for i := range p.Paths {
		if p.Paths[i].Path == name {
			return &p.Paths[i]
		}
	}
	return nil
}

// namePattern is what phase and path names may look like: they become file
// names under hist/.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.]*(-[A-Za-z0-9_.]+)*$`)

// Validate reports the first thing that would make r unwritable or
// ambiguous: an unknown schema, a phase or path name that cannot be a file
// name, a duplicate phase, a duplicate path within a phase, or two
// histograms that would share a file.
func (r *Result) Validate() error {
	if r.Schema != "" && r.Schema != SchemaV1 {
		return fmt.Errorf("results: schema %q is not %q", r.Schema, SchemaV1)
	}
	if r.Scenario == "" {
		return errors.New("results: scenario name is empty")
	}
	phases := map[string]bool{}
	files := map[string]string{}
	for _, ph := range r.Phases {
		if !namePattern.MatchString(ph.Name) {
			return fmt.Errorf("results: phase name %q: use letters, digits, '_', '.' and inner '-'", ph.Name)
		}
		if phases[ph.Name] {
			return fmt.Errorf("results: phase %q appears twice", ph.Name)
		}
		phases[ph.Name] = true
		paths := map[string]bool{}
		for _, ps := range ph.Paths {
			if !namePattern.MatchString(ps.Path) {
				return fmt.Errorf("results: phase %q: path name %q: use letters, digits, '_', '.' and inner '-'", ph.Name, ps.Path)
			}
			if paths[ps.Path] {
				return fmt.Errorf("results: phase %q: path %q appears twice", ph.Name, ps.Path)
			}
			paths[ps.Path] = true
			f := histFile(ph.Name, ps.Path)
			if other, ok := files[f]; ok {
				return fmt.Errorf("results: phase %q path %q and %s would both write %s: rename one", ph.Name, ps.Path, other, f)
			}
			files[f] = fmt.Sprintf("phase %q path %q", ph.Name, ps.Path)
		}
	}
	return nil
}

func histFile(phase, path string) string {
	return "hist/" + phase + "-" + path + ".hdr"
}
