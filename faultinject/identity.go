package faultinject

import (
	"context"
	"fmt"
)

// Authority is a pod that runs the mesh's certificate authority (the
// controller). The identity faults act on it: they change what the CA
// signs with and what the mesh trusts, the way an operator does, by
// replacing its files (see docs/identity.md for the procedure).
type Authority interface {
	Pod
	// RotateIssuer gives the CA a new issuer signed by the newest trust
	// anchor.
	RotateIssuer(ctx context.Context) error
	// AddTrustAnchor makes a new trust anchor and adds it to the bundle
	// the CA and every sidecar trust; nothing is signed under it yet.
	AddTrustAnchor(ctx context.Context) error
	// RetireTrustAnchors removes every anchor but the newest from the
	// bundle. It is refused while the issuer still chains to an older
	// one.
	RetireTrustAnchors(ctx context.Context) error
}

// identityFault is a rotation step: no params, no undo (a rotation only
// goes forward), and only a pod that is an Authority can take it.
type identityFault struct {
	typ string
	do  func(context.Context, Authority) error
}

func identityFaults() []Fault {
	return []Fault{
		identityFault{"rotate_issuer", func(ctx context.Context, a Authority) error { return a.RotateIssuer(ctx) }},
		identityFault{"add_trust_anchor", func(ctx context.Context, a Authority) error { return a.AddTrustAnchor(ctx) }},
		identityFault{"retire_trust_anchors", func(ctx context.Context, a Authority) error { return a.RetireTrustAnchors(ctx) }},
	}
}

func (f identityFault) Type() string { return f.typ }

func (f identityFault) Validate(params map[string]any) error {
	if len(params) > 0 {
		return fmt.Errorf("fault %q takes no params, got %v", f.typ, keys(params))
	}
	return nil
}

func (f identityFault) Apply(ctx context.Context, pods []Pod, _ map[string]any) (Undo, error) {
	if len(pods) != 1 {
		return nil, fmt.Errorf("fault %q acts on the one certificate authority; the target names %d pods", f.typ, len(pods))
	}
	a, ok := pods[0].(Authority)
	if !ok {
		return nil, fmt.Errorf("fault %q: pod %s does not run the certificate authority; target the controller", f.typ, pods[0].Name())
	}
	if err := f.do(ctx, a); err != nil {
		return nil, fmt.Errorf("%s: %w", f.typ, err)
	}
	return nil, nil
}
