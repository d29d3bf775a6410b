package demo

import (
	"context"
	"errors"
	"io"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Names of the gRPC Echo service and its methods. Requests and responses
// are google.protobuf.BytesValue.
const (
	// EchoService is the fully qualified service name, also the name its
	// health status is registered under.
	EchoService = "skiff.demo.v1.Echo"
	// EchoMethod is the unary echo: the response carries the request value.
	EchoMethod = "/skiff.demo.v1.Echo/Echo"
	// StreamEchoMethod is server streaming: the request value repeated
	// MetadataCount times (DefaultStreamCount if absent).
	StreamEchoMethod = "/skiff.demo.v1.Echo/StreamEcho"
	// ChatMethod is bidirectional: every message is echoed.
	ChatMethod = "/skiff.demo.v1.Echo/Chat"
)

// gRPC metadata keys understood by the Echo service besides the fault
// parameters ParamStatus, ParamDelay, ParamSize and ParamClose.
const (
	// MetadataCount sets the number of StreamEcho responses.
	MetadataCount = "count"
	// MetadataGRPCStatusCode injects gRPC codes by number, in the syntax of
	// ParamStatus: "14:10,8:5" (Unavailable for 10 %, ResourceExhausted for
	// 5 %); a bare "14" means every call. It takes precedence over status.
	MetadataGRPCStatusCode = "grpc-status-code"
	// ReplicaMetadata is the response header metadata carrying Config.Name.
	ReplicaMetadata = "skiff-demo-replica"
)

// DefaultStreamCount is the number of StreamEcho responses without
// MetadataCount.
const DefaultStreamCount = 3

var (
	streamEchoDesc = grpc.StreamDesc{StreamName: "StreamEcho", ServerStreams: true}
	chatDesc       = grpc.StreamDesc{StreamName: "Chat", ServerStreams: true, ClientStreams: true}
)

// Echo calls EchoMethod on cc and returns the echoed payload. Fault
// metadata travels in ctx (metadata.AppendToOutgoingContext).
func Echo(ctx context.Context, cc grpc.ClientConnInterface, payload []byte, opts ...grpc.CallOption) ([]byte, error) {
	out := new(wrapperspb.BytesValue)
	if err := cc.Invoke(ctx, EchoMethod, wrapperspb.Bytes(payload), out, opts...); err != nil {
		return nil, err
	}
	return out.GetValue(), nil
}

// StreamEcho calls StreamEchoMethod asking for count responses (count < 0
// leaves the server default) and returns them all.
func StreamEcho(ctx context.Context, cc grpc.ClientConnInterface, payload []byte, count int, opts ...grpc.CallOption) ([][]byte, error) {
	if count >= 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, MetadataCount, strconv.Itoa(count))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := cc.NewStream(ctx, &streamEchoDesc, StreamEchoMethod, opts...)
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(wrapperspb.Bytes(payload)); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		m := new(wrapperspb.BytesValue)
		if err := st.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, m.GetValue())
	}
}

// ChatStream is a client of ChatMethod. Send and Recv may run in separate
// goroutines; neither is safe for concurrent use with itself.
type ChatStream struct {
	st grpc.ClientStream
}

// Chat opens a ChatMethod stream; it ends with ctx or after CloseSend once
// Recv returned io.EOF.
func Chat(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) (*ChatStream, error) {
	st, err := cc.NewStream(ctx, &chatDesc, ChatMethod, opts...)
	if err != nil {
		return nil, err
	}
	return &ChatStream{st: st}, nil
}

// Send sends one message. An io.EOF means the stream ended: Recv tells why.
func (c *ChatStream) Send(payload []byte) error {
	return c.st.SendMsg(wrapperspb.Bytes(payload))
}

// Recv returns the next echoed message, io.EOF at the clean end.
func (c *ChatStream) Recv() ([]byte, error) {
	m := new(wrapperspb.BytesValue)
	if err := c.st.RecvMsg(m); err != nil {
		return nil, err
	}
	return m.GetValue(), nil
}

// CloseSend tells the server no more messages follow.
func (c *ChatStream) CloseSend() error { return c.st.CloseSend() }

// Header returns the response header metadata, which carries
// ReplicaMetadata; it blocks until the header arrives.
func (c *ChatStream) Header() (metadata.MD, error) { return c.st.Header() }
