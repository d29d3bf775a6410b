package cli

import (
	"bytes"
	"strings"
	"testing"

	meshcli "github.com/skiff-mesh/skiff/mesh/cli"
)

// TestBenchIdleFlags: the defaults are issue 12's measurement (1,000 and
// 10,000 connections of both kinds), and a bad kind is refused before
// anything starts.
func TestBenchIdleFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	o := &meshcli.Options{Stdout: &out, Stderr: &errOut}
	cmd := newBenchIdleCmd(o)
	f := cmd.Flags()
	for name, want := range map[string]string{
		"conns": "[1000,10000]", "kind": "[http1,h2-mtls]", "target-kib": "12", "max-settle": "15s",
	} {
		if got := f.Lookup(name).DefValue; got != want {
			t.Errorf("--%s defaults to %s, want %s", name, got, want)
		}
	}
	cmd.SetArgs([]string{"--kind", "h3", "--proxy-bin", "/nonexistent/skiff-proxy"})
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), `"h3"`) {
		t.Errorf("--kind h3: %v, want an error naming the kind", err)
	}
}
