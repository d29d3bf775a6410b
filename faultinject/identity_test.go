package faultinject

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fakeAuthority is the controller pod of a fake environment.
type fakeAuthority struct {
	fakePod
	fail error
}

func (a *fakeAuthority) step(name string) error {
	a.log = append(a.log, name)
	return a.fail
}
func (a *fakeAuthority) RotateIssuer(context.Context) error   { return a.step("rotate_issuer") }
func (a *fakeAuthority) AddTrustAnchor(context.Context) error { return a.step("add_trust_anchor") }
func (a *fakeAuthority) RetireTrustAnchors(context.Context) error {
	return a.step("retire_trust_anchors")
}

func TestIdentityFaults(t *testing.T) {
	ctx := context.Background()
	r := Default()
	ctl := &fakeAuthority{fakePod: fakePod{name: "controller"}}
	for _, typ := range []string{"add_trust_anchor", "rotate_issuer", "retire_trust_anchors"} {
		f, err := r.Get(typ)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Validate(nil); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if err := f.Validate(map[string]any{"anchor": "new"}); err == nil || !strings.Contains(err.Error(), "takes no params") {
			t.Errorf("%s with params: %v", typ, err)
		}
		undo, err := f.Apply(ctx, []Pod{ctl}, nil)
		if err != nil || undo != nil {
			t.Fatalf("%s: undo %v, err %v; want no undo and no error", typ, undo != nil, err)
		}
	}
	if got := strings.Join(ctl.log, " "); got != "add_trust_anchor rotate_issuer retire_trust_anchors" {
		t.Errorf("the authority did %q", got)
	}

	f, _ := r.Get("rotate_issuer")
	if _, err := f.Apply(ctx, []Pod{&fakePod{name: "echo-0"}}, nil); err == nil || !strings.Contains(err.Error(), "pod echo-0 does not run the certificate authority") {
		t.Errorf("on an app pod: %v", err)
	}
	if _, err := f.Apply(ctx, []Pod{ctl, ctl}, nil); err == nil || !strings.Contains(err.Error(), "2 pods") {
		t.Errorf("on two pods: %v", err)
	}
	ctl.fail = errors.New("the issuer still chains to the old anchor")
	if _, err := f.Apply(ctx, []Pod{ctl}, nil); err == nil || !strings.Contains(err.Error(), "rotate_issuer: the issuer still chains") {
		t.Errorf("a refused step: %v", err)
	}
}
