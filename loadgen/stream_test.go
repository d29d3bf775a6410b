package loadgen_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/loadgen"
	"github.com/skiff-mesh/skiff/simulator/demo"
)

// startDemo runs a skiff-demo server with a native gRPC listener; it
// returns the shared (gRPC over net/http) and the native addresses.
func startDemo(t *testing.T, b demo.Behaviour) (s *demo.Server, shared, native string) {
	t.Helper()
	s, err := demo.New(demo.Config{Name: "echo-0", GRPCAddr: "127.0.0.1:0", Seed: 7, Behaviour: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("demo Close: %v", err)
		}
	})
	return s, s.Addr(), s.GRPCAddr()
}

// Against skiff-demo's StreamEcho: every call asks for Messages messages
// and gets them, its latency covers the whole call, and a status the
// server puts in the trailers is the request's code.
func TestGRPCStreamAgainstDemo(t *testing.T) {
	for _, listener := range []string{"shared", "native"} {
		t.Run(listener, func(t *testing.T) {
			leakcheck.Check(t)
			s, shared, native := startDemo(t, demo.Behaviour{Latency: demo.Delays{{Delay: 5 * time.Millisecond, Percent: 100}}})
			addr := shared
			if listener == "native" {
				addr = native
			}
			res := run(t, loadgen.Options{
				Target: loadgen.Target{
					Protocol: loadgen.ProtocolGRPCStream,
					URL:      addr,
					// One call in four fails with UNAVAILABLE, decided by
					// the demo before its handler: a trailers-only answer.
					Header:       http.Header{demo.MetadataGRPCStatusCode: {"14:25"}},
					PayloadBytes: 16,
					Messages:     5,
				},
				Pacer:       loadgen.Constant(200),
				Duration:    time.Second,
				Connections: 2,
			})
			ok, unavailable := res.StatusCodes["grpc:OK"], res.StatusCodes["grpc:Unavailable"]
			if res.Requests != 199 || ok+unavailable != res.Requests || unavailable < 20 || unavailable > 80 {
				t.Errorf("requests = %d, codes = %v; want 199, about a quarter grpc:Unavailable", res.Requests, res.StatusCodes)
			}
			if res.Success != ok {
				t.Errorf("success = %d, want the %d grpc:OK calls", res.Success, ok)
			}
			for msg, n := range res.Errors {
				if !strings.HasPrefix(msg, "grpc:Unavailable: stream: skiff-demo echo-0: injected") || n != unavailable {
					t.Errorf("error %q ×%d; want every failure named grpc:Unavailable, as a stream", msg, n)
				}
			}
			if st := s.Stats(); st.GRPC["OK"] != ok || st.GRPC["Unavailable"] != unavailable {
				t.Errorf("the demo counted %v, the load %v", st.GRPC, res.StatusCodes)
			}
			// The demo delays each call 5 ms before its first message.
			if res.Latency.Min < 5000 {
				t.Errorf("min latency %d µs; a call lasts at least the demo's 5 ms", res.Latency.Min)
			}
			if res.Protocol != loadgen.ProtocolGRPCStream || res.Method != loadgen.StreamEchoMethod || res.Messages != 5 {
				t.Errorf("result says %s %s ×%d", res.Protocol, res.Method, res.Messages)
			}
		})
	}
}

// A stream is judged by how it ended, never by how it began: one that
// breaks after its first message, ends without trailers, ends OK short of
// its messages, or ends with an error after some, fails, with its code.
func TestGRPCStreamBrokenMidway(t *testing.T) {
	for _, tc := range []struct {
		name     string
		end      func(w http.ResponseWriter) // after one message was sent
		code     string
		contains string
	}{
		{"reset", func(http.ResponseWriter) { panic(http.ErrAbortHandler) }, "grpc:Internal", "stream broke after 1 of 3 messages"},
		{"no trailers", func(http.ResponseWriter) {}, "grpc:Internal", "stream broke after 1 of 3 messages"},
		{"short OK", func(w http.ResponseWriter) {
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
		}, "grpc:OK", "stream ended OK after 1 of 3 messages"},
		{"error after one", func(w http.ResponseWriter) {
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", strconv.Itoa(int(codes.Unavailable)))
			w.Header().Set(http.TrailerPrefix+"Grpc-Message", "upstream gone")
		}, "grpc:Unavailable", "stream broke after 1 of 3 messages: upstream gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t)
			var calls atomic.Int64
			srv := newHTTPServer(t, true, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				if r.URL.Path != loadgen.StreamEchoMethod || r.Header.Get(loadgen.MessagesMetadata) != "3" {
					w.Header().Set("Content-Type", "application/grpc")
					w.Header().Set("Grpc-Status", strconv.Itoa(int(codes.Unimplemented)))
					return
				}
				w.Header().Set("Content-Type", "application/grpc")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(grpcFrame(t, []byte("first")))
				http.NewResponseController(w).Flush()
				tc.end(w)
			})
			res := run(t, loadgen.Options{
				Target:   loadgen.Target{Protocol: loadgen.ProtocolGRPCStream, URL: strings.TrimPrefix(srv.URL, "http://")},
				Pacer:    loadgen.Constant(100),
				Duration: 500 * time.Millisecond,
			})
			if res.Requests != 49 || calls.Load() != 49 || res.Success != 0 || res.StatusCodes[tc.code] != 49 {
				t.Errorf("requests %d (server saw %d), success %d, codes %v; want 49 failures, all %s",
					res.Requests, calls.Load(), res.Success, res.StatusCodes, tc.code)
			}
			for msg := range res.Errors {
				if !strings.Contains(msg, tc.contains) {
					t.Errorf("error %q; want it to say %q", msg, tc.contains)
				}
			}
		})
	}
}

