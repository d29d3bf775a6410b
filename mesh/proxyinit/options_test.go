package proxyinit

import (
	"flag"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []PortRange
		err  string
	}{
		{"", []PortRange{}, ""},
		{"  ", []PortRange{}, ""},
		{"25", []PortRange{{25, 25}}, ""},
		{"25, 587 ,8000-8010", []PortRange{{25, 25}, {587, 587}, {8000, 8010}}, ""},
		{"1-65535", []PortRange{{1, 65535}}, ""},
		{"80-80", []PortRange{{80, 80}}, ""},
		{"0", nil, `"0": not a port (1-65535)`},
		{"65536", nil, `"65536": not a port`},
		{"25,x", nil, `"x": not a port`},
		{"-5", nil, `"-5": not a port`},
		{"8010-8000", nil, `"8010-8000": the range ends before it starts`},
		{"80-", nil, `"80-": not a port`},
		{"1-2-3", nil, `"1-2-3": not a port`},
		{"25,,26", nil, `empty item in "25,,26"`},
		{"25,", nil, `empty item in "25,"`},
		{"8000-8010,8005", nil, `"8005" overlaps "8000-8010"`},
		{"25,25", nil, `"25" overlaps "25"`},
		{"+25", nil, `"+25": not a port`},
	} {
		got, err := ParsePorts(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePorts(%q) = %v, %v; want an error containing %s", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) || got == nil {
			t.Errorf("ParsePorts(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		in   string
		want []netip.Prefix
		err  string
	}{
		{"", []netip.Prefix{}, ""},
		{"10.96.0.0/12, fd00::/8", []netip.Prefix{p("10.96.0.0/12"), p("fd00::/8")}, ""},
		{"10.1.2.3/8", []netip.Prefix{p("10.0.0.0/8")}, ""},
		{"192.0.2.7", []netip.Prefix{p("192.0.2.7/32")}, ""},
		{"2001:db8::1", []netip.Prefix{p("2001:db8::1/128")}, ""},
		{"10.0.0.0/33", nil, `"10.0.0.0/33": not a CIDR`},
		{"10.0.0/8", nil, `"10.0.0/8": not a CIDR`},
		{"bogus", nil, `"bogus": not a CIDR`},
		{"fe80::1%eth0", nil, `"fe80::1%eth0": an address with a zone`},
		{"::ffff:10.0.0.0/104", nil, `"::ffff:10.0.0.0/104": an IPv4-mapped IPv6 prefix`},
		{"10.0.0.0/8,10.1.0.0/16", nil, `"10.1.0.0/16" overlaps "10.0.0.0/8"`},
		{"10.0.0.0/8,,", nil, `empty item in "10.0.0.0/8,,"`},
	} {
		got, err := ParseCIDRs(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCIDRs(%q) = %v, %v; want an error containing %s", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) || got == nil {
			t.Errorf("ParseCIDRs(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// Options set in Go are checked as flags are: each error names the field,
// its flag and the bad value.
func TestValidate(t *testing.T) {
	v6 := netip.MustParsePrefix("fd00::/8")
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"same ports", Options{InboundPort: 4140}, `--inbound-port (InboundPort): 4140 is also the outbound port`},
		{"uid below -1", Options{ProxyUID: -2}, `--proxy-uid (ProxyUID): -2: want a uid`},
		{"uid too big", Options{ProxyUID: 1 << 32}, `--proxy-uid (ProxyUID): 4294967296: want a uid`},
		{"gid negative", Options{ProxyGID: -1}, `--proxy-gid (ProxyGID): -1: want a gid`},
		{"nothing exempts the proxy", Options{ProxyUID: NoUID}, `--proxy-uid (ProxyUID): none, and no gid or mark either`},
		{"port 0", Options{SkipInboundPorts: []PortRange{{0, 0}}}, `--skip-inbound-ports (SkipInboundPorts): "0": port 0`},
		{"backwards range", Options{SkipOutboundPorts: []PortRange{{90, 80}}}, `--skip-outbound-ports (SkipOutboundPorts): "90-80": the range ends before it starts`},
		{"overlapping ports", Options{SkipOutboundPorts: []PortRange{{80, 90}, {85, 85}}}, `--skip-outbound-ports (SkipOutboundPorts): "85" overlaps "80-90"`},
		{"IPv6 CIDR without --ipv6", Options{SkipOutboundCIDRs: []netip.Prefix{v6}}, `--skip-outbound-cidrs (SkipOutboundCIDRs): "fd00::/8" is IPv6 and --ipv6 is off`},
		{"invalid prefix", Options{SkipInboundCIDRs: []netip.Prefix{{}}}, `--skip-inbound-cidrs (SkipInboundCIDRs): "invalid Prefix": not a valid CIDR`},
		{"overlapping CIDRs", Options{SkipInboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.2.0/24")}}, `--skip-inbound-cidrs (SkipInboundCIDRs): "10.1.2.0/24" overlaps "10.0.0.0/8"`},
		{"4in6", Options{IPv6: true, SkipInboundCIDRs: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}, `"::ffff:10.0.0.0/104": an IPv4-mapped IPv6 prefix`},
		{"skip ports without outbound", Options{NoOutboundRedirect: true, SkipOutboundPorts: []PortRange{{25, 25}}}, `--skip-outbound-ports (SkipOutboundPorts): "25" has no effect with --no-outbound-redirect`},
		{"skip CIDRs without outbound", Options{NoOutboundRedirect: true, SkipOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, `--skip-outbound-cidrs (SkipOutboundCIDRs): "10.0.0.0/8" has no effect`},
	} {
		err := tc.opts.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %s", tc.name, err, tc.want)
		}
		if _, rerr := Render(tc.opts); rerr == nil || (err != nil && rerr.Error() != err.Error()) {
			t.Errorf("%s: Render() = %v, want Validate's error", tc.name, rerr)
		}
	}
	if err := (Options{}).Validate(); err != nil {
		t.Errorf("the zero Options: %v", err)
	}
	if err := (Options{NoOutboundRedirect: true, ProxyUID: NoUID}).Validate(); err != nil {
		t.Errorf("inbound only needs nothing to exempt the proxy: %v", err)
	}
}

func TestFlags(t *testing.T) {
	parse := func(args ...string) (Options, error) {
		fs := flag.NewFlagSet("init", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var o Options
		o.AddFlags(fs)
		err := fs.Parse(args)
		return o, err
	}
	o, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	def, _ := (Options{}).withDefaults()
	if o.InboundPort != def.InboundPort || o.OutboundPort != def.OutboundPort || o.ProxyUID != def.ProxyUID ||
		!slices.Equal(o.SkipInboundPorts, def.SkipInboundPorts) {
		t.Errorf("the flags' defaults %+v are not the zero Options' %+v", o, def)
	}
	o, err = parse("--inbound-port", "15006", "--outbound-port=15001", "--proxy-uid", "-1", "--proxy-gid", "7",
		"--proxy-mark", "0x5c1", "--skip-inbound-ports=", "--skip-outbound-ports", "25,8000-8010",
		"--skip-inbound-cidrs", "10.0.0.0/8", "--skip-outbound-cidrs", "fd00::/8", "--ipv6", "--no-outbound-redirect")
	if err != nil {
		t.Fatal(err)
	}
	want := Options{InboundPort: 15006, OutboundPort: 15001, ProxyUID: NoUID, ProxyGID: 7, ProxyMark: 0x5c1,
		SkipInboundPorts: []PortRange{}, SkipOutboundPorts: []PortRange{{25, 25}, {8000, 8010}},
		SkipInboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, SkipOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00::/8")},
		IPv6: true, NoOutboundRedirect: true}
	if o.InboundPort != want.InboundPort || o.OutboundPort != want.OutboundPort || o.ProxyUID != want.ProxyUID ||
		o.ProxyGID != want.ProxyGID || o.ProxyMark != want.ProxyMark || o.IPv6 != want.IPv6 || o.NoOutboundRedirect != want.NoOutboundRedirect ||
		!slices.Equal(o.SkipInboundPorts, want.SkipInboundPorts) || o.SkipInboundPorts == nil || !slices.Equal(o.SkipOutboundPorts, want.SkipOutboundPorts) ||
		!slices.Equal(o.SkipInboundCIDRs, want.SkipInboundCIDRs) || !slices.Equal(o.SkipOutboundCIDRs, want.SkipOutboundCIDRs) {
		t.Errorf("parsed %+v, want %+v", o, want)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--inbound-port", "0"}, `-inbound-port: "0": not a port`},
		{[]string{"--outbound-port", "70000"}, `-outbound-port: "70000": not a port`},
		{[]string{"--proxy-uid", "0"}, `-proxy-uid: "0": a rule for root would exempt every root process`},
		{[]string{"--proxy-uid", "nobody"}, `-proxy-uid: "nobody": want a uid`},
		{[]string{"--proxy-gid", "-3"}, `-proxy-gid: "-3": want a gid`},
		{[]string{"--proxy-mark", "0x1ffffffff"}, `-proxy-mark: "0x1ffffffff": want a 32-bit mark`},
		{[]string{"--skip-inbound-ports", "25,x"}, `-skip-inbound-ports: "x": not a port`},
		{[]string{"--skip-outbound-cidrs", "10.0.0.0/8,nope"}, `-skip-outbound-cidrs: "nope": not a CIDR`},
	} {
		if _, err := parse(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error containing %s", tc.args, err, tc.want)
		}
	}
}

// namesAnItem says whether msg quotes one of the comma-separated items of
// in, or in itself: every parse error must point at what is wrong.
func namesAnItem(msg, in string) bool {
	if strings.Contains(msg, strconv.Quote(in)) {
		return true
	}
	for _, item := range strings.Split(in, ",") {
		if strings.Contains(msg, strconv.Quote(strings.TrimSpace(item))) {
			return true
		}
	}
	return false
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"", "25", "25,587,8000-8010", "0", "65536", "1-65535", "8010-8000", "25,,26", "8000-8010,8005", " 80 , 443 ", "1-2-3", "-", ",", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParsePorts(in)
		if err != nil {
			if !namesAnItem(err.Error(), in) {
				t.Fatalf("ParsePorts(%q): %q quotes no item of the input", in, err)
			}
			return
		}
		// What parses renders, and reads back the same.
		if _, err := Render(Options{SkipInboundPorts: got, SkipOutboundPorts: got}); err != nil {
			t.Fatalf("ParsePorts(%q) = %v, which Render refuses: %v", in, got, err)
		}
		again, err := ParsePorts(portsString(got))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("ParsePorts(%q) = %v; reading %q back gives %v, %v", in, got, portsString(got), again, err)
		}
	})
}

func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{"", "10.96.0.0/12", "10.0.0.0/8,fd00::/8", "192.0.2.7", "10.0.0.0/33", "fe80::1%eth0", "::ffff:1.2.3.4", "10.0.0.0/8,10.1.0.0/16", "0.0.0.0/0", "::/0,", "1.2.3.4/", "/8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseCIDRs(in)
		if err != nil {
			if !namesAnItem(err.Error(), in) {
				t.Fatalf("ParseCIDRs(%q): %q quotes no item of the input", in, err)
			}
			return
		}
		if _, err := Render(Options{IPv6: true, SkipInboundCIDRs: got, SkipOutboundCIDRs: got}); err != nil {
			t.Fatalf("ParseCIDRs(%q) = %v, which Render refuses: %v", in, got, err)
		}
		again, err := ParseCIDRs(cidrsString(got))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("ParseCIDRs(%q) = %v; reading %q back gives %v, %v", in, got, cidrsString(got), again, err)
		}
	})
}
