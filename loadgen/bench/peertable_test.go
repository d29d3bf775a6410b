package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// withPeers adds nginx and haproxy paths to r, nginx with per-trial added
// latencies addedP50 (ms) and CPU cpu (µs/req).
func withPeers(r *Report, addedP50, cpu float64) *Report {
	for _, peer := range []struct {
		name, server string
		procs        int
		rss, hwm     float64
		pss          float64
		scale        float64
	}{
		{PeerNginx, "nginx/1.22.1", 2, 11.2, 11.2, 4.9, 1},
		{PeerHAProxy, "HAProxy 2.6.12-1+deb12u4", 1, 14.2, 14.2, 10.8, 1.1},
	} {
		var ts []Trial
		for i := range r.TrialsCount {
			d := r.Path(PathDirect).Trials[i]
			t := Trial{Requests: 2000, Success: 2000, SuccessRate: 1,
				AddedP50Ms: peer.scale * (addedP50 + 0.01*float64(i%3)), AddedP99Ms: peer.scale * 0.2, AddedP999Ms: peer.scale * (0.4 + 0.1*float64(i%2)),
				ProxyCPUUsPerReq: peer.scale * (cpu + float64(i%4))}
			t.P50Ms, t.P99Ms, t.P999Ms = d.P50Ms+t.AddedP50Ms, d.P99Ms+t.AddedP99Ms, d.P999Ms+t.AddedP999Ms
			ts = append(ts, t)
		}
		pr := summarize(peer.name, ts)
		pr.Kind, pr.Server, pr.Processes, pr.MaxVmRSSMB, pr.VmHWMMB, pr.MaxPssMB = KindPeer, peer.server, peer.procs, peer.rss, peer.hwm, peer.pss
		r.Paths = append(r.Paths, pr)
	}
	for i := range r.Paths {
		p := &r.Paths[i]
		if p.Kind == KindSkiff {
			p.Server, p.Processes = "skiff-proxy", 1
			p.MaxVmRSSMB, p.VmHWMMB, p.MaxPssMB = 6.2, 6.4, 3.9
			if p.Name == PathTwoHop {
				p.Processes, p.MaxVmRSSMB, p.VmHWMMB, p.MaxPssMB = 2, 12.6, 12.9, 7.3
			}
		}
	}
	r.Procs = append(r.Procs,
		ProcReport{Name: "nginx-master", Path: PeerNginx, Role: "master", IdleVmRSSMB: 6.6, MaxVmRSSMB: 6.6, VmHWMMB: 6.6, MaxPssMB: 2.9},
		ProcReport{Name: "nginx-worker", Path: PeerNginx, Role: "worker", IdleVmRSSMB: 4.5, MaxVmRSSMB: 4.6, VmHWMMB: 4.6, MaxPssMB: 2.0},
		ProcReport{Name: "haproxy", Path: PeerHAProxy, IdleVmRSSMB: 14.1, MaxVmRSSMB: 14.2, VmHWMMB: 14.2, MaxPssMB: 10.8})
	r.Peers = NewPeerTable(r.Paths)
	return r
}

func TestPeerTableRatios(t *testing.T) {
	r := withPeers(report(quietP50, quietP99, nil, 6.6), 0.1, 140)
	pt := r.Peers
	if pt.Reference != PeerNginx || len(pt.Rows) != 4 {
		t.Fatalf("reference %q, %d rows; want nginx and one-hop, two-hop, nginx, haproxy", pt.Reference, len(pt.Rows))
	}
	row := func(name string) PeerRow {
		for _, r := range pt.Rows {
			if r.Path == name {
				return r
			}
		}
		t.Fatalf("no row %s", name)
		return PeerRow{}
	}
	one, ng := row(PathOneHop), row(PeerNginx)
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"one-hop CPU", float64(one.Ratio.CPUPerReq), one.CPUUsPerReq.Median / ng.CPUUsPerReq.Median},
		{"one-hop added p50", float64(one.Ratio.AddedP50), one.AddedP50Ms.Median / ng.AddedP50Ms.Median},
		{"one-hop PSS", float64(one.Ratio.MaxPss), 3.9 / 4.9},
		{"two-hop VmHWM", float64(row(PathTwoHop).Ratio.VmHWM), 12.9 / 11.2},
		{"nginx to itself", float64(ng.Ratio.AddedP999), 1},
		{"haproxy CPU", float64(row(PeerHAProxy).Ratio.CPUPerReq), 1.1},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s: ratio %v, want %v", c.what, c.got, c.want)
		}
	}

	// Nothing to divide by: nginx added no p50 (or less than none).
	for _, zero := range []float64{-0.01, -0.05} { // medians 0 and -0.04
		r := withPeers(report(quietP50, quietP99, nil, 6.6), zero, 140)
		if v := float64(r.Peers.Rows[0].Ratio.AddedP50); !math.IsNaN(v) {
			t.Errorf("nginx added %v ms: ratio %v, want NaN", zero, v)
		}
		var b bytes.Buffer
		if err := r.WriteJSON(&b); err != nil {
			t.Fatalf("a NaN ratio must encode (as null): %v", err)
		}
		if !strings.Contains(b.String(), `"added_p50": null`) {
			t.Error("a ratio with nothing to divide by should encode as null")
		}
	}
	// Without nginx: rows, no ratios.
	var paths []PathReport
	for _, p := range r.Paths {
		if p.Name != PeerNginx {
			paths = append(paths, p)
		}
	}
	if pt := NewPeerTable(paths); pt.Reference != "" || pt.Rows[0].Ratio != nil {
		t.Errorf("without nginx: %+v", pt)
	}
	for _, c := range []struct{ a, b, want float64 }{{2, 4, 0.5}, {1, 0, math.NaN()}, {math.Inf(1), 1, math.NaN()}, {-1, 2, -0.5}} {
		if got := float64(ratio(c.a, c.b)); got != c.want && !(math.IsNaN(got) && math.IsNaN(c.want)) {
			t.Errorf("ratio(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestReportTextPeers is what make bench-peers prints, and its JSON
// keeps the schema's fields.
func TestReportTextPeers(t *testing.T) {
	r := withPeers(report(quietP50, quietP99, nil, 6.6), 0.1, 140)
	r.Machine.Hostname, r.Machine.Cores, r.Machine.Kernel = "ci-1", 2, "6.1.0-test"
	r.Notes = []string{"haproxy skipped: not installed (an example note)"}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "report_peers.golden", b.String())

	b.Reset()
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	// schema "skiff.bench/v1": every field of the first files is still
	// there.
	for _, k := range []string{"schema", "rate", "protocol", "trial_duration_s", "warm_up_s", "trials", "machine", "paths", "procs", "peers"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	path := back["paths"].([]any)[1].(map[string]any)
	for _, k := range []string{"name", "trials", "p50_ms", "p99_ms", "p999_ms", "added_p50_ms", "added_p99_ms", "added_p999_ms", "proxy_cpu_us_per_req", "kind", "max_pss_mb"} {
		if _, ok := path[k]; !ok {
			t.Errorf("JSON path lacks %q", k)
		}
	}
	rows := back["peers"].(map[string]any)["rows"].([]any)
	if len(rows) != 4 || rows[2].(map[string]any)["ratio"] == nil {
		t.Errorf("JSON peers table: %v", back["peers"])
	}
}