// grpcFrame is one length-prefixed, uncompressed gRPC message carrying v.
func grpcFrame(t *testing.T, v []byte) []byte {
	t.Helper()
	b, err := proto.Marshal(wrapperspb.Bytes(v))
	if err != nil {
		t.Fatal(err)
	}
	f := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(f[1:], uint32(len(b)))
	return append(f, b...)
}

// A mixed run alternates its kinds of call in a fixed cycle, over the same
// connections, and judges each by its own status.
func TestGRPCMix(t *testing.T) {
	for _, tc := range []struct {
		name                string
		unary, stream       int // weights
		wantUnary, wantStrm int64
	}{
		// 199 calls: 100 and 99 alternating.
		{"even", 1, 1, 100, 99},
		// Cycle a a b a: 49 turns (196 calls) and a a b.
		{"three to one", 3, 1, 149, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t)
			var unary, streams, short atomic.Int64
			addr, kinds := newEchoStreamServer(t, &unary, &streams, &short)
			res := run(t, loadgen.Options{
				Target: loadgen.Target{URL: addr, Messages: 4},
				Mix: []loadgen.Share{
					{Protocol: loadgen.ProtocolGRPC, Weight: tc.unary},
					{Protocol: loadgen.ProtocolGRPCStream, Weight: tc.stream},
				},
				Pacer:       loadgen.Constant(200),
				Duration:    time.Second,
				Connections: 2,
			})
			if unary.Load() != tc.wantUnary || streams.Load() != tc.wantStrm || short.Load() != 0 {
				t.Errorf("server saw %d unary and %d streaming calls (%d asking for other than 4 messages); want %d and %d",
					unary.Load(), streams.Load(), short.Load(), tc.wantUnary, tc.wantStrm)
			}
			if res.Requests != 199 || res.Success != 199 || res.StatusCodes["grpc:OK"] != 199 {
				t.Errorf("requests %d, success %d, codes %v; want 199 OK", res.Requests, res.Success, res.StatusCodes)
			}
			// Both kinds of call on each connection: a kind pinned to some
			// connections would meet their shares of a proxy's bounds alone.
			if got := kinds(); len(got) != 2 || got[0] != 2 || got[1] != 2 {
				t.Errorf("kinds of call per connection: %v, want both on each of 2", got)
			}
			if res.Protocol != "grpc+grpc-stream" || len(res.Mix) != 2 || res.Mix[1].Method != loadgen.StreamEchoMethod || res.Mix[0].Weight != tc.unary {
				t.Errorf("result says protocol %q, mix %+v", res.Protocol, res.Mix)
			}
		})
	}
}

// newEchoStreamServer serves Echo and StreamEcho (MessagesMetadata copies,
// 3 without it), counting the calls of each and the streams asking for
// other than 4 messages. kinds returns how many kinds of call each client
// connection carried.
func newEchoStreamServer(t *testing.T, unary, streams, notFour *atomic.Int64) (addr string, kinds func() []int) {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]map[string]bool{} // peer address → kinds
	note := func(ctx context.Context, kind string) {
		p, _ := peer.FromContext(ctx)
		mu.Lock()
		defer mu.Unlock()
		if seen[p.Addr.String()] == nil {
			seen[p.Addr.String()] = map[string]bool{}
		}
		seen[p.Addr.String()][kind] = true
	}
	kinds = func() []int {
		mu.Lock()
		defer mu.Unlock()
		var out []int
		for _, k := range seen {
			out = append(out, len(k))
		}
		return out
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "skiff.demo.v1.Echo",
		HandlerType: (*echoServer)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Echo",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.BytesValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				unary.Add(1)
				note(ctx, "unary")
				return in, nil
			},
		}},
		Streams: []grpc.StreamDesc{{
			StreamName:    "StreamEcho",
			ServerStreams: true,
			Handler: func(_ any, st grpc.ServerStream) error {
				in := new(wrapperspb.BytesValue)
				if err := st.RecvMsg(in); err != nil {
					return err
				}
				streams.Add(1)
				note(st.Context(), "stream")
				n := 3
				md, _ := metadata.FromIncomingContext(st.Context())
				if v := md.Get(loadgen.MessagesMetadata); len(v) == 1 {
					var err error
					if n, err = strconv.Atoi(v[0]); err != nil {
						return status.Error(codes.InvalidArgument, err.Error())
					}
				}
				if n != 4 {
					notFour.Add(1)
				}
				for range n {
					if err := st.SendMsg(in); err != nil {
						return err
					}
				}
				return nil
			},
		}},
	}, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().String(), kinds
}

