package discovery_test

import (
	"errors"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/discovery"
)

func TestNormalizeAuthority(t *testing.T) {
	for in, want := range map[string]string{
		"web.shop.svc.cluster.local:80":  "web.shop.svc.cluster.local:80",
		"Web.Shop.SVC.Cluster.Local.:80": "web.shop.svc.cluster.local:80",
		"web.shop":                       "web.shop",
		" web.shop:080 ":                 "web.shop:80",
		"[FD00::1]:8080":                 "[fd00::1]:8080",
		"10.0.0.1:65535":                 "10.0.0.1:65535",
	} {
		got, err := discovery.NormalizeAuthority(in)
		if err != nil || got != want {
			t.Errorf("NormalizeAuthority(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":80", "web:", "web:http", "web:0", "web:65536", "web:-1", "a b:80", "a/b:80", "fd00::1", "user@web:80", "."} {
		if got, err := discovery.NormalizeAuthority(in); !errors.Is(err, discovery.ErrInvalidAuthority) {
			t.Errorf("NormalizeAuthority(%q) = %q, %v; want ErrInvalidAuthority", in, got, err)
		}
	}
}

func TestSnapshotEqual(t *testing.T) {
	a := discovery.Snapshot{Authority: "a:1", Exists: true, Endpoints: []discovery.Endpoint{{Addr: "x:1", Labels: map[string]string{}}}}
	b := discovery.Snapshot{Authority: "a:1", Exists: true, Endpoints: []discovery.Endpoint{{Addr: "x:1"}}}
	if !a.Equal(b) {
		t.Error("nil and empty labels differ")
	}
	for name, c := range map[string]discovery.Snapshot{
		"authority": {Authority: "b:1", Exists: true, Endpoints: b.Endpoints},
		"exists":    {Authority: "a:1", Endpoints: b.Endpoints},
		"endpoints": {Authority: "a:1", Exists: true},
		"identity":  {Authority: "a:1", Exists: true, Endpoints: []discovery.Endpoint{{Addr: "x:1", Identity: "i"}}},
		"labels":    {Authority: "a:1", Exists: true, Endpoints: []discovery.Endpoint{{Addr: "x:1", Labels: map[string]string{"k": "v"}}}},
		"zone":      {Authority: "a:1", Exists: true, Endpoints: []discovery.Endpoint{{Addr: "x:1", Zone: "z"}}},
	} {
		if a.Equal(c) {
			t.Errorf("%s: different snapshots are Equal", name)
		}
	}
}

func FuzzNormalizeAuthority(f *testing.F) {
	for _, s := range []string{"web.shop.svc.cluster.local:80", "[::1]:1", "a:0", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := discovery.NormalizeAuthority(in)
		if err != nil {
			return
		}
		again, err := discovery.NormalizeAuthority(out)
		if err != nil || again != out {
			t.Errorf("not idempotent: %q → %q → %q, %v", in, out, again, err)
		}
	})
}
