package spec

import (
	"slices"
	"strings"
	"testing"
)

func TestStreamAndMixDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, yaml     string
		protocol       string
		method         string
		messages       int
		mix            []MixShare
		wantStreamLoad bool
	}{
		{"unary", "topology: {services: [{name: g, protocol: grpc}]}",
			ProtocolGRPC, DefaultGRPCMethod, 0, nil, false},
		{"stream", "topology: {services: [{name: g, protocol: grpc}]}\nload: {protocol: grpc-stream}",
			ProtocolGRPCStream, DefaultGRPCStreamMethod, DefaultStreamMessages, nil, true},
		{"stream messages", "topology: {services: [{name: g, protocol: grpc}]}\nload: {protocol: grpc-stream, messages: 7}",
			ProtocolGRPCStream, DefaultGRPCStreamMethod, 7, nil, true},
		{"mix", "topology: {services: [{name: g, protocol: grpc}]}\nload: {mix: [{protocol: grpc}, {protocol: grpc-stream, weight: 3}]}",
			ProtocolGRPC, "", DefaultStreamMessages, []MixShare{{ProtocolGRPC, 1}, {ProtocolGRPCStream, 3}}, true},
		{"mix across protocols", "topology: {services: [{name: g, protocol: grpc}]}\nload: {mix: [{protocol: h2c}, {protocol: grpc}, {protocol: tls}, {protocol: banner, weight: 2}]}",
			ProtocolGRPC, "", 0, []MixShare{{ProtocolH2C, 1}, {ProtocolGRPC, 1}, {ProtocolTLS, 1}, {ProtocolBanner, 2}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse("t.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			l := s.Load
			if l.Protocol != tc.protocol || l.Method != tc.method || l.Messages != tc.messages || !slices.Equal(l.Mix, tc.mix) ||
				l.Streams() != tc.wantStreamLoad || l.Connections != DefaultMuxConnections {
				t.Errorf("load = %+v", l)
			}
		})
	}
}

func TestStreamAndMixErrors(t *testing.T) {
	const grpcSvc = "topology: {services: [{name: g, protocol: grpc}]}\n"
	for _, tc := range []struct{ name, in, want string }{
		{"stream to http", "topology: {services: [{name: echo}]}\nload: {protocol: grpc-stream}",
			`t.yaml:2:18: load.protocol: grpc-stream does not match service "echo", which speaks http1`},
		{"messages unary", grpcSvc + "load: {messages: 3}",
			`t.yaml:2:18: load.messages: only for grpc-stream calls (load.protocol or load.mix)`},
		{"messages zero", grpcSvc + "load: {protocol: grpc-stream, messages: 0}",
			`t.yaml:2:41: load.messages: must be between 1 and 10000 messages per call, got 0`},
		{"messages many", grpcSvc + "load: {protocol: grpc-stream, messages: 10001}",
			`t.yaml:2:41: load.messages: must be between 1 and 10000 messages per call, got 10001`},
		{"mix http", "topology: {services: [{name: echo}]}\nload: {mix: [{protocol: grpc}, {protocol: grpc-stream}]}",
			`t.yaml:2:13: load.mix: gRPC calls alone mix to a service that speaks grpc, and service "echo" speaks http1`},
		{"mix tcp", "topology: {services: [{name: raw, protocol: tcp}]}\nload: {mix: [{protocol: tls}, {protocol: banner}]}",
			`t.yaml:2:13: load.mix: service "raw" speaks tcp, whose load goes to the client sidecar's TCP route alone; the mix takes "http1", "h2c", "grpc", "grpc-stream", "tls" or "banner"`},
		{"mix path", "topology: {services: [{name: echo}]}\nload: {path: /x, mix: [{protocol: http1}, {protocol: banner}]}",
			`t.yaml:2:14: load.path: leave it out with load.mix: its HTTP requests GET /, its gRPC calls call their method`},
		{"mix of one", grpcSvc + "load: {mix: [{protocol: grpc-stream}]}",
			`t.yaml:2:13: load.mix: has 1 kind of call; a mix needs two ("http1", "h2c", "grpc", "grpc-stream", "tls" or "banner"): for one, set load.protocol`},
		{"mix twice", grpcSvc + "load: {mix: [{protocol: grpc}, {protocol: grpc, weight: 2}]}",
			`t.yaml:2:43: load.mix[1].protocol: grpc is already in the mix (first at line 2); give it one share with the summed weight`},
		{"mix unknown", grpcSvc + "load: {mix: [{protocol: grpc}, {protocol: grpc-strem}]}",
			`t.yaml:2:43: load.mix[1].protocol: unknown protocol "grpc-strem"; want "http1", "h2c", "grpc", "grpc-stream", "tls" or "banner"; did you mean "grpc-stream"?`},
		{"mix weight", grpcSvc + "load: {mix: [{protocol: grpc, weight: 0}, {protocol: grpc-stream, weight: 101}]}",
			"t.yaml:2:39: load.mix[0].weight: must be between 1 and 100, got 0\n" +
				"t.yaml:2:75: load.mix[1].weight: must be between 1 and 100, got 101"},
		{"mix protocol", grpcSvc + "load: {protocol: grpc-stream, mix: [{protocol: grpc}, {protocol: grpc-stream}]}",
			`t.yaml:2:18: load.protocol: leave it out with load.mix, whose shares name the kinds of call`},
		{"mix method", grpcSvc + "load: {method: /skiff.demo.v1.Echo/Echo, mix: [{protocol: grpc}, {protocol: grpc-stream}]}",
			`t.yaml:2:16: load.method: leave it out with load.mix: each kind of call has its method (/skiff.demo.v1.Echo/Echo for grpc, /skiff.demo.v1.Echo/StreamEcho for grpc-stream)`},
		{"mix field", grpcSvc + "load: {mix: [{protocol: grpc, wieght: 2}, {protocol: grpc-stream}]}",
			`t.yaml:2:31: unknown field "wieght" in load.mix[0]; did you mean "weight"?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.in))
			if err == nil {
				t.Fatalf("no error, want:\n%s", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != strings.Count(tc.want, "\n")+1 {
				t.Errorf("%d errors", n)
			}
		})
	}
}

func TestCloneMix(t *testing.T) {
	s, err := Parse("t.yaml", []byte("topology: {services: [{name: g, protocol: grpc}]}\nload: {mix: [{protocol: grpc}, {protocol: grpc-stream}]}"))
	if err != nil {
		t.Fatal(err)
	}
	c := s.Clone()
	c.Load.Mix[0].Weight = 9
	if s.Load.Mix[0].Weight != 1 {
		t.Error("Clone shares the load's mix with the original")
	}
}
