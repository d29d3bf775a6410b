package control

import (
	"context"
	"sync"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/identity/certs"
)

// Certifier is a [certs.Certifier] over the control plane's
// Identity.Certify. It also keeps the trust anchors of the last
// response, which the proxy installs as its bundle during an anchor
// rotation. Conn is required; set the fields before the first call and do
// not copy a Certifier after that.
type Certifier struct {
	// Conn is the control plane's connection. Required.
	Conn *Conn
	// OnTrustAnchors, when non-nil, is called by Certify with the trust
	// anchors (DER) of every successful response that has any, before
	// Certify returns. Nil means only [Certifier.TrustAnchors] has them.
	OnTrustAnchors func(anchors [][]byte)

	mu      sync.Mutex
	anchors [][]byte
}

var _ certs.Certifier = (*Certifier)(nil)

// Certify implements [certs.Certifier]: it sends the CSR, SPIFFE ID and
// token, and returns the leaf followed by the intermediates (DER) and the
// response's valid_until (zero when the server sent none). A failure is a
// *[Status] carrying the server's code (InvalidArgument, Unauthenticated,
// PermissionDenied, Unavailable…).
func (c *Certifier) Certify(ctx context.Context, csrDER []byte, id, token string) ([][]byte, time.Time, error) {
	req := appendCertifyRequest(nil, id, []byte(token), csrDER)
	msg, err := c.Conn.Invoke(ctx, methodCertify, req)
	if err != nil {
		return nil, time.Time{}, err
	}
	resp, err := decodeCertifyResponse(msg)
	if err != nil {
		return nil, time.Time{}, statusf(CodeInternal, "identity: %v", err)
	}
	if len(resp.leaf) == 0 {
		return nil, time.Time{}, statusf(CodeInternal, "identity: the response has no leaf certificate")
	}
	if len(resp.anchors) > 0 {
		c.mu.Lock()
		c.anchors = resp.anchors
		c.mu.Unlock()
		if c.OnTrustAnchors != nil {
			c.OnTrustAnchors(resp.anchors)
		}
	}
	chain := make([][]byte, 0, 1+len(resp.intermediates))
	chain = append(chain, resp.leaf)
	chain = append(chain, resp.intermediates...)
	return chain, resp.validUntil, nil
}

// TrustAnchors returns the DER trust anchors of the last successful
// response that had any; nil before one. The caller must not modify them.
func (c *Certifier) TrustAnchors() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.anchors
}
