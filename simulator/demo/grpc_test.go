package demo

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/skiff-mesh/skiff/internal/testwait"
)

// grpcMatrix runs f against gRPC over h2c on the shared port and against
// the native gRPC listener, each with its own server.
func grpcMatrix(t *testing.T, cfg Config, f func(t *testing.T, s *Server, cc *grpc.ClientConn)) {
	for _, target := range []string{"shared", "native"} {
		t.Run(target, func(t *testing.T) {
			cfg := cfg
			cfg.GRPCAddr = "127.0.0.1:0"
			s := startServer(t, cfg)
			addr := s.Addr()
			if target == "native" {
				addr = s.GRPCAddr()
			}
			cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cc.Close() })
			f(t, s, cc)
		})
	}
}

func withMD(ctx context.Context, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func TestGRPCEcho(t *testing.T) {
	grpcMatrix(t, Config{Name: "g-1"}, func(t *testing.T, s *Server, cc *grpc.ClientConn) {
		var hdr metadata.MD
		got, err := Echo(t.Context(), cc, []byte("hello"), grpc.Header(&hdr))
		if err != nil || string(got) != "hello" {
			t.Fatalf("Echo = %q, %v", got, err)
		}
		if r := hdr.Get(ReplicaMetadata); len(r) != 1 || r[0] != "g-1" {
			t.Errorf("replica metadata %v, want [g-1]", r)
		}
		got, err = Echo(withMD(t.Context(), ParamSize, "1000"), cc, []byte("x"))
		if err != nil || len(got) != 1000 {
			t.Fatalf("Echo size=1000 = %d bytes, %v", len(got), err)
		}
		if st := s.Stats(); st.GRPC["OK"] != 2 || st.Requests != 2 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestGRPCStreamEcho(t *testing.T) {
	grpcMatrix(t, Config{}, func(t *testing.T, s *Server, cc *grpc.ClientConn) {
		msgs, err := StreamEcho(t.Context(), cc, []byte("r"), 4)
		if err != nil || len(msgs) != 4 || string(msgs[3]) != "r" {
			t.Fatalf("StreamEcho(4) = %q, %v", msgs, err)
		}
		msgs, err = StreamEcho(t.Context(), cc, []byte("d"), -1)
		if err != nil || len(msgs) != DefaultStreamCount {
			t.Fatalf("StreamEcho(default) = %q, %v", msgs, err)
		}
		_, err = StreamEcho(withMD(t.Context(), MetadataCount, "many"), cc, []byte("d"), -1)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "count") {
			t.Fatalf("count=many: %v", err)
		}
	})
}

func TestGRPCChat(t *testing.T) {
	grpcMatrix(t, Config{Name: "g-2"}, func(t *testing.T, s *Server, cc *grpc.ClientConn) {
		ch, err := Chat(t.Context(), cc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"a", "bb", "ccc"} {
			if err := ch.Send([]byte(m)); err != nil {
				t.Fatal(err)
			}
			got, err := ch.Recv()
			if err != nil || string(got) != m {
				t.Fatalf("Recv = %q, %v; want %q", got, err, m)
			}
		}
		if md, err := ch.Header(); err != nil || md.Get(ReplicaMetadata)[0] != "g-2" {
			t.Errorf("header %v, %v", md, err)
		}
		if err := ch.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := ch.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("Recv after CloseSend = %v, want io.EOF", err)
		}
	})
}

func TestGRPCHealth(t *testing.T) {
	grpcMatrix(t, Config{Behaviour: Behaviour{ErrorRate: 1}}, func(t *testing.T, s *Server, cc *grpc.ClientConn) {
		hc := healthpb.NewHealthClient(cc)
		for _, svc := range []string{"", EchoService} {
			resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Check(%q) = %v, %v", svc, resp, err)
			}
		}
		if st := s.Stats(); st.Requests != 0 {
			t.Errorf("health checks were counted: %+v", st)
		}
	})
}

func TestGRPCFaults(t *testing.T) {
	cases := []struct {
		md   []string
		want codes.Code
		msg  string
	}{
		{[]string{ParamStatus, "503"}, codes.Unavailable, "injected"},
		{[]string{ParamStatus, "429"}, codes.ResourceExhausted, "injected"},
		{[]string{ParamStatus, "500"}, codes.Internal, "injected"},
		{[]string{ParamStatus, "200"}, codes.OK, ""},
		{[]string{MetadataGRPCStatusCode, "8"}, codes.ResourceExhausted, "injected"},
		{[]string{MetadataGRPCStatusCode, "9:100", ParamStatus, "503"}, codes.FailedPrecondition, "injected"},
		{[]string{ParamStatus, "abc"}, codes.InvalidArgument, `status="abc"`},
		{[]string{ParamDelay, "2parsecs"}, codes.InvalidArgument, `delay="2parsecs"`},
		{[]string{MetadataGRPCStatusCode, "17"}, codes.InvalidArgument, "grpc-status-code"},
		{[]string{ParamDelay, "1us"}, codes.OK, ""},
	}
	grpcMatrix(t, Config{}, func(t *testing.T, s *Server, cc *grpc.ClientConn) {
		for _, tc := range cases {
			_, err := Echo(withMD(t.Context(), tc.md...), cc, []byte("x"))
			if status.Code(err) != tc.want || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Errorf("%v: got %v, want %v containing %q", tc.md, err, tc.want, tc.msg)
			}
		}
		// Streams are faulted too.
		if _, err := StreamEcho(withMD(t.Context(), ParamStatus, "503"), cc, nil, 1); status.Code(err) != codes.Unavailable {
			t.Errorf("StreamEcho status=503: %v", err)
		}

		const n = 500
		count := map[codes.Code]int{}
		for range n {
			_, err := Echo(withMD(t.Context(), ParamStatus, "503:20"), cc, nil)
			count[status.Code(err)]++
		}
		within(t, "Unavailable", count[codes.Unavailable], n, 0.2)
		if st := s.Stats(); st.GRPC["Unavailable"] != int64(count[codes.Unavailable])+2 {
			t.Errorf("stats %+v disagree with %v", st.GRPC, count)
		}

		if err := s.SetBehaviour(Behaviour{ErrorRate: 1, ErrorStatus: 429}); err != nil {
			t.Fatal(err)
		}
		if _, err := Echo(t.Context(), cc, nil); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("behaviour 429: %v", err)
		}
	})
}

