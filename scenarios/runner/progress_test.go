package runner

import (
	"bytes"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/loadgen"
)

func TestSecondStatus(t *testing.T) {
	for _, tc := range []struct {
		s    loadgen.Second
		want string
	}{
		{loadgen.Second{Requests: 400, Success: 400, P99US: 1234}, "due  400/s  success 100.00%  failed 0  outstanding 0  p99    1.23 ms"},
		// Two requests timing out: due in this second, not answered yet.
		{loadgen.Second{Requests: 398, Success: 398, Outstanding: 2, P99US: 1234}, "due  400/s  success  99.50%  failed 0  outstanding 2  p99    1.23 ms"},
		{loadgen.Second{Requests: 400, Success: 396, Errors: 4, P99US: 52_100}, "due  400/s  success  99.00%  failed 4  outstanding 0  p99   52.10 ms"},
		// One short of all is not 100.00 %.
		{loadgen.Second{Requests: 99_999, Success: 99_999, Outstanding: 1}, "due 100000/s  success  99.99%  failed 0  outstanding 1  p99    0.00 ms"},
		{loadgen.Second{}, "due    0/s  success      —   failed 0  outstanding 0  p99    0.00 ms"},
	} {
		if got := secondStatus(tc.s); got != tc.want {
			t.Errorf("secondStatus(%+v)\n got %q\nwant %q", tc.s, got, tc.want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	var out bytes.Buffer
	r := &run{o: Options{Progress: &out}}
	r.setActive("kill echo-2", true)
	f := r.progressSecond(2*time.Second, 10*time.Second)
	f(loadgen.Second{Second: 13, Requests: 398, Success: 398, Outstanding: 2, P99US: 1500})
	want := "t= 12.0s  due  400/s  success  99.50%  failed 0  outstanding 2  p99    1.50 ms  faults: kill echo-2\n"
	if out.String() != want {
		t.Errorf("progress line\n got %q\nwant %q", out.String(), want)
	}
}
