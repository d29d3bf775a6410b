package discovery_test

import (
	"errors"
	"net"
	"strconv"
	"strings"
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
		"web.shop.":                      "web.shop",
		"web.:80":                        "web:80",
		"10.0.0.1.:80":                   "10.0.0.1:80",
		"[::FFFF:10.0.0.1]:80":           "[::ffff:10.0.0.1]:80",
		"web_1.shop~x:80":                "web_1.shop~x:80",
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

// TestNormalizeAuthorityRejectsMalformedNames holds the fuzz crashers of
// issue 9 (".." gave ".", which gave an error; "web.." gave "web.", which
// gave "web") and their kin: only a fully qualified name's one trailing
// dot is dropped, any other empty label is an error that says so, and so
// are what brackets hold when it is not an IPv6 address, non-ASCII bytes
// (the Kelvin sign lower-cases to an ASCII k) and over-long names.
func TestNormalizeAuthorityRejectsMalformedNames(t *testing.T) {
	long := strings.Repeat("a", 64)
	for in, want := range map[string]string{
		"..":                            "empty label",
		"web..":                         "empty label",
		"web..:80":                      "empty label",
		".web:80":                       "empty label",
		"web..shop:80":                  "empty label",
		".:80":                          "no host",
		"[web]:80":                      "not an IPv6 address",
		"[10.0.0.1]:80":                 "not an IPv6 address",
		"[::1.]:80":                     "not an IPv6 address",
		"[::1]":                         "in brackets with a port",
		"fd00::1":                       "in brackets with a port",
		"web\u212a:80":                  "want a DNS name",
		"web\x00:80":                    "want a DNS name",
		long + ".shop:80":               "DNS allows at most 63",
		strings.Repeat("a.", 127) + "a": "DNS allows at most 253",
		strings.Repeat(" ", 1025):       "more than the 1024",
	} {
		got, err := discovery.NormalizeAuthority(in)
		if !errors.Is(err, discovery.ErrInvalidAuthority) || !strings.Contains(err.Error(), want) {
			t.Errorf("NormalizeAuthority(%q) = %q, %v; want ErrInvalidAuthority saying %q", in, got, err, want)
		}
	}
	if got, err := discovery.NormalizeAuthority(strings.Repeat("a.", 126) + "a."); err != nil || len(got) != 253 {
		t.Errorf("a 253-byte fully qualified name: %q, %v", got, err)
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

// FuzzNormalizeAuthority checks what callers rely on: a normalised
// authority is its own normal form (the registry and Destination key by
// it), lower case, without white space or a trailing dot, no longer than
// what was given, with a port (if any) from 1 to 65535 written without
// leading zeros; case, surrounding white space and a fully qualified
// name's trailing dot do not matter, and a second trailing dot is an
// error; every error wraps ErrInvalidAuthority and quotes the input.
func FuzzNormalizeAuthority(f *testing.F) {
	for _, s := range []string{
		"web.shop.svc.cluster.local:80", "Web.Shop.SVC.Cluster.Local.:80", " web.shop:080 ", "web.shop",
		"[::1]:1", "[FD00::1]:8080", "[fe80::1%eth0]:80", "10.0.0.1:65535", "a:0", "x", ".", "..", "web..",
		"[web]:80", "fd00::1", "web:http", "user@web:80", "a b:80", "web\u212a:80",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := discovery.NormalizeAuthority(in)
		if err != nil {
			if !errors.Is(err, discovery.ErrInvalidAuthority) {
				t.Fatalf("NormalizeAuthority(%q): %v does not wrap ErrInvalidAuthority", in, err)
			}
			if len(in) <= 1024 && !strings.Contains(err.Error(), strconv.Quote(in)) {
				t.Fatalf("NormalizeAuthority(%q): %v does not quote the input", in, err)
			}
			return
		}
		again, err := discovery.NormalizeAuthority(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q → %q → %q, %v", in, out, again, err)
		}
		if len(out) > len(in) || out != strings.ToLower(out) || strings.ContainsAny(out, " \t\r\n") {
			t.Fatalf("NormalizeAuthority(%q) = %q: longer, not lower case, or with white space", in, out)
		}
		host, port := out, ""
		if strings.HasPrefix(out, "[") || strings.Contains(out, ":") {
			if host, port, err = net.SplitHostPort(out); err != nil {
				t.Fatalf("NormalizeAuthority(%q) = %q: not host:port: %v", in, out, err)
			}
			if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || strconv.FormatUint(n, 10) != port {
				t.Fatalf("NormalizeAuthority(%q) = %q: port %q", in, out, port)
			}
		}
		if host == "" || strings.HasSuffix(host, ".") || strings.HasPrefix(host, ".") || strings.Contains(host, "..") {
			t.Fatalf("NormalizeAuthority(%q) = %q: host %q is empty or has an empty label", in, out, host)
		}
		isASCII := !strings.ContainsFunc(in, func(r rune) bool { return r >= 0x80 })
		if isASCII { // ToUpper of other text can make what ToLower does not undo
			if o, err := discovery.NormalizeAuthority(" " + strings.ToUpper(in) + "\t"); err != nil || o != out {
				t.Fatalf("NormalizeAuthority of %q in upper case with white space = %q, %v; want %q", in, o, err, out)
			}
		}
		if strings.Contains(host, ":") {
			return // IPv6: no trailing dot
		}
		fqdn := func(dots string) string {
			if port == "" {
				return host + dots
			}
			return host + dots + ":" + port
		}
		if o, err := discovery.NormalizeAuthority(fqdn(".")); err != nil || o != out {
			t.Fatalf("NormalizeAuthority(%q) = %q, %v; want %q", fqdn("."), o, err, out)
		}
		if o, err := discovery.NormalizeAuthority(fqdn("..")); !errors.Is(err, discovery.ErrInvalidAuthority) {
			t.Fatalf("NormalizeAuthority(%q) = %q, %v; want an error", fqdn(".."), o, err)
		}
	})
}
