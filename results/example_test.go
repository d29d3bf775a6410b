package results_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/results/assert"
)

// A runner's view: sample the processes, fill the Result, judge the
// assertions, write the folder and exit with the verdict's code.
func Example() {
	start := time.Now()

	// Sample memory and CPU of the processes under test while the load runs.
	s := &results.Sampler{Start: start, Interval: 100 * time.Millisecond}
	if err := s.Watch("harness", "loadgen", os.Getpid()); err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()

	// … drive load and inject faults; the load generator records
	// microsecond latencies into an HDR histogram per phase and path …
	h := hdrhistogram.New(1, 60_000_000, 3)
	for i := range 1000 {
		_ = h.RecordValue(int64(400 + i%300))
	}
	stop()
	<-done

	r := &results.Result{
		Scenario: "baseline", Environment: "local", GitRevision: "0123abc",
		Machine: results.CurrentMachine(), Seed: 1, Start: start, End: time.Now(),
		Phases: []results.Phase{{Name: "steady", StartS: 0, EndS: 5, Paths: []results.PathStats{{
			Path: results.PathMeshed, Count: 1000, Success: 999, SuccessRate: 0.999,
			StatusCodes: map[string]int64{"200": 999, "503": 1}, Latency: results.Summarize(h), Histogram: h,
		}}}},
		Processes: s.Processes(),
	}
	r.Processes[0].SetRequests(1000)

	// The runner computes each phase's metrics; assert judges them.
	ps := r.Phases[0].Paths[0]
	metrics := map[string]float64{"success_rate": ps.SuccessRate, "p99_ms": ps.Latency.P99}
	for _, expr := range []string{"p99_ms <= 25", "success_rate >= 0.9995"} {
		r.Assertions = append(r.Assertions, assert.Check(expr, "steady", metrics))
	}
	r.Judge()

	dir, _ := os.MkdirTemp("", "skiff-results-")
	defer os.RemoveAll(dir)
	if err := r.Write(filepath.Join(dir, "baseline")); err != nil {
		fmt.Println(err)
		return
	}
	if err := r.Failures(); err != nil {
		fmt.Println(err)
	}
	fmt.Println("exit", results.ExitCode(r.Verdict))
	// Output:
	// FAIL [steady] success_rate >= 0.9995: measured 0.999
	// exit 99
}