func TestNormalizeStreamAndMix(t *testing.T) {
	s := loadgen.Options{Target: loadgen.Target{Protocol: loadgen.ProtocolGRPCStream, URL: "127.0.0.1:9"}}
	if err := s.Normalize(); err != nil || s.Target.Method != loadgen.StreamEchoMethod || s.Target.Messages != loadgen.DefaultMessages || s.Connections != 1 {
		t.Errorf("streaming defaults: %v, %+v, %d connections", err, s.Target, s.Connections)
	}
	mix := []loadgen.Share{{Protocol: loadgen.ProtocolGRPC}, {Protocol: loadgen.ProtocolGRPCStream, Weight: 2}}
	m := loadgen.Options{Target: loadgen.Target{URL: "grpc://127.0.0.1:9"}, Mix: mix}
	if err := m.Normalize(); err != nil || m.Target.URL != "127.0.0.1:9" || m.Connections != 1 || m.Target.Messages != loadgen.DefaultMessages ||
		m.Mix[0].Weight != 1 || m.Mix[0].Method != loadgen.EchoMethod || m.Mix[1].Method != loadgen.StreamEchoMethod {
		t.Errorf("mix defaults: %v, %+v, %+v", err, m.Target, m.Mix)
	}
	if mix[0].Weight != 0 || mix[0].Method != "" {
		t.Errorf("Normalize changed the caller's mix: %+v", mix)
	}

	target := loadgen.Target{URL: "127.0.0.1:9"}
	for name, o := range map[string]loadgen.Options{
		"messages":       {Target: loadgen.Target{Protocol: loadgen.ProtocolGRPCStream, URL: "127.0.0.1:9", Messages: -1}},
		"too many":       {Target: loadgen.Target{Protocol: loadgen.ProtocolGRPCStream, URL: "127.0.0.1:9", Messages: loadgen.MaxMessages + 1}},
		"stream path":    {Target: loadgen.Target{Protocol: loadgen.ProtocolGRPCStream, URL: "x:1/echo"}},
		"mix protocol":   {Target: loadgen.Target{Protocol: loadgen.ProtocolGRPC, URL: "127.0.0.1:9"}, Mix: mix},
		"mix method":     {Target: loadgen.Target{Method: loadgen.EchoMethod, URL: "127.0.0.1:9"}, Mix: mix},
		"mix unknown":    {Target: target, Mix: []loadgen.Share{{Protocol: "smtp"}, {Protocol: loadgen.ProtocolGRPC}}},
		"mix tcp method": {Target: target, Mix: []loadgen.Share{{Protocol: loadgen.ProtocolTCP, Method: "ECHO"}, {Protocol: loadgen.ProtocolGRPC}}},
		"mix bad url":    {Target: target, Mix: []loadgen.Share{{Protocol: loadgen.ProtocolTLS, URL: "tls-server"}, {Protocol: loadgen.ProtocolGRPC}}},
		"mix twice":      {Target: target, Mix: []loadgen.Share{{Protocol: loadgen.ProtocolGRPC}, {Protocol: loadgen.ProtocolGRPC}}},
		"mix weight":     {Target: target, Mix: []loadgen.Share{{Protocol: loadgen.ProtocolGRPC, Weight: loadgen.MaxMixWeight + 1}}},
		"mix negative":   {Target: target, Mix: []loadgen.Share{{Protocol: loadgen.ProtocolGRPC, Weight: -1}}},
		"mix bad method": {Target: target, Mix: []loadgen.Share{{Protocol: loadgen.ProtocolGRPC, Method: "Echo"}}},
		"mix three": {Target: target, Mix: []loadgen.Share{{Protocol: loadgen.ProtocolGRPC}, {Protocol: loadgen.ProtocolGRPCStream},
			{Protocol: loadgen.ProtocolGRPC}}},
	} {
		if err := o.Normalize(); err == nil {
			t.Errorf("%s: Normalize accepted %+v", name, o)
		}
	}
}
