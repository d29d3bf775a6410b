package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	policyv1 "github.com/skiff-mesh/skiff/mesh/api/policy/v1"
)

// fakeStream is a server stream without gRPC: it records what is sent and
// cancels the call after the first message, so that one fuzz input costs
// one policy and the teardown.
type fakeStream[T any] struct {
	ctx    context.Context
	cancel context.CancelFunc
	sent   []*T
}

func (s *fakeStream[T]) Send(m *T) error {
	s.sent = append(s.sent, m)
	s.cancel()
	return nil
}
func (s *fakeStream[T]) Context() context.Context     { return s.ctx }
func (s *fakeStream[T]) SetHeader(metadata.MD) error  { return nil }
func (s *fakeStream[T]) SendHeader(metadata.MD) error { return nil }
func (s *fakeStream[T]) SetTrailer(metadata.MD)       {}
func (s *fakeStream[T]) SendMsg(any) error            { return nil }
func (s *fakeStream[T]) RecvMsg(any) error            { return nil }

var (
	_ policyv1.Policy_WatchOutboundServer = (*fakeStream[policyv1.OutboundPolicy])(nil)
	_ policyv1.Policy_WatchInboundServer  = (*fakeStream[policyv1.InboundPolicy])(nil)
)

// watchBound is how long one input may keep a handler: the stream is
// cancelled at its first message.
const watchBound = 5 * time.Second

// check runs one call on a fake stream and checks the invariants both
// watches share: it ends within watchBound, sends at most one message,
// and ends with Canceled after it or InvalidArgument without it.
func check[T any](t *testing.T, what string, call func(*fakeStream[T]) error, msg func(*T) proto.Message) *T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), watchBound)
	defer cancel()
	stream := &fakeStream[T]{ctx: ctx, cancel: cancel}
	start := time.Now()
	err := call(stream)
	if d := time.Since(start); d >= watchBound {
		t.Fatalf("%s took %v: unbounded", what, d)
	}
	switch code := status.Code(err); {
	case len(stream.sent) > 1:
		t.Fatalf("%s sent %d messages", what, len(stream.sent))
	case len(stream.sent) == 1:
		if code != codes.Canceled {
			t.Fatalf("%s sent its policy, then ended with %v, want Canceled", what, err)
		}
		if _, err := proto.Marshal(msg(stream.sent[0])); err != nil {
			t.Fatalf("%s sent a message that does not marshal: %v", what, err)
		}
		return stream.sent[0]
	case code != codes.InvalidArgument:
		t.Fatalf("%s ended with %v and no message, want InvalidArgument", what, err)
	}
	return nil
}

// FuzzWatchOutbound feeds arbitrary bytes, as a client could send them,
// to Policy.WatchOutbound: it must not panic, must end once cancelled,
// and must send the default policy of a normalised authority or refuse
// with InvalidArgument.
func FuzzWatchOutbound(f *testing.F) {
	for _, req := range []*policyv1.WatchOutboundRequest{
		{Authority: "web.shop.svc.cluster.local:8080"},
		{Authority: "Web.Shop.:8080"},
		{Authority: "10.0.0.1:8080"},
		{Authority: "[::1]:80"},
		{Authority: ".."},
		{Authority: "web:0"},
		{Authority: "web shop:80"},
		{Authority: strings.Repeat("a.", 200) + "com:80"},
		{},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	srv := NewServer(Config{})
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &policyv1.WatchOutboundRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		p := check(t, "WatchOutbound("+req.GetAuthority()+")",
			func(s *fakeStream[policyv1.OutboundPolicy]) error { return srv.WatchOutbound(req, s) },
			func(p *policyv1.OutboundPolicy) proto.Message { return p })
		if p != nil && (p.GetAuthority() == "" || len(p.GetRoutes()) != 1) {
			t.Fatalf("WatchOutbound(%q) sent %v, want the default policy", req.GetAuthority(), p)
		}
	})
}

// FuzzWatchInbound does the same for Policy.WatchInbound: the default
// policy of a port from 1 to 65535, InvalidArgument otherwise.
func FuzzWatchInbound(f *testing.F) {
	for _, req := range []*policyv1.WatchInboundRequest{
		{Port: 8080},
		{Port: 1},
		{Port: 65535},
		{Port: 65536},
		{Port: 0},
		{Port: 1<<32 - 1},
		{},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) // a varint past 32 bits
	srv := NewServer(Config{})
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &policyv1.WatchInboundRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		p := check(t, "WatchInbound", func(s *fakeStream[policyv1.InboundPolicy]) error { return srv.WatchInbound(req, s) },
			func(p *policyv1.InboundPolicy) proto.Message { return p })
		valid := req.GetPort() >= 1 && req.GetPort() <= 65535
		if (p != nil) != valid || p != nil && p.GetPort() != req.GetPort() {
			t.Fatalf("WatchInbound(port %d) sent %v", req.GetPort(), p)
		}
	})
}
