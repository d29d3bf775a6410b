package loadgen_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/skiff-mesh/skiff/loadgen"
)

// Run 100 requests per second against a local server for half a second. The
// schedule is fixed by the pacer, so the request count is exact: hits are due
// at 10 ms, 20 ms, … 490 ms.
func ExampleRun() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()

	res, err := loadgen.Run(context.Background(), loadgen.Options{
		Target:      loadgen.Target{Protocol: loadgen.ProtocolHTTP1, URL: srv.URL},
		Pacer:       loadgen.Constant(100),
		Duration:    500 * time.Millisecond,
		Connections: 4,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("requests=%d success_rate=%.2f codes=%v\n", res.Requests, res.SuccessRate, res.StatusCodes)
	fmt.Println("p99 within max:", res.Latency.P99 <= res.Latency.Max)
	// Output:
	// requests=49 success_rate=1.00 codes=map[200:49]
	// p99 within max: true
}

// The declarative schedule shapes, as a scenario file would give them.
func ExampleRate() {
	for _, r := range []loadgen.Rate{
		{PerSecond: 200},
		{Shape: loadgen.ShapeRamp, From: 100, To: 500},
		{Shape: loadgen.ShapeSteps, Steps: loadgen.Steps{{Rate: 100, For: 10 * time.Second}, {Rate: 400, For: 20 * time.Second}}},
	} {
		p, err := r.Pacer(30 * time.Second)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%.0f/s at 0s, %.0f/s at 15s\n", p.Rate(0), p.Rate(15*time.Second))
	}
	// Output:
	// 200/s at 0s, 200/s at 15s
	// 100/s at 0s, 300/s at 15s
	// 100/s at 0s, 400/s at 15s
}
