package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestErrorMessage(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "http://127.0.0.1:4242/x", Err: &net.OpError{
		Op: "dial", Net: "tcp",
		Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242},
		Err:  os.NewSyscallError("connect", syscall.ECONNREFUSED),
	}}
	for _, tc := range []struct {
		s    sample
		want string
	}{
		{sample{dropped: true, out: outcome{code: CodeNone}}, "dropped: in-flight limit"},
		{sample{out: outcome{code: CodeNone, err: refused}}, "dial tcp: connect: connection refused"},
		{sample{out: outcome{code: CodeNone, err: fmt.Errorf("wrapped: %w", context.DeadlineExceeded)}}, "timeout"},
		{sample{out: outcome{code: "200", err: errors.New("read 10.0.0.1:80->10.0.0.2:5555: reset")}}, "read <addr>-><addr>: reset"},
		{sample{out: outcome{code: "503"}}, "503 Service Unavailable"},
		{sample{out: outcome{code: "299"}}, "status 299"},
		{sample{out: outcome{code: "grpc:Unavailable", detail: `dial tcp [::1]:50051: refused`}}, "grpc:Unavailable: dial tcp <addr>: refused"},
		{sample{out: outcome{code: "grpc:Internal"}}, "grpc:Internal"},
	} {
		if got := errorMessage(tc.s); got != tc.want {
			t.Errorf("errorMessage(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestDefaultSuccess(t *testing.T) {
	for code, want := range map[string]bool{
		"200": true, "204": true, "302": true, "399": true, "grpc:OK": true,
		"199": false, "404": false, "503": false, CodeNone: false, "grpc:Unavailable": false, "": false,
	} {
		if got := DefaultSuccess(code); got != want {
			t.Errorf("DefaultSuccess(%q) = %v", code, got)
		}
	}
}

func BenchmarkRecord(b *testing.B) {
	o := Options{Target: Target{URL: "http://127.0.0.1:1/"}, Duration: time.Minute}
	if err := o.Normalize(); err != nil {
		b.Fatal(err)
	}
	rec := newRecorder(&o)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var i time.Duration
		for pb.Next() {
			i += 997 * time.Microsecond
			at := i % time.Minute
			rec.record(sample{intended: at, sent: at + 50*time.Microsecond, done: at + 700*time.Microsecond, out: outcome{code: "200"}})
		}
	})
}
