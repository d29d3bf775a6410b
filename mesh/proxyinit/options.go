package proxyinit

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The defaults are the proxy's own (mesh/proxy: outbound 127.0.0.1:4140,
// inbound 0.0.0.0:4143, admin 4191) and the user its image runs as.
const (
	DefaultInboundPort  = 4143
	DefaultOutboundPort = 4140
	DefaultProxyUID     = 2102
	// DefaultSkipInboundPorts are the proxy's own ports that peers and
	// the kubelet reach directly: 4191 is the admin server (probes,
	// metrics), 4190 is kept for the proxy's control port (as Linkerd's).
	DefaultSkipInboundPorts = "4190,4191"
)

// NoUID as Options.ProxyUID writes no uid rule: the proxy's traffic is
// then told apart by ProxyGID or ProxyMark alone.
const NoUID = -1

// maxID is the largest uid or gid: (uid_t)-1 means "none" to the kernel.
const maxID = 1<<32 - 2

// Options says what a pod's rules redirect and what they leave alone.
//
// The zero value is the default pod: inbound TCP goes to port 4143 except
// to ports 4190 and 4191, outbound TCP goes to port 4140 except the
// traffic of uid 2102 and loopback, IPv4 only. Each field's doc names the
// flag AddFlags gives it, and errors name both.
type Options struct {
	// InboundPort is where the proxy takes redirected inbound connections
	// (--inbound-port). 0: DefaultInboundPort.
	InboundPort uint16
	// OutboundPort is where the proxy takes redirected outbound
	// connections (--outbound-port). 0: DefaultOutboundPort.
	OutboundPort uint16
	// NoOutboundRedirect leaves outbound traffic alone: only inbound is
	// redirected, and the OUTPUT chain gets no rule
	// (--no-outbound-redirect).
	NoOutboundRedirect bool
	// ProxyUID is the user the proxy runs as: its connections are never
	// redirected, or they would loop back into it (--proxy-uid).
	// 0: DefaultProxyUID; NoUID: no uid rule, and then ProxyGID or
	// ProxyMark must name the proxy's traffic. Root cannot be named: a rule
	// for uid 0 would exempt every root process of the pod (run the proxy
	// as root with a mark instead).
	ProxyUID int
	// ProxyGID, when set, exempts the connections of this group as well
	// (--proxy-gid). 0: no gid rule, for the reason root is refused above.
	ProxyGID int
	// ProxyMark, when set, exempts connections whose socket carries this
	// SO_MARK: skiff-proxy --socket-mark sets it on the proxy's upstream
	// sockets (--proxy-mark). 0: no mark rule (0 is every socket's mark
	// until something sets another).
	ProxyMark uint32
	// SkipInboundPorts are destination ports whose inbound connections go
	// to the application directly (--skip-inbound-ports).
	// nil: DefaultSkipInboundPorts; empty and non-nil: none.
	SkipInboundPorts []PortRange
	// SkipOutboundPorts are destination ports whose outbound connections
	// are not redirected (--skip-outbound-ports). nil or empty: none.
	SkipOutboundPorts []PortRange
	// SkipInboundCIDRs are sources whose inbound connections go to the
	// application directly (--skip-inbound-cidrs). nil or empty: none.
	SkipInboundCIDRs []netip.Prefix
	// SkipOutboundCIDRs are destinations whose outbound connections are
	// not redirected, such as the control plane's subnet
	// (--skip-outbound-cidrs). nil or empty: none.
	SkipOutboundCIDRs []netip.Prefix
	// IPv6 renders and installs the same rules with ip6tables too (--ipv6).
	// Off: IPv4 only, and an IPv6 CIDR is an error.
	IPv6 bool
}

// PortRange is a port or an inclusive range of ports, First <= Last.
type PortRange struct{ First, Last uint16 }

// String is the form ParsePorts reads: "25" or "8000-8010".
func (r PortRange) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// dport is the form iptables' --dport takes and iptables-save prints.
func (r PortRange) dport() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d:%d", r.First, r.Last)
}

func (r PortRange) overlaps(o PortRange) bool { return r.First <= o.Last && o.First <= r.Last }

// ParsePorts reads a comma-separated list of ports and ranges,
// "25,587,8000-8010". An empty (or blank) string is an empty, non-nil
// list. Errors quote the item that is wrong; a port is 1 to 65535, and no
// two items may overlap.
func ParsePorts(s string) ([]PortRange, error) {
	out := []PortRange{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("empty item in %q", s)
		}
		first, last, isRange := strings.Cut(item, "-")
		a, err := parsePort(first)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		b := a
		if isRange {
			if b, err = parsePort(last); err != nil {
				return nil, fmt.Errorf("%q: %w", item, err)
			}
		}
		r := PortRange{a, b}
		if err := checkPortRange(item, r, out); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, errors.New("not a port (1-65535)")
	}
	return uint16(n), nil
}

