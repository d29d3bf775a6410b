package results

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Noise is how busy the machine was while a run measured, apart from the
// run itself, so that a reader (and a gate) can tell a slow mesh from a
// busy neighbour. The load generator measures the CPU figures (loadgen.Noise:
// /proc/stat, and /proc/<pid>/stat of the harness and every process it
// started); the runner adds its own lateness and, for interleaved trials,
// the direct path's spread.
//
// CPU figures are in CPUs' worth of time: 0.5 is half of one CPU busy all
// the time. Percentages are of all CPUs' time.
type Noise struct {
	// CPUs is the number of CPUs the kernel lists.
	CPUs int `json:"cpus"`
	// Seconds is the time the CPU samples cover.
	Seconds float64 `json:"seconds"`
	// OtherCPU is the CPU used by processes outside the run, averaged over
	// the run; OtherCPUMax is the busiest second's.
	OtherCPU    float64 `json:"other_cpu"`
	OtherCPUMax float64 `json:"other_cpu_max"`
	// StealPct is the CPU time the hypervisor gave to other guests, in %
	// of all CPU time; StealMaxPct the worst second's.
	StealPct    float64 `json:"steal_pct"`
	StealMaxPct float64 `json:"steal_max_pct"`
	// RunCPU is the CPU the run's own processes used (harness, proxies,
	// backends): what the machine had left is CPUs − RunCPU − OtherCPU.
	RunCPU float64 `json:"run_cpu"`
	// LoadAvg1 is the one-minute load average at the end of the load, the
	// run's own processes included.
	LoadAvg1 float64 `json:"load_avg_1"`
	// SendLagP99Ms is how late the load generator itself sent requests,
	// at the 99th percentile, in ms: its own scheduling delay on this
	// machine (it is part of every measured latency).
	SendLagP99Ms float64 `json:"send_lag_p99_ms"`
	// DirectP50Ms is the direct path's median latency across interleaved
	// trials: a path without proxies, so its spread is the machine's own.
	// Nil without trials.
	DirectP50Ms *Spread `json:"direct_p50_ms,omitempty"`
}

// Spread is a figure's range over trials.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	Trials int     `json:"trials"`
}

// NewSpread summarizes values (one per trial); nil when there are none.
func NewSpread(values []float64) *Spread {
	if len(values) == 0 {
		return nil
	}
	v := slices.Sorted(slices.Values(values))
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return &Spread{Min: v[0], Median: med, Max: v[len(v)-1], Trials: len(v)}
}

// Thresholds above which Busy calls the machine busy. A quarter of a CPU
// used by others, on average, is a neighbour that competes with the run
// for every core of a small machine; 5 % steal is a host that takes the
// CPU away in slices as long as the latencies measured.
const (
	BusyOtherCPU = 0.25
	BusyStealPct = 5
)

// Busy reports whether the machine was busy apart from the run, and why.
// A nil Noise is not busy (nothing was measured: String says so).
func (n *Noise) Busy() (bool, string) {
	if n == nil {
		return false, ""
	}
	var why []string
	if n.OtherCPU >= BusyOtherCPU {
		why = append(why, fmt.Sprintf("other processes used %s of %d CPUs", fmtNum(n.OtherCPU), n.CPUs))
	}
	if n.StealPct >= BusyStealPct {
		why = append(why, fmt.Sprintf("the hypervisor stole %s %%", fmtNum(n.StealPct)))
	}
	return len(why) > 0, strings.Join(why, " and ")
}

// String is a one-line account for logs and summaries: "quiet: other
// processes 0.04 CPUs (busiest second 0.3) of 2, steal 0.2 % (max 1.1 %),
// load 1.2; load generator late by 0.08 ms at p99; direct p50 0.41 ms
// (0.38..0.47 over 6 trials)".
func (n *Noise) String() string {
	if n == nil {
		return "not measured"
	}
	word := "quiet"
	if busy, _ := n.Busy(); busy {
		word = "BUSY"
	}
	s := fmt.Sprintf("%s: other processes %s CPUs (busiest second %s) of %d, steal %s %% (max %s %%), run %s CPUs, load %s",
		word, fmtNum2(n.OtherCPU), fmtNum2(n.OtherCPUMax), n.CPUs, fmtNum2(n.StealPct), fmtNum2(n.StealMaxPct), fmtNum2(n.RunCPU), fmtNum2(n.LoadAvg1))
	s += fmt.Sprintf("; load generator late by %s ms at p99", fmtMs(n.SendLagP99Ms))
	if d := n.DirectP50Ms; d != nil {
		s += fmt.Sprintf("; direct p50 %s ms (%s..%s over %d trials)", fmtMs(d.Median), fmtMs(d.Min), fmtMs(d.Max), d.Trials)
	}
	return s
}

// fmtNum2 formats a small measurement with two decimals.
func fmtNum2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
