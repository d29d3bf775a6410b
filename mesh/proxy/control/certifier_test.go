package control

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	identityv1 "github.com/skiff-mesh/skiff/mesh/api/identity/v1"
)

func TestCertifyRoundTrip(t *testing.T) {
	leakcheck.Check(t)
	const id = "spiffe://cluster.local/ns/shop/sa/web"
	csr := []byte("a DER CSR")
	until := time.Date(2031, 1, 2, 3, 4, 5, 600, time.UTC)
	var sawDeadline bool
	fake := &fakeIdentity{certify: func(ctx context.Context, r *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
		_, sawDeadline = ctx.Deadline()
		if r.GetIdentity() != id || string(r.GetToken()) != "tok" || !bytes.Equal(r.GetCsr(), csr) {
			return nil, status.Errorf(codes.InvalidArgument, "unexpected request %v", r)
		}
		return &identityv1.CertifyResponse{
			LeafCertificate:          []byte("leaf"),
			IntermediateCertificates: [][]byte{[]byte("issuer")},
			TrustAnchors:             [][]byte{[]byte("old-root"), []byte("new-root")},
			ValidUntil:               timestamppb.New(until),
		}, nil
	}}
	srv := startGRPC(t, func(s *grpc.Server) { identityv1.RegisterIdentityServer(s, fake) })
	var hook [][]byte
	c := &Certifier{Conn: newConn(t, srv.addr), OnTrustAnchors: func(a [][]byte) { hook = a }}
	if c.TrustAnchors() != nil {
		t.Fatal("trust anchors before any response")
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	chain, expiry, err := c.Certify(ctx, csr, id, "tok")
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]byte{[]byte("leaf"), []byte("issuer")}; !reflect.DeepEqual(chain, want) {
		t.Fatalf("chain %q, want %q", chain, want)
	}
	if !expiry.Equal(until) {
		t.Fatalf("expiry %v, want %v", expiry, until)
	}
	anchors := [][]byte{[]byte("old-root"), []byte("new-root")}
	if !reflect.DeepEqual(c.TrustAnchors(), anchors) || !reflect.DeepEqual(hook, anchors) {
		t.Fatalf("trust anchors %q, hook got %q; want %q", c.TrustAnchors(), hook, anchors)
	}
	if !sawDeadline {
		t.Error("the server saw no deadline: grpc-timeout was not sent")
	}
}

func TestCertifyErrors(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		name string
		resp *identityv1.CertifyResponse
		err  error
		code int
		msg  string
	}{
		{"unauthenticated", nil, status.Error(codes.Unauthenticated, "token expired"), CodeUnauthenticated, "token expired"},
		{"permission denied", nil, status.Error(codes.PermissionDenied, "token is for spiffe://x/ns/a/sa/b, 100% not yours"),
			CodePermissionDenied, "token is for spiffe://x/ns/a/sa/b, 100% not yours"},
		{"invalid argument", nil, status.Error(codes.InvalidArgument, "csr: ünparseable"), CodeInvalidArgument, "csr: ünparseable"},
		{"no leaf", &identityv1.CertifyResponse{TrustAnchors: [][]byte{[]byte("r")}}, nil, CodeInternal, "identity: the response has no leaf certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeIdentity{certify: func(context.Context, *identityv1.CertifyRequest) (*identityv1.CertifyResponse, error) {
				return tc.resp, tc.err
			}}
			srv := startGRPC(t, func(s *grpc.Server) { identityv1.RegisterIdentityServer(s, fake) })
			c := &Certifier{Conn: newConn(t, srv.addr)}
			_, _, err := c.Certify(t.Context(), []byte("csr"), "spiffe://x/ns/a/sa/b", "tok")
			st, ok := err.(*Status)
			if !ok || st.Code != tc.code || st.Message != tc.msg {
				t.Fatalf("error %#v, want code %s message %q", err, CodeName(tc.code), tc.msg)
			}
			if c.TrustAnchors() != nil {
				t.Fatal("a failed call set trust anchors")
			}
		})
	}
}