// checkPortRange says what is wrong with r, written as item, given the
// ranges before it.
func checkPortRange(item string, r PortRange, before []PortRange) error {
	switch {
	case r.First == 0:
		return fmt.Errorf("%q: port 0 is not a port (1-65535)", item)
	case r.Last < r.First:
		return fmt.Errorf("%q: the range ends before it starts", item)
	}
	for _, o := range before {
		if r.overlaps(o) {
			return fmt.Errorf("%q overlaps %q", item, o.String())
		}
	}
	return nil
}

// ParseCIDRs reads a comma-separated list of prefixes, "10.96.0.0/12,
// fd00::/8"; an address alone is a single host. An empty (or blank)
// string is an empty, non-nil list. A prefix with host bits set is masked
// ("10.1.2.3/8" is 10.0.0.0/8, as iptables reads it). Errors quote the
// item that is wrong; no two prefixes may overlap.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("empty item in %q", s)
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if p, err = netip.ParsePrefix(item); err != nil {
				return nil, fmt.Errorf("%q: not a CIDR (address/length)", item)
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("%q: not a CIDR (address/length) or an address", item)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("%q: an address with a zone names no CIDR", item)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err := checkPrefix(item, p, out); err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// checkPrefix says what is wrong with p, written as item, given the
// prefixes before it.
func checkPrefix(item string, p netip.Prefix, before []netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("%q: not a valid CIDR", item)
	case p.Addr().Is4In6():
		return fmt.Errorf("%q: an IPv4-mapped IPv6 prefix; write it as IPv4", item)
	}
	for _, o := range before {
		if p.Overlaps(o) {
			return fmt.Errorf("%q overlaps %q", item, o.String())
		}
	}
	return nil
}

// withDefaults returns o with every zero field that has a default set to
// it, after checking every field. Errors name the field and its flag, and
// quote the value that is wrong.
func (o Options) withDefaults() (Options, error) {
	if o.InboundPort == 0 {
		o.InboundPort = DefaultInboundPort
	}
	if o.OutboundPort == 0 {
		o.OutboundPort = DefaultOutboundPort
	}
	if o.ProxyUID == 0 {
		o.ProxyUID = DefaultProxyUID
	}
	if o.SkipInboundPorts == nil {
		o.SkipInboundPorts, _ = ParsePorts(DefaultSkipInboundPorts)
	}
	if o.InboundPort == o.OutboundPort {
		return o, fieldError("InboundPort", "inbound-port", "%d is also the outbound port: the proxy needs one of each", o.InboundPort)
	}
	if o.ProxyUID < NoUID || o.ProxyUID > maxID {
		return o, fieldError("ProxyUID", "proxy-uid", "%d: want a uid from 1 to %d, or %d for none", o.ProxyUID, maxID, NoUID)
	}
	if o.ProxyGID < 0 || o.ProxyGID > maxID {
		return o, fieldError("ProxyGID", "proxy-gid", "%d: want a gid from 1 to %d, or 0 for none", o.ProxyGID, maxID)
	}
	if !o.NoOutboundRedirect && o.ProxyUID == NoUID && o.ProxyGID == 0 && o.ProxyMark == 0 {
		return o, fieldError("ProxyUID", "proxy-uid", "none, and no gid or mark either: the proxy's own connections would be redirected back into it; set --proxy-uid, --proxy-gid or --proxy-mark")
	}
	if o.NoOutboundRedirect {
		if len(o.SkipOutboundPorts) > 0 {
			return o, fieldError("SkipOutboundPorts", "skip-outbound-ports", "%q has no effect with --no-outbound-redirect", portsString(o.SkipOutboundPorts))
		}
		if len(o.SkipOutboundCIDRs) > 0 {
			return o, fieldError("SkipOutboundCIDRs", "skip-outbound-cidrs", "%q has no effect with --no-outbound-redirect", cidrsString(o.SkipOutboundCIDRs))
		}
	}
	for _, l := range []struct {
		field, flag string
		ports       []PortRange
	}{
		{"SkipInboundPorts", "skip-inbound-ports", o.SkipInboundPorts},
		{"SkipOutboundPorts", "skip-outbound-ports", o.SkipOutboundPorts},
	} {
		for i, r := range l.ports {
			if err := checkPortRange(r.String(), r, l.ports[:i]); err != nil {
				return o, fieldError(l.field, l.flag, "%w", err)
			}
		}
	}
	for _, l := range []struct {
		field, flag string
		cidrs       *[]netip.Prefix
	}{
		{"SkipInboundCIDRs", "skip-inbound-cidrs", &o.SkipInboundCIDRs},
		{"SkipOutboundCIDRs", "skip-outbound-cidrs", &o.SkipOutboundCIDRs},
	} {
		masked := make([]netip.Prefix, 0, len(*l.cidrs))
		for _, p := range *l.cidrs {
			if err := checkPrefix(p.String(), p, masked); err != nil {
				return o, fieldError(l.field, l.flag, "%w", err)
			}
			if p.Addr().Is6() && !o.IPv6 {
				return o, fieldError(l.field, l.flag, "%q is IPv6 and --ipv6 is off", p.String())
			}
			masked = append(masked, p.Masked())
		}
		*l.cidrs = masked
	}
	return o, nil
}

