package control

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The messages of mesh/api that the proxy sends and receives, coded by
// hand with protowire. Field numbers are those of
// mesh/api/proto/skiff/{destination,identity}/v1; the compatibility tests
// check both directions against the generated types. Decoders skip
// unknown fields (and known fields with an unexpected wire type, as the
// protobuf runtime does), so a newer control plane can add fields.

// ProxyContext identifies the proxy to the control plane, for its logs
// and metrics (skiff.destination.v1.ProxyContext). Every field is
// optional; the zero value sends nothing.
type ProxyContext struct {
	// ID is unique per proxy process, e.g. the pod UID plus start time.
	ID string
	// Pod is the name of the pod the proxy serves.
	Pod string
	// Namespace is the pod's namespace; empty when it has none.
	Namespace string
}

// Field numbers.
const (
	// skiff.destination.v1.WatchRequest
	fWatchAuthority = 1
	fWatchProxy     = 2
	// skiff.destination.v1.ProxyContext
	fProxyID        = 1
	fProxyPod       = 2
	fProxyNamespace = 3
	// skiff.destination.v1.Update (oneof kind)
	fUpdateSnapshot    = 1
	fUpdateAdd         = 2
	fUpdateRemove      = 3
	fUpdateNoEndpoints = 4
	// skiff.destination.v1.Snapshot
	fSnapshotEndpoints = 1
	fSnapshotExists    = 2
	// skiff.destination.v1.Add
	fAddEndpoints = 1
	// skiff.destination.v1.Remove
	fRemoveAddresses = 1
	// skiff.destination.v1.NoEndpoints
	fNoEndpointsExists = 1
	// skiff.destination.v1.Endpoint
	fEndpointAddress  = 1
	fEndpointWeight   = 2
	fEndpointIdentity = 3
	fEndpointProtocol = 4
	fEndpointMeshed   = 5
	fEndpointZone     = 6
	fEndpointLabels   = 7
	fEndpointPod      = 8
	// map entry
	fMapKey   = 1
	fMapValue = 2
	// skiff.identity.v1.CertifyRequest
	fCertifyIdentity = 1
	fCertifyToken    = 2
	fCertifyCSR      = 3
	// skiff.identity.v1.CertifyResponse
	fCertifyLeaf          = 1
	fCertifyIntermediates = 2
	fCertifyAnchors       = 3
	fCertifyValidUntil    = 4
	// google.protobuf.Timestamp
	fTimestampSeconds = 1
	fTimestampNanos   = 2
)

// Method paths.
const (
	methodWatch   = "/skiff.destination.v1.Destination/Watch"
	methodCertify = "/skiff.identity.v1.Identity/Certify"
)

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// appendWatchRequest encodes skiff.destination.v1.WatchRequest.
func appendWatchRequest(b []byte, authority string, p ProxyContext) []byte {
	b = appendString(b, fWatchAuthority, authority)
	if p != (ProxyContext{}) {
		var pc []byte
		pc = appendString(pc, fProxyID, p.ID)
		pc = appendString(pc, fProxyPod, p.Pod)
		pc = appendString(pc, fProxyNamespace, p.Namespace)
		b = protowire.AppendTag(b, fWatchProxy, protowire.BytesType)
		b = protowire.AppendBytes(b, pc)
	}
	return b
}

// appendCertifyRequest encodes skiff.identity.v1.CertifyRequest.
func appendCertifyRequest(b []byte, identity string, token, csr []byte) []byte {
	b = appendString(b, fCertifyIdentity, identity)
	b = appendBytes(b, fCertifyToken, token)
	return appendBytes(b, fCertifyCSR, csr)
}

// updateKind is which member of Update's oneof kind is set.
type updateKind uint8

const (
	kindNone updateKind = iota // no member set: an update from a newer server, ignored
	kindSnapshot
	kindAdd
	kindRemove
	kindNoEndpoints
)

// protocolHint is skiff.destination.v1.ProtocolHint.
type protocolHint int32

const (
	hintUnspecified protocolHint = 0
	hintHTTP1       protocolHint = 1
	hintH2C         protocolHint = 2
	hintGRPC        protocolHint = 3
	hintOpaque      protocolHint = 4
)

// wireEndpoint is skiff.destination.v1.Endpoint.
type wireEndpoint struct {
	address  string
	weight   uint32
	identity string
	protocol protocolHint
	meshed   bool
	zone     string
	labels   map[string]string
	pod      string
}

// update is skiff.destination.v1.Update, its oneof flattened: endpoints
// for Snapshot and Add, addresses for Remove, exists for Snapshot and
// NoEndpoints.
type update struct {
	kind      updateKind
	endpoints []wireEndpoint
	addresses []string
	exists    bool
}

// certifyResponse is skiff.identity.v1.CertifyResponse.
type certifyResponse struct {
	leaf          []byte
	intermediates [][]byte
	anchors       [][]byte
	validUntil    time.Time // zero when absent
}

// field is one decoded field: its number and type and, for varints, the
// value, for length-delimited fields, the bytes.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// nextField consumes one field of b. It returns the rest of b. Varint
// and fixed64 values (doubles) are kept in v, length-delimited ones in b;
// callers check typ before they read either.
func nextField(b []byte) (field, []byte, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return field{}, nil, protowire.ParseError(n)
	}
	b = b[n:]
	f := field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		f.v, n = protowire.ConsumeVarint(b)
	case protowire.Fixed64Type:
		f.v, n = protowire.ConsumeFixed64(b)
	case protowire.BytesType:
		f.b, n = protowire.ConsumeBytes(b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		return field{}, nil, protowire.ParseError(n)
	}
	return f, b[n:], nil
}

