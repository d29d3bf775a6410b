package control

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
)

// The compatibility tests run both directions the proxy uses: what it
// sends (requests) is encoded here and decoded by the generated code;
// what it receives (responses) is encoded by the generated code and
// decoded here.

var deterministic = proto.MarshalOptions{Deterministic: true}

func TestWatchRequestDecodesWithGeneratedTypes(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		name string
		auth string
		pc   ProxyContext
		want *destinationv1.WatchRequest
	}{
		{"full", "web.shop.svc.cluster.local:8080", ProxyContext{ID: "uid-1@1700000000", Pod: "web-0", Namespace: "shop"},
			&destinationv1.WatchRequest{Authority: "web.shop.svc.cluster.local:8080",
				Proxy: &destinationv1.ProxyContext{ProxyId: "uid-1@1700000000", Pod: "web-0", Namespace: "shop"}}},
		{"no proxy context", "web:80", ProxyContext{}, &destinationv1.WatchRequest{Authority: "web:80"}},
		{"partial proxy context", "web:80", ProxyContext{Pod: "p"},
			&destinationv1.WatchRequest{Authority: "web:80", Proxy: &destinationv1.ProxyContext{Pod: "p"}}},
		{"empty", "", ProxyContext{}, &destinationv1.WatchRequest{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendWatchRequest(nil, tc.auth, tc.pc)
			var got destinationv1.WatchRequest
			if err := proto.Unmarshal(b, &got); err != nil {
				t.Fatalf("generated code rejects our WatchRequest: %v", err)
			}
			if !proto.Equal(&got, tc.want) {
				t.Fatalf("decoded %v, want %v", &got, tc.want)
			}
			want, err := deterministic.Marshal(tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("encoding differs from the generated code's:\n ours %x\n theirs %x", b, want)
			}
		})
	}
}

func TestCertifyRequestDecodesWithGeneratedTypes(t *testing.T) {
	leakcheck.Check(t)
	csr := bytes.Repeat([]byte{0x30, 0x82, 0x01}, 100)
	b := appendCertifyRequest(nil, "spiffe://cluster.local/ns/shop/sa/web", []byte("a.jwt.token"), csr)
	var got identityv1.CertifyRequest
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatalf("generated code rejects our CertifyRequest: %v", err)
	}
	want := &identityv1.CertifyRequest{Identity: "spiffe://cluster.local/ns/shop/sa/web", Token: []byte("a.jwt.token"), Csr: csr}
	if !proto.Equal(&got, want) {
		t.Fatalf("decoded %v, want %v", &got, want)
	}
	wb, _ := deterministic.Marshal(want)
	if !bytes.Equal(b, wb) {
		t.Errorf("encoding differs from the generated code's")
	}
}

// fullEndpoint is an Endpoint with every field set, and unknown fields of
// every wire type that a newer control plane might add.
func fullEndpoint(addr string) *destinationv1.Endpoint {
	e := &destinationv1.Endpoint{
		Address:      addr,
		Weight:       70000, // more than 16 bits
		Identity:     "spiffe://cluster.local/ns/shop/sa/web",
		ProtocolHint: destinationv1.ProtocolHint_PROTOCOL_HINT_GRPC,
		Meshed:       true,
		Zone:         "eu-west-1a",
		Labels:       map[string]string{"version": "v2", "app": "web", "": "empty-key"},
		Pod:          "web-7d4b9-x2x1z",
	}
	e.ProtoReflect().SetUnknown(unknownFields())
	return e
}

func unknownFields() []byte {
	var u []byte
	u = protowire.AppendTag(u, 90, protowire.VarintType)
	u = protowire.AppendVarint(u, 1<<40)
	u = protowire.AppendTag(u, 91, protowire.Fixed32Type)
	u = protowire.AppendFixed32(u, 7)
	u = protowire.AppendTag(u, 92, protowire.Fixed64Type)
	u = protowire.AppendFixed64(u, 7)
	u = protowire.AppendTag(u, 93, protowire.BytesType)
	u = protowire.AppendString(u, "future")
	u = protowire.AppendTag(u, 94, protowire.StartGroupType)
	u = protowire.AppendTag(u, 1, protowire.VarintType)
	u = protowire.AppendVarint(u, 3)
	u = protowire.AppendTag(u, 94, protowire.EndGroupType)
	return u
}

