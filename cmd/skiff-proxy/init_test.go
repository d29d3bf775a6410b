package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/proxyinit"
)

// tables answers the iptables programs with a fixed nat table and records
// what runs; restores succeed without changing it.
type tables struct {
	save  string
	calls []proxyinit.Command
}

func (f *tables) Run(_ context.Context, c proxyinit.Command) ([]byte, error) {
	f.calls = append(f.calls, c)
	if strings.HasSuffix(c.Name, "-save") {
		return []byte(f.save), nil
	}
	return nil, nil
}

func (f *tables) ran() []string {
	var out []string
	for _, c := range f.calls {
		out = append(out, c.String())
	}
	return out
}

// installedSave is iptables-save output holding the rules o renders.
func installedSave(t *testing.T, o proxyinit.Options) string {
	rules, err := proxyinit.Render(o)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for _, c := range rules[0].Chains {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, r := range rules[0].Rules {
		b.WriteString(r.String() + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

const emptyNat = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"

func TestInitDryRun(t *testing.T) {
	f := &tables{save: emptyNat}
	var stdout, stderr bytes.Buffer
	if err := runInit(t.Context(), []string{"--dry-run", "--iptables-mode=nft"}, &stdout, &stderr, f); err != nil {
		t.Fatal(err)
	}
	rules, _ := proxyinit.Render(proxyinit.Options{})
	if !bytes.Equal(stdout.Bytes(), rules[0].Restore()) {
		t.Errorf("dry run printed\n%s\nwant the default rendering", stdout.Bytes())
	}
	if got, want := stderr.String(), "skiff-proxy init: dry run: would apply 10 rules with iptables-nft\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
	if got := f.ran(); len(got) != 1 || got[0] != "iptables-nft-save -t nat" {
		t.Errorf("a dry run ran %q: it may only read", got)
	}
}

func TestInitApplyRemoveCheck(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name      string
		save      string
		args      []string
		stderr    string
		lastCmd   string
		errSubstr string
	}{
		{"apply", emptyNat, []string{"--iptables-mode", "legacy"},
			"skiff-proxy init: applied 10 rules with iptables-legacy\n", "iptables-legacy-restore -w 5 --noflush", ""},
		{"apply again", installedSave(t, proxyinit.Options{}), []string{"--iptables-mode", "legacy"},
			"skiff-proxy init: already in place with iptables-legacy: 10 rules, nothing applied\n", "iptables-legacy-save -t nat", ""},
		{"remove", installedSave(t, proxyinit.Options{}), []string{"--iptables-mode", "nft", "--remove"},
			"skiff-proxy init: removed 10 rules and 4 chains with iptables-nft\n", "iptables-nft-restore -w 5 --noflush", ""},
		{"remove dry run", installedSave(t, proxyinit.Options{}), []string{"--iptables-mode", "nft", "--remove", "--dry-run"},
			"skiff-proxy init: dry run: would remove 10 rules and 4 chains with iptables-nft\n", "iptables-nft-save -t nat", ""},
		{"check in place", installedSave(t, proxyinit.Options{ProxyMark: 7}), []string{"--iptables-mode", "nft", "--check", "--proxy-mark", "7"},
			"skiff-proxy init: rules in place with iptables-nft: 11 rules\n", "iptables-nft-save -t nat", ""},
		{"check differs", installedSave(t, proxyinit.Options{}), []string{"--iptables-mode", "nft", "--check", "--proxy-mark", "7"},
			`IPv4: missing: -A SKIFF_OUTPUT -m mark --mark 0x7 -m comment --comment "skiff: traffic of the proxy (mark 0x7) is not redirected" -j RETURN` + "\n",
			"iptables-nft-save -t nat", "the installed rules differ from the options with iptables-nft: 1 difference"},
	} {
		f := &tables{save: tc.save}
		var stdout, stderr bytes.Buffer
		err := runInit(ctx, tc.args, &stdout, &stderr, f)
		if tc.errSubstr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
				t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.errSubstr)
			}
		} else if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if stderr.String() != tc.stderr {
			t.Errorf("%s: stderr %q, want %q", tc.name, stderr.String(), tc.stderr)
		}
		if ran := f.ran(); len(ran) == 0 || ran[len(ran)-1] != tc.lastCmd {
			t.Errorf("%s: ran %q, want it to end with %q", tc.name, ran, tc.lastCmd)
		}
		if tc.name != "remove dry run" && stdout.Len() != 0 {
			t.Errorf("%s: wrote %q to stdout: only a dry run prints rules", tc.name, stdout.String())
		}
	}
}

func TestInitFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"init", "--iptables-mode", "iptables"}, `--iptables-mode "iptables": want auto, legacy or nft`},
		{[]string{"init", "--check", "--remove"}, "--check only reads the tables"},
		{[]string{"init", "--skip-inbound-ports", "25,x"}, `invalid value "25,x" for flag -skip-inbound-ports: "x": not a port (1-65535)`},
		{[]string{"init", "--skip-outbound-cidrs", "10.0.0.0/8,10.1.0.0/16"}, `"10.1.0.0/16" overlaps "10.0.0.0/8"`},
		{[]string{"init", "--skip-outbound-cidrs", "fd00::/8"}, `--skip-outbound-cidrs (SkipOutboundCIDRs): "fd00::/8" is IPv6 and --ipv6 is off`},
		{[]string{"init", "--proxy-uid", "0"}, "a rule for root would exempt every root process"},
		{[]string{"init", "--proxy-uid", "-1"}, "none, and no gid or mark either"},
		{[]string{"init", "--inbound-port", "4140"}, "--inbound-port (InboundPort): 4140 is also the outbound port"},
		{[]string{"init", "--command-timeout", "0s"}, "--command-timeout 0s: want a positive duration"},
		{[]string{"init", "apply"}, `init: unexpected arguments: ["apply"]`},
	} {
		// Through run: the subcommand is dispatched before the proxy's
		// flags, and every one of these fails before any command runs.
		var stderr bytes.Buffer
		err := run(t.Context(), tc.args, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