func TestGRPCClose(t *testing.T) {
	grpcMatrix(t, Config{}, func(t *testing.T, s *Server, cc *grpc.ClientConn) {
		if _, err := Echo(withMD(t.Context(), ParamClose, "true"), cc, nil); status.Code(err) != codes.Unavailable {
			t.Errorf("close=true: %v, want Unavailable", err)
		}
		if st := s.Stats(); st.Resets != 1 {
			t.Errorf("resets %d, want 1", st.Resets)
		}
		// The client reconnects.
		if got, err := Echo(t.Context(), cc, []byte("again"), grpc.WaitForReady(true)); err != nil || string(got) != "again" {
			t.Errorf("after close: %q, %v", got, err)
		}
	})
}

func TestGRPCDelayCancel(t *testing.T) {
	grpcMatrix(t, Config{}, func(t *testing.T, s *Server, cc *grpc.ClientConn) {
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, err := Echo(withMD(ctx, ParamDelay, "1h"), cc, nil)
			errc <- err
		}()
		testwait.For(t, "call in flight", func() (bool, error) { return s.Stats().InFlight == 1, nil })
		cancel()
		if err := <-errc; status.Code(err) != codes.Canceled {
			t.Errorf("cancelled call: %v", err)
		}
		testwait.For(t, "handler to return", func() (bool, error) { return s.Stats().InFlight == 0, nil })
		if st := s.Stats(); st.Cancelled != 1 {
			t.Errorf("cancelled %d, want 1", st.Cancelled)
		}
	})
}