// decodeUpdate decodes skiff.destination.v1.Update. As in protobuf, when
// the oneof appears more than once the last member wins, and a repeated
// occurrence of the same member merges into it.
func decodeUpdate(b []byte) (update, error) {
	var u update
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return update{}, fmt.Errorf("decoding skiff.destination.v1.Update: %w", err)
		}
		b = rest
		if f.typ != protowire.BytesType {
			continue
		}
		var k updateKind
		switch f.num {
		case fUpdateSnapshot:
			k = kindSnapshot
		case fUpdateAdd:
			k = kindAdd
		case fUpdateRemove:
			k = kindRemove
		case fUpdateNoEndpoints:
			k = kindNoEndpoints
		default:
			continue
		}
		if k != u.kind {
			u = update{kind: k}
		}
		if err := u.decodeMember(f.b); err != nil {
			return update{}, fmt.Errorf("decoding skiff.destination.v1.Update: %w", err)
		}
	}
	return u, nil
}

// decodeMember decodes the oneof member u.kind (Snapshot, Add, Remove or
// NoEndpoints) from b into u.
func (u *update) decodeMember(b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.typ == protowire.BytesType && (f.num == fSnapshotEndpoints && u.kind == kindSnapshot || f.num == fAddEndpoints && u.kind == kindAdd):
			e, err := decodeEndpoint(f.b)
			if err != nil {
				return err
			}
			u.endpoints = append(u.endpoints, e)
		case f.num == fRemoveAddresses && f.typ == protowire.BytesType && u.kind == kindRemove:
			u.addresses = append(u.addresses, string(f.b))
		case f.num == fSnapshotExists && f.typ == protowire.VarintType && u.kind == kindSnapshot,
			f.num == fNoEndpointsExists && f.typ == protowire.VarintType && u.kind == kindNoEndpoints:
			u.exists = f.v != 0
		}
	}
	return nil
}

// decodeEndpoint decodes skiff.destination.v1.Endpoint.
func decodeEndpoint(b []byte) (wireEndpoint, error) {
	var e wireEndpoint
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return wireEndpoint{}, fmt.Errorf("endpoint: %w", err)
		}
		b = rest
		if f.typ == protowire.VarintType {
			switch f.num {
			case fEndpointWeight:
				e.weight = uint32(f.v)
			case fEndpointProtocol:
				e.protocol = protocolHint(int32(f.v))
			case fEndpointMeshed:
				e.meshed = f.v != 0
			}
			continue
		}
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case fEndpointAddress:
			e.address = string(f.b)
		case fEndpointIdentity:
			e.identity = string(f.b)
		case fEndpointZone:
			e.zone = string(f.b)
		case fEndpointPod:
			e.pod = string(f.b)
		case fEndpointLabels:
			k, v, err := decodeMapEntry(f.b)
			if err != nil {
				return wireEndpoint{}, fmt.Errorf("endpoint labels: %w", err)
			}
			if e.labels == nil {
				e.labels = make(map[string]string)
			}
			e.labels[k] = v
		}
	}
	return e, nil
}

// decodeMapEntry decodes a map<string, string> entry; a missing key or
// value is empty, as in protobuf.
func decodeMapEntry(b []byte) (key, value string, err error) {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return "", "", err
		}
		b = rest
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case fMapKey:
			key = string(f.b)
		case fMapValue:
			value = string(f.b)
		}
	}
	return key, value, nil
}

// decodeCertifyResponse decodes skiff.identity.v1.CertifyResponse. The
// certificates are copied out of b.
func decodeCertifyResponse(b []byte) (certifyResponse, error) {
	var r certifyResponse
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return certifyResponse{}, fmt.Errorf("decoding skiff.identity.v1.CertifyResponse: %w", err)
		}
		b = rest
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case fCertifyLeaf:
			r.leaf = clone(f.b)
		case fCertifyIntermediates:
			r.intermediates = append(r.intermediates, clone(f.b))
		case fCertifyAnchors:
			r.anchors = append(r.anchors, clone(f.b))
		case fCertifyValidUntil:
			t, err := decodeTimestamp(f.b, r.validUntil)
			if err != nil {
				return certifyResponse{}, fmt.Errorf("decoding skiff.identity.v1.CertifyResponse.valid_until: %w", err)
			}
			r.validUntil = t
		}
	}
	return r, nil
}

// decodeTimestamp decodes google.protobuf.Timestamp, merging into prev
// (a repeated message field merges in protobuf).
func decodeTimestamp(b []byte, prev time.Time) (time.Time, error) {
	var sec, nsec int64
	if !prev.IsZero() {
		sec, nsec = prev.Unix(), int64(prev.Nanosecond())
	}
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return time.Time{}, err
		}
		b = rest
		if f.typ != protowire.VarintType {
			continue
		}
		switch f.num {
		case fTimestampSeconds:
			sec = int64(f.v)
		case fTimestampNanos:
			nsec = int64(int32(f.v))
		}
	}
	if nsec < 0 || nsec > 999_999_999 {
		return time.Time{}, fmt.Errorf("timestamp nanos %d out of range", nsec)
	}
	return time.Unix(sec, nsec).UTC(), nil
}

// clone copies b; never nil, so an empty certificate stays distinguishable
// from an absent one.
func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }
