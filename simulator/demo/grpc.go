package demo

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/skiff-mesh/skiff/faultinject/httpfault"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// GRPCCode maps an HTTP status to the gRPC code that an injected status
// produces: 2xx → OK, 400 → InvalidArgument, 401 → Unauthenticated,
// 403 → PermissionDenied, 404 → NotFound, 408 and 504 → DeadlineExceeded,
// 409 → Aborted, 412 → FailedPrecondition, 429 → ResourceExhausted,
// 499 → Canceled, 500 → Internal, 501 → Unimplemented, 502 and 503 →
// Unavailable, anything else → Unknown.
func GRPCCode(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusConflict:
		return codes.Aborted
	case http.StatusPreconditionFailed:
		return codes.FailedPrecondition
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case 499:
		return codes.Canceled
	case http.StatusInternalServerError:
		return codes.Internal
	case http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	if httpStatus >= 200 && httpStatus < 300 {
		return codes.OK
	}
	return codes.Unknown
}

// echoHandler is the server side of the Echo service; HandlerType of the
// hand-written service descriptor.
type echoHandler interface {
	Echo(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
	StreamEcho(*wrapperspb.BytesValue, grpc.ServerStream) error
	Chat(grpc.ServerStream) error
}

var _ echoHandler = (*echoService)(nil)

// echoServiceDesc describes skiff.demo.v1.Echo without generated code:
//
//	service Echo {
//	  rpc Echo(google.protobuf.BytesValue) returns (google.protobuf.BytesValue);
//	  rpc StreamEcho(google.protobuf.BytesValue) returns (stream google.protobuf.BytesValue);
//	  rpc Chat(stream google.protobuf.BytesValue) returns (stream google.protobuf.BytesValue);
//	}
var echoServiceDesc = grpc.ServiceDesc{
	ServiceName: EchoService,
	HandlerType: (*echoHandler)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(echoHandler).Echo(ctx, req.(*wrapperspb.BytesValue))
			}
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: EchoMethod}, h)
		},
	}},
	Streams: []grpc.StreamDesc{
		{
			StreamName: "StreamEcho",
			Handler: func(srv any, stream grpc.ServerStream) error {
				in := new(wrapperspb.BytesValue)
				if err := stream.RecvMsg(in); err != nil {
					return err
				}
				return srv.(echoHandler).StreamEcho(in, stream)
			},
			ServerStreams: true,
		},
		{
			StreamName: "Chat",
			Handler: func(srv any, stream grpc.ServerStream) error {
				return srv.(echoHandler).Chat(stream)
			},
			ServerStreams: true,
			ClientStreams: true,
		},
	},
	Metadata: "skiff/demo/v1/echo.proto",
}

// echoService implements the Echo service for one Server. Faults were
// already applied by the interceptors, which put them in the context.
type echoService struct{ s *Server }

type faultsKey struct{}

func faultsFrom(ctx context.Context) *Faults {
	if f, ok := ctx.Value(faultsKey{}).(*Faults); ok {
		return f
	}
	return &Faults{}
}

// reply returns v, or a generated payload if the call asked for a size.
func reply(f *Faults, v []byte) *wrapperspb.BytesValue {
	if f.SizeSet {
		v = make([]byte, f.Size)
		fillPayload(v)
	}
	return wrapperspb.Bytes(v)
}

func (e *echoService) Echo(ctx context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return reply(faultsFrom(ctx), in.GetValue()), nil
}

// maxCount bounds the metadata "count" of StreamEcho.
const maxCount = 100000

func (e *echoService) StreamEcho(in *wrapperspb.BytesValue, stream grpc.ServerStream) error {
	ctx := stream.Context()
	count := DefaultStreamCount
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(MetadataCount); len(v) > 0 {
		n, err := strconv.Atoi(strings.TrimSpace(v[len(v)-1]))
		if err != nil || n < 0 || n > maxCount {
			return status.Error(codes.InvalidArgument, (&ParamError{Param: MetadataCount, Value: v[len(v)-1],
				Reason: "want a message count between 0 and " + strconv.Itoa(maxCount)}).Error())
		}
		count = n
	}
	out := reply(faultsFrom(ctx), in.GetValue())
	for range count {
		if err := stream.SendMsg(out); err != nil {
			return err
		}
	}
	return nil
}