func wantEndpoint(addr string) wireEndpoint {
	return wireEndpoint{
		address: addr, weight: 70000, identity: "spiffe://cluster.local/ns/shop/sa/web",
		protocol: hintGRPC, meshed: true, zone: "eu-west-1a",
		labels: map[string]string{"version": "v2", "app": "web", "": "empty-key"}, pod: "web-7d4b9-x2x1z",
	}
}

func TestUpdateDecodesGeneratedEncoding(t *testing.T) {
	leakcheck.Check(t)
	snap := &destinationv1.Snapshot{Exists: true, Endpoints: []*destinationv1.Endpoint{fullEndpoint("10.0.0.1:8080"), fullEndpoint("[fd00::1]:8080")}}
	snap.ProtoReflect().SetUnknown(unknownFields())
	for _, tc := range []struct {
		name string
		msg  *destinationv1.Update
		want update
	}{
		{"snapshot", &destinationv1.Update{Kind: &destinationv1.Update_Snapshot{Snapshot: snap}},
			update{kind: kindSnapshot, exists: true, endpoints: []wireEndpoint{wantEndpoint("10.0.0.1:8080"), wantEndpoint("[fd00::1]:8080")}}},
		{"empty snapshot of an unknown authority", &destinationv1.Update{Kind: &destinationv1.Update_Snapshot{Snapshot: &destinationv1.Snapshot{}}},
			update{kind: kindSnapshot}},
		{"add", &destinationv1.Update{Kind: &destinationv1.Update_Add{Add: &destinationv1.Add{Endpoints: []*destinationv1.Endpoint{fullEndpoint("10.0.0.3:80")}}}},
			update{kind: kindAdd, endpoints: []wireEndpoint{wantEndpoint("10.0.0.3:80")}}},
		{"remove", &destinationv1.Update{Kind: &destinationv1.Update_Remove{Remove: &destinationv1.Remove{Addresses: []string{"10.0.0.1:8080", "[fd00::1]:8080"}}}},
			update{kind: kindRemove, addresses: []string{"10.0.0.1:8080", "[fd00::1]:8080"}}},
		{"no endpoints, exists", &destinationv1.Update{Kind: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: true}}},
			update{kind: kindNoEndpoints, exists: true}},
		{"no endpoints, gone", &destinationv1.Update{Kind: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{}}},
			update{kind: kindNoEndpoints}},
		{"no kind (a newer server's)", &destinationv1.Update{}, update{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.msg.ProtoReflect().SetUnknown(unknownFields())
			b, err := proto.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeUpdate(b)
			if err != nil {
				t.Fatalf("decodeUpdate: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decoded\n %+v\nwant\n %+v", got, tc.want)
			}
			if conv := fromGenerated(tc.msg); !reflect.DeepEqual(conv, tc.want) {
				t.Fatalf("test helper fromGenerated disagrees: %+v", conv)
			}
		})
	}
}

