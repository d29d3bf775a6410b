package runner

import (
	"slices"
	"testing"

	"github.com/skiff-mesh/skiff/loadgen"
	"github.com/skiff-mesh/skiff/scenarios"
	"github.com/skiff-mesh/skiff/scenarios/spec"
)

// TestSidecarKeys: the sidecar() metrics to read are those the
// assertions and their ceilings name, by the key the evaluator looks up.
func TestSidecarKeys(t *testing.T) {
	sc := &spec.Scenario{Assertions: []spec.Assertion{
		{Expr: `sidecar( client:protocol_detect_total{protocol="tls"} ) >= 1`},
		{Expr: "success_rate >= 1"},
		{Expr: "sidecar(echo:tcp_open_total) > 9", KnownFailure: "x", Ceiling: "sidecar(echo-0:tcp_open_total) > 1"},
	}}
	want := []string{`sidecar(client:protocol_detect_total{protocol="tls"})`, "sidecar(echo:tcp_open_total)", "sidecar(echo-0:tcp_open_total)"}
	if got := sidecarKeys(sc); !slices.Equal(got, want) {
		t.Errorf("sidecarKeys = %q, want %q", got, want)
	}
}

// TestRawEntry: tcp goes to the client sidecar's TCP route (the
// workload's address on the direct path), tls and banner to their own
// entries, and other protocols have none.
func TestRawEntry(t *testing.T) {
	e := scenarios.Entry{Addr: "a:1", TCPAddr: "t:2", TLSAddr: "s:3", BannerAddr: "b:4"}
	for _, c := range []struct {
		p      string
		direct bool
		want   string
	}{
		{loadgen.ProtocolTCP, false, "t:2"},
		{loadgen.ProtocolTCP, true, "a:1"},
		{loadgen.ProtocolTLS, false, "s:3"},
		{loadgen.ProtocolBanner, false, "b:4"},
		{loadgen.ProtocolHTTP1, false, ""},
		{loadgen.ProtocolGRPC, true, ""},
	} {
		if got := rawEntry(e, c.p, c.direct); got != c.want {
			t.Errorf("rawEntry(%s, direct=%v) = %q, want %q", c.p, c.direct, got, c.want)
		}
	}
}