func (e *echoService) Chat(stream grpc.ServerStream) error {
	f := faultsFrom(stream.Context())
	for {
		in := new(wrapperspb.BytesValue)
		if err := stream.RecvMsg(in); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.SendMsg(reply(f, in.GetValue())); err != nil {
			return err
		}
	}
}

// isEcho reports whether a full method belongs to the Echo service; the
// health service is neither faulted nor counted.
func isEcho(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+EchoService+"/")
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !isEcho(info.FullMethod) {
		return handler(ctx, req)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(ReplicaMetadata, s.cfg.Name))
	ctx, reset, held, err := s.grpcFaults(ctx)
	var resp any
	if err == nil {
		resp, err = handler(ctx, req)
	}
	s.grpcDone(reset, held, err)
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !isEcho(info.FullMethod) {
		return handler(srv, ss)
	}
	_ = ss.SetHeader(metadata.Pairs(ReplicaMetadata, s.cfg.Name))
	ctx, reset, held, err := s.grpcFaults(ss.Context())
	if err == nil {
		err = handler(srv, ctxStream{ServerStream: ss, ctx: ctx})
	}
	s.grpcDone(reset, held, err)
	return err
}

// ctxStream carries the faults in the stream's context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c ctxStream) Context() context.Context { return c.ctx }

// grpcFaults applies the call's metadata faults and the server-wide
// behaviour, in the order slot (MaxConcurrent), delay, close, status.
// reset reports a closed connection; held that the call holds a slot for
// grpcDone to give back; err is the status to return instead of calling
// the handler.
func (s *Server) grpcFaults(ctx context.Context) (_ context.Context, reset, held bool, _ error) {
	s.stats.requests.Add(1)
	s.stats.inFlight.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	q := url.Values{}
	for _, k := range []string{ParamStatus, ParamDelay, ParamSize, ParamClose} {
		if v := md.Get(k); len(v) > 0 {
			q[k] = v
		}
	}
	f, err := ParseFaults(q)
	var codeShares []StatusShare
	if err == nil {
		if v := md.Get(MetadataGRPCStatusCode); len(v) > 0 {
			codeShares, err = httpfault.ParseStatusShares(MetadataGRPCStatusCode, strings.Join(v, ","), 0, 16)
		}
	}
	if err != nil {
		return ctx, false, false, status.Error(codes.InvalidArgument, err.Error())
	}

	if !s.gate.enter(ctx, s.behaviour.Load().MaxConcurrent) {
		s.stats.cancelled.Add(1)
		return ctx, false, false, status.FromContextError(ctx.Err()).Err()
	}
	b := s.behaviour.Load()
	rnd := s.rng.derive()
	if d := b.PickLatency(rnd) + f.Delay.Pick(rnd); d > 0 {
		s.stats.delayed.Add(1)
		if !sleep(ctx, d) {
			s.stats.cancelled.Add(1)
			return ctx, false, true, status.FromContextError(ctx.Err()).Err()
		}
	}
	if (b.ResetRate > 0 && rnd.Float64() < b.ResetRate) || httpfault.Hit(rnd, f.ClosePercent) {
		s.stats.resets.Add(1)
		s.closePeer(ctx)
		return ctx, true, true, status.Error(codes.Unavailable, "skiff-demo "+s.cfg.Name+": injected connection close")
	}
	code := codes.OK
	injected := false
	if c, ok := httpfault.PickStatus(codeShares, rnd); ok {
		code, injected = codes.Code(c), true
	} else if c, ok := httpfault.PickStatus(f.Status, rnd); ok {
		code, injected = GRPCCode(c), true
	} else if b.ErrorRate > 0 && rnd.Float64() < b.ErrorRate {
		code, injected = GRPCCode(b.StatusOrDefault()), true
	}
	if injected && code != codes.OK {
		s.stats.injected.Add(1)
		return ctx, false, true, status.Errorf(code, "skiff-demo %s: injected %s", s.cfg.Name, code)
	}
	return context.WithValue(ctx, faultsKey{}, &f), false, true, nil
}

// grpcDone counts a finished call, and gives back its slot if it held one;
// closed connections count as resets only.
func (s *Server) grpcDone(reset, held bool, err error) {
	if held {
		s.gate.leave(s.behaviour.Load().MaxConcurrent)
	}
	s.stats.inFlight.Add(-1)
	if !reset {
		s.stats.grpcCode(status.Code(err))
	}
}