// Validate says what is wrong with o, or nil. Render and every Installer
// method check the same.
func (o Options) Validate() error {
	_, err := o.withDefaults()
	return err
}

func fieldError(field, flagName, format string, args ...any) error {
	return fmt.Errorf("--%s (%s): "+format, append([]any{flagName, field}, args...)...)
}

func portsString(rs []PortRange) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

func cidrsString(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// AddFlags sets o to the defaults and registers a flag for each field on
// fs (the names are in each field's doc). Each flag checks its value as it
// is set; Validate checks the whole.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	*o = Options{
		InboundPort:  DefaultInboundPort,
		OutboundPort: DefaultOutboundPort,
		ProxyUID:     DefaultProxyUID,
	}
	o.SkipInboundPorts, _ = ParsePorts(DefaultSkipInboundPorts)
	fs.Var((*portFlag)(&o.InboundPort), "inbound-port", "the proxy's inbound port: inbound TCP is redirected to it")
	fs.Var((*portFlag)(&o.OutboundPort), "outbound-port", "the proxy's outbound port: outbound TCP is redirected to it")
	fs.BoolVar(&o.NoOutboundRedirect, "no-outbound-redirect", false, "redirect inbound traffic only: the OUTPUT chain gets no rule")
	fs.Var((*uidFlag)(&o.ProxyUID), "proxy-uid", fmt.Sprintf("the uid the proxy runs as: its connections are not redirected (%d: none; then --proxy-gid or --proxy-mark)", NoUID))
	fs.Var((*gidFlag)(&o.ProxyGID), "proxy-gid", "the gid the proxy runs as: its connections are not redirected (0: none)")
	fs.Var((*markFlag)(&o.ProxyMark), "proxy-mark", "the SO_MARK of the proxy's sockets (skiff-proxy --socket-mark): they are not redirected (0: none)")
	fs.Var((*portsFlag)(&o.SkipInboundPorts), "skip-inbound-ports", "inbound destination ports not redirected: 25,587,8000-8010 (empty: none)")
	fs.Var((*portsFlag)(&o.SkipOutboundPorts), "skip-outbound-ports", "outbound destination ports not redirected: 25,587,8000-8010")
	fs.Var((*cidrsFlag)(&o.SkipInboundCIDRs), "skip-inbound-cidrs", "sources whose inbound connections are not redirected: 10.0.0.0/8,fd00::/8")
	fs.Var((*cidrsFlag)(&o.SkipOutboundCIDRs), "skip-outbound-cidrs", "destinations of outbound connections not redirected, such as the control plane's subnet: 10.96.0.0/12")
	fs.BoolVar(&o.IPv6, "ipv6", false, "install the rules for IPv6 too (ip6tables)")
}

type portFlag uint16

func (p *portFlag) String() string { return strconv.Itoa(int(*p)) }
func (p *portFlag) Set(s string) error {
	n, err := parsePort(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	*p = portFlag(n)
	return nil
}

type uidFlag int

func (u *uidFlag) String() string { return strconv.Itoa(int(*u)) }
func (u *uidFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil || n < NoUID || n > maxID:
		return fmt.Errorf("%q: want a uid from 1 to %d, or %d for none", s, maxID, NoUID)
	case n == 0:
		return fmt.Errorf("%q: a rule for root would exempt every root process of the pod; run the proxy as another user, or give it a --proxy-mark", s)
	}
	*u = uidFlag(n)
	return nil
}

type gidFlag int

func (g *gidFlag) String() string { return strconv.Itoa(int(*g)) }
func (g *gidFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxID {
		return fmt.Errorf("%q: want a gid from 1 to %d, or 0 for none", s, maxID)
	}
	*g = gidFlag(n)
	return nil
}

type markFlag uint32

func (m *markFlag) String() string { return fmt.Sprintf("%#x", uint32(*m)) }
func (m *markFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return fmt.Errorf("%q: want a 32-bit mark, decimal or 0x hex", s)
	}
	*m = markFlag(n)
	return nil
}

type portsFlag []PortRange

func (p *portsFlag) String() string { return portsString(*p) }
func (p *portsFlag) Set(s string) error {
	rs, err := ParsePorts(s)
	if err != nil {
		return err
	}
	*p = rs
	return nil
}

type cidrsFlag []netip.Prefix

func (c *cidrsFlag) String() string { return cidrsString(*c) }
func (c *cidrsFlag) Set(s string) error {
	ps, err := ParseCIDRs(s)
	if err != nil {
		return err
	}
	*c = ps
	return nil
}