func TestCertifyResponseDecodesGeneratedEncoding(t *testing.T) {
	leakcheck.Check(t)
	until := time.Date(2031, 2, 3, 4, 5, 6, 789, time.UTC)
	msg := &identityv1.CertifyResponse{
		LeafCertificate:          []byte("leaf"),
		IntermediateCertificates: [][]byte{[]byte("issuer"), []byte("issuer-2")},
		TrustAnchors:             [][]byte{[]byte("old-root"), []byte("new-root")},
		ValidUntil:               timestamppb.New(until),
	}
	msg.ProtoReflect().SetUnknown(unknownFields())
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeCertifyResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := certifyResponse{
		leaf:          []byte("leaf"),
		intermediates: [][]byte{[]byte("issuer"), []byte("issuer-2")},
		anchors:       [][]byte{[]byte("old-root"), []byte("new-root")},
		validUntil:    until,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	// The decoded certificates must not alias the message buffer.
	clear(b)
	if !bytes.Equal(got.leaf, []byte("leaf")) {
		t.Fatal("leaf certificate aliases the receive buffer")
	}
}

func TestDecodersRejectTruncatedInput(t *testing.T) {
	leakcheck.Check(t)
	b, _ := proto.Marshal(&destinationv1.Update{Kind: &destinationv1.Update_Snapshot{Snapshot: &destinationv1.Snapshot{
		Endpoints: []*destinationv1.Endpoint{fullEndpoint("10.0.0.1:1")}}}})
	for n := 1; n < len(b); n++ {
		// Every strict prefix is either a shorter valid message (cut at
		// a field boundary of the outer message: none here, there is one
		// field) or an error; never a panic.
		if _, err := decodeUpdate(b[:n]); err == nil {
			t.Fatalf("decodeUpdate accepted a %d-byte prefix of a %d-byte message", n, len(b))
		}
	}
	r, _ := proto.Marshal(&identityv1.CertifyResponse{LeafCertificate: []byte("leaf")})
	if _, err := decodeCertifyResponse(r[:len(r)-1]); err == nil {
		t.Fatal("decodeCertifyResponse accepted a truncated message")
	}
}

// fromGenerated is what decodeUpdate should produce for m.
func fromGenerated(m *destinationv1.Update) update {
	conv := func(es []*destinationv1.Endpoint) []wireEndpoint {
		var out []wireEndpoint
		for _, e := range es {
			out = append(out, wireEndpoint{
				address: e.GetAddress(), weight: e.GetWeight(), identity: e.GetIdentity(),
				protocol: protocolHint(e.GetProtocolHint()), meshed: e.GetMeshed(), zone: e.GetZone(),
				labels: e.GetLabels(), pod: e.GetPod(),
			})
		}
		return out
	}
	switch k := m.GetKind().(type) {
	case *destinationv1.Update_Snapshot:
		return update{kind: kindSnapshot, endpoints: conv(k.Snapshot.GetEndpoints()), exists: k.Snapshot.GetExists()}
	case *destinationv1.Update_Add:
		return update{kind: kindAdd, endpoints: conv(k.Add.GetEndpoints())}
	case *destinationv1.Update_Remove:
		return update{kind: kindRemove, addresses: k.Remove.GetAddresses()}
	case *destinationv1.Update_NoEndpoints:
		return update{kind: kindNoEndpoints, exists: k.NoEndpoints.GetExists()}
	}
	return update{}
}

func FuzzDecodeUpdate(f *testing.F) {
	// No leakcheck: the target starts no goroutine, and under -fuzz the
	// engine's own os/signal goroutine would be reported as a leak.
	for _, m := range []*destinationv1.Update{
		{Kind: &destinationv1.Update_Snapshot{Snapshot: &destinationv1.Snapshot{Exists: true, Endpoints: []*destinationv1.Endpoint{fullEndpoint("10.0.0.1:80")}}}},
		{Kind: &destinationv1.Update_Add{Add: &destinationv1.Add{Endpoints: []*destinationv1.Endpoint{fullEndpoint("a:1"), fullEndpoint("b:2")}}}},
		{Kind: &destinationv1.Update_Remove{Remove: &destinationv1.Remove{Addresses: []string{"a:1"}}}},
		{Kind: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: true}}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeUpdate(b)
		var m destinationv1.Update
		if perr := proto.Unmarshal(b, &m); perr == nil {
			// What the protobuf runtime accepts, we accept, with the same
			// meaning. (We accept more: we do not check UTF-8.)
			if err != nil {
				t.Fatalf("decodeUpdate rejects what protobuf accepts (%v): %v", &m, err)
			}
			if want := fromGenerated(&m); !reflect.DeepEqual(normalize(got), normalize(want)) {
				t.Fatalf("decodeUpdate = %+v, protobuf says %+v", got, want)
			}
		}
	})
}

// normalize makes empty and nil slices and maps compare equal.
func normalize(u update) update {
	if len(u.endpoints) == 0 {
		u.endpoints = nil
	}
	if len(u.addresses) == 0 {
		u.addresses = nil
	}
	for i := range u.endpoints {
		if len(u.endpoints[i].labels) == 0 {
			u.endpoints[i].labels = nil
		}
	}
	return u
}
