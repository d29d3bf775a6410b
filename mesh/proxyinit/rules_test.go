package proxyinit

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// goldenCase is one set of options whose rendering is kept in
// testdata/NAME.golden. The netns test applies each of them too, which
// shows that iptables-save prints every rule exactly as rendered.
type goldenCase struct {
	name string
	opts Options
}

func goldenCases() []goldenCase {
	ports := func(s string) []PortRange {
		p, err := ParsePorts(s)
		if err != nil {
			panic(err)
		}
		return p
	}
	cidrs := func(s string) []netip.Prefix {
		p, err := ParseCIDRs(s)
		if err != nil {
			panic(err)
		}
		return p
	}
	return []goldenCase{
		{"defaults", Options{}},
		{"custom-ports", Options{InboundPort: 15006, OutboundPort: 15001}},
		{"skip-ports", Options{SkipInboundPorts: ports("4191,9090"), SkipOutboundPorts: ports("25,587,3306")}},
		{"skip-nothing", Options{SkipInboundPorts: []PortRange{}}},
		{"port-ranges", Options{SkipInboundPorts: ports("4190-4191,8000-8010"), SkipOutboundPorts: ports("6000-6063")}},
		{"cidrs", Options{SkipInboundCIDRs: cidrs("10.1.0.0/16,192.168.7.7"), SkipOutboundCIDRs: cidrs("10.96.0.0/12,169.254.169.254/32")}},
		{"uid-gid", Options{ProxyUID: 1337, ProxyGID: 1338}},
		{"mark", Options{ProxyUID: NoUID, ProxyMark: 0x5c1}},
		{"uid-and-mark", Options{ProxyMark: 0x40000}},
		{"ipv6", Options{IPv6: true, SkipInboundCIDRs: cidrs("10.1.0.0/16,fd00:1::/64"), SkipOutboundCIDRs: cidrs("fd00:96::/108,10.96.0.0/12,2001:db8::1")}},
		{"no-outbound-redirect", Options{NoOutboundRedirect: true, ProxyUID: NoUID}},
	}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := Render(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			for _, r := range rules {
				got.Write(r.Restore())
			}
			again, _ := Render(tc.opts)
			var second bytes.Buffer
			for _, r := range again {
				second.Write(r.Restore())
			}
			if !bytes.Equal(got.Bytes(), second.Bytes()) {
				t.Fatal("two renderings of the same options differ")
			}
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./mesh/proxyinit -update writes it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("rendering differs from %s (go test ./mesh/proxyinit -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got.Bytes(), want)
			}
		})
	}
}

// Every rule says what it is for: the comment is what an operator sees in
// iptables -L.
func TestEveryRuleHasAComment(t *testing.T) {
	for _, tc := range goldenCases() {
		rules, err := Render(tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			for _, rule := range r.Rules {
				if !strings.Contains(rule.Spec, `-m comment --comment "skiff: `) {
					t.Errorf("%s: %s has no comment", tc.name, rule)
				}
				if strings.ContainsAny(strings.SplitN(rule.Spec, `--comment "`, 2)[1], `'\`) {
					t.Errorf("%s: %s: iptables-save would escape a character of the comment", tc.name, rule)
				}
			}
		}
	}
}
