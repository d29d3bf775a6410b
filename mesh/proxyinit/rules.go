package proxyinit

import (
	"bytes"
	"fmt"
	"net/netip"
)

// The chains Skiff owns in the nat table. Removal deletes exactly these
// and the rules that jump to them; nothing else in the table is touched.
const (
	// ChainInbound holds the inbound exceptions, then the jump to
	// ChainInboundRedirect; PREROUTING jumps to it for TCP.
	ChainInbound = "SKIFF_INBOUND"
	// ChainInboundRedirect redirects to the proxy's inbound port.
	ChainInboundRedirect = "SKIFF_INBOUND_REDIRECT"
	// ChainOutput holds the outbound exceptions (the proxy's own traffic,
	// loopback, skipped ports and CIDRs), then the jump to
	// ChainOutboundRedirect; OUTPUT jumps to it for TCP.
	ChainOutput = "SKIFF_OUTPUT"
	// ChainOutboundRedirect redirects to the proxy's outbound port.
	ChainOutboundRedirect = "SKIFF_OUTBOUND_REDIRECT"
)

// isOwnChain says whether chain is one of Skiff's.
func isOwnChain(chain string) bool {
	switch chain {
	case ChainInbound, ChainInboundRedirect, ChainOutput, ChainOutboundRedirect:
		return true
	}
	return false
}

// Family is an address family: its rules go to iptables or ip6tables.
type Family int

// The families; IPv6 rules are rendered only with Options.IPv6.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string { return fmt.Sprintf("IPv%d", int(f)) }

// tool is the program prefix of the family: iptables or ip6tables.
func (f Family) tool() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// Rule is one line of the nat table: its chain and the rest of the line
// exactly as iptables-save prints it, so that what is installed can be
// compared with what is rendered.
type Rule struct {
	Chain string
	Spec  string
}

func (r Rule) String() string { return "-A " + r.Chain + " " + r.Spec }

// Rules are the nat table rules of one family: the chains Skiff creates,
// and every rule, top-down (the jumps from PREROUTING and OUTPUT
// included).
type Rules struct {
	Family Family
	Chains []string
	Rules  []Rule
}

// Restore is the iptables-restore input that installs r in a table that
// holds no Skiff rules, the rest of the table left as it is (with
// --noflush). Installer.Plan writes the same for such a table.
func (r Rules) Restore() []byte { return planApply(installed{}, r).input }

// Render returns the rules o asks for: IPv4, then IPv6 with o.IPv6. It is
// deterministic: the same options render the same bytes, the skip lists in
// the order given.
func Render(o Options) ([]Rules, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	out := []Rules{renderFamily(o, IPv4)}
	if o.IPv6 {
		out = append(out, renderFamily(o, IPv6))
	}
	return out, nil
}

// renderFamily writes the rules in the form iptables-save prints them:
// addresses and interface first, then -p and the matches in the order
// given, the comment, the target. Comments always hold a space (so
// iptables-save quotes them) and never a quote or backslash (which it
// would escape).
func renderFamily(o Options, f Family) Rules {
	r := Rules{Family: f, Chains: []string{ChainInbound, ChainInboundRedirect}}
	if !o.NoOutboundRedirect {
		r.Chains = append(r.Chains, ChainOutput, ChainOutboundRedirect)
	}
	add := func(chain, match, comment, target string) {
		spec := fmt.Sprintf("-m comment --comment \"skiff: %s\" -j %s", comment, target)
		if match != "" {
			spec = match + " " + spec
		}
		r.Rules = append(r.Rules, Rule{chain, spec})
	}
	inFamily := func(ps []netip.Prefix) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range ps {
			if p.Addr().Is6() == (f == IPv6) {
				out = append(out, p)
			}
		}
		return out
	}

	add("PREROUTING", "-p tcp", "inbound TCP goes through "+ChainInbound, ChainInbound)
	for _, p := range o.SkipInboundPorts {
		add(ChainInbound, "-p tcp -m tcp --dport "+p.dport(), fmt.Sprintf("inbound to %s is not redirected (skip-inbound-ports)", portNoun(p)), "RETURN")
	}
	for _, p := range inFamily(o.SkipInboundCIDRs) {
		add(ChainInbound, "-s "+p.String(), fmt.Sprintf("inbound from %s is not redirected (skip-inbound-cidrs)", p), "RETURN")
	}
	add(ChainInbound, "", "all other inbound TCP goes to the proxy", ChainInboundRedirect)
	add(ChainInboundRedirect, "-p tcp", fmt.Sprintf("redirect to the inbound proxy on port %d", o.InboundPort), fmt.Sprintf("REDIRECT --to-ports %d", o.InboundPort))
	if o.NoOutboundRedirect {
		return r
	}

	add("OUTPUT", "-p tcp", "outbound TCP goes through "+ChainOutput, ChainOutput)
	if o.ProxyUID != NoUID {
		add(ChainOutput, fmt.Sprintf("-m owner --uid-owner %d", o.ProxyUID), fmt.Sprintf("traffic of the proxy (uid %d) is not redirected", o.ProxyUID), "RETURN")
	}
	if o.ProxyGID != 0 {
		add(ChainOutput, fmt.Sprintf("-m owner --gid-owner %d", o.ProxyGID), fmt.Sprintf("traffic of the proxy (gid %d) is not redirected", o.ProxyGID), "RETURN")
	}
	if o.ProxyMark != 0 {
		add(ChainOutput, fmt.Sprintf("-m mark --mark %#x", o.ProxyMark), fmt.Sprintf("traffic of the proxy (mark %#x) is not redirected", o.ProxyMark), "RETURN")
	}
	// Every connection routed to the loopback interface: to 127.0.0.0/8
	// and ::1, and to the pod's own addresses, which are local too. The
	// application talking to itself reaches itself, through neither proxy
	// (the connection's NAT is decided here, so PREROUTING does not see
	// it either): redirecting it would send it out through the outbound
	// proxy and back in through the inbound one, for a peer that is the
	// same process.
	add(ChainOutput, "-o lo", "loopback (the pod calling itself, by its own IP too) is not redirected", "RETURN")
	for _, p := range o.SkipOutboundPorts {
		add(ChainOutput, "-p tcp -m tcp --dport "+p.dport(), fmt.Sprintf("outbound to %s is not redirected (skip-outbound-ports)", portNoun(p)), "RETURN")
	}
	for _, p := range inFamily(o.SkipOutboundCIDRs) {
		add(ChainOutput, "-d "+p.String(), fmt.Sprintf("outbound to %s is not redirected (skip-outbound-cidrs)", p), "RETURN")
	}
	add(ChainOutput, "", "all other outbound TCP goes to the proxy", ChainOutboundRedirect)
	add(ChainOutboundRedirect, "-p tcp", fmt.Sprintf("redirect to the outbound proxy on port %d", o.OutboundPort), fmt.Sprintf("REDIRECT --to-ports %d", o.OutboundPort))
	return r
}

func portNoun(p PortRange) string {
	if p.First == p.Last {
		return fmt.Sprintf("port %d", p.First)
	}
	return fmt.Sprintf("ports %d-%d", p.First, p.Last)
}

// restoreInput writes one nat table transaction for iptables-restore.
func restoreInput(header string, lines []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n*nat\n", header)
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}
