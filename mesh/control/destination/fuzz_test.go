package destination

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
)

// fakeStream is a Watch stream without gRPC: it records what is sent and
// cancels the call after the first message, so that one fuzz input costs
// one subscription, one snapshot and the teardown.
type fakeStream struct {
	ctx    context.Context
	cancel context.CancelFunc
	sent   []*destinationv1.Update
}

var _ destinationv1.Destination_WatchServer = (*fakeStream)(nil)

func (s *fakeStream) Send(u *destinationv1.Update) error {
	s.sent = append(s.sent, u)
	s.cancel()
	return nil
}
func (s *fakeStream) Context() context.Context     { return s.ctx }
func (s *fakeStream) SetHeader(metadata.MD) error  { return nil }
func (s *fakeStream) SendHeader(metadata.MD) error { return nil }
func (s *fakeStream) SetTrailer(metadata.MD)       {}
func (s *fakeStream) SendMsg(any) error            { return nil }
func (s *fakeStream) RecvMsg(any) error            { return nil }

// watchBound is how long one input may keep the handler: the stream is
// cancelled at its first message, so anything near it is a handler that
// does not end.
const watchBound = 5 * time.Second

// FuzzWatch feeds arbitrary bytes, as a client could send them, to
// Destination.Watch: unmarshalled into a WatchRequest, served on a fake
// stream that cancels after the first message. The handler must not
// panic, must end within watchBound, must send at most one message (the
// snapshot) and must answer anything else with InvalidArgument or the
// cancellation; afterwards no subscription may be left.
func FuzzWatch(f *testing.F) {
	for _, req := range []*destinationv1.WatchRequest{
		{Authority: "web.shop.svc.cluster.local:8080"},
		{Authority: "Web.Shop.:8080", Proxy: &destinationv1.ProxyContext{ProxyId: "p-1", Pod: "web-0", Namespace: "shop"}},
		{Authority: "unknown.shop:80"},
		{Authority: "10.0.0.1:8080"},
		{Authority: "[::1]:8080"},
		{Authority: ".."},
		{Authority: "web..shop:8080"},
		{Authority: "web.shop:99999"},
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
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}) // a length past the end
	f.Add([]byte{0x12, 0x02, 0x0a, 0x00})             // proxy context with an empty id

	reg := &registry.Registry{}
	if err := reg.Set("web.shop.svc.cluster.local:8080", []discovery.Endpoint{
		{Addr: "10.0.0.1:8080", Weight: 1, Meshed: true, Identity: "spiffe://cluster.local/ns/shop/sa/web", Labels: map[string]string{"pod": "web-0"}},
		{Addr: "10.0.0.2:8080", Weight: 2, Protocol: discovery.ProtocolH2C},
	}); err != nil {
		f.Fatal(err)
	}
	if err := reg.Set("web.shop:8080", nil); err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(Config{Source: reg})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &destinationv1.WatchRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), watchBound)
		defer cancel()
		stream := &fakeStream{ctx: ctx, cancel: cancel}
		start := time.Now()
		err := srv.Watch(req, stream)
		if d := time.Since(start); d >= watchBound {
			t.Fatalf("Watch(%q) took %v: unbounded", req.GetAuthority(), d)
		}
		switch code := status.Code(err); {
		case len(stream.sent) > 1:
			t.Fatalf("Watch(%q) sent %d messages for one state", req.GetAuthority(), len(stream.sent))
		case len(stream.sent) == 1:
			if code != codes.Canceled {
				t.Fatalf("Watch(%q) sent a snapshot, then ended with %v, want Canceled", req.GetAuthority(), err)
			}
			if stream.sent[0].GetSnapshot() == nil {
				t.Fatalf("Watch(%q) started with %v, not a snapshot", req.GetAuthority(), stream.sent[0])
			}
			if _, err := proto.Marshal(stream.sent[0]); err != nil {
				t.Fatalf("Watch(%q) sent a message that does not marshal: %v", req.GetAuthority(), err)
			}
		case code != codes.InvalidArgument:
			t.Fatalf("Watch(%q) ended with %v and no message, want InvalidArgument", req.GetAuthority(), err)
		}
		srv.mu.Lock()
		left := len(srv.subs)
		srv.mu.Unlock()
		if left != 0 {
			t.Fatalf("Watch(%q) left %d subscriptions behind", req.GetAuthority(), left)
		}
	})
}
