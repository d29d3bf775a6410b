package idleconn

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skiff-mesh/skiff/internal/procfs"
	"github.com/skiff-mesh/skiff/results"
)

// Report is a run of measurements.
type Report struct {
	Machine  procfs.Machine `json:"machine"`
	ProxyBin string         `json:"proxy_bin"`
	// TargetKiB is the most one idle connection may cost to pass.
	TargetKiB float64 `json:"target_kib"`
	// How "settled" was decided (see Config).
	SettleInterval  string  `json:"settle_interval"`
	SettleTolerance float64 `json:"settle_tolerance"`
	MaxSettle       string  `json:"max_settle"`
	MinSettle       string  `json:"min_settle"`
	// ForceGC is how many collections were forced before each reading.
	ForceGC int       `json:"force_gc"`
	Start   time.Time `json:"start"`
	Results []Result  `json:"results"`
	// Verdict is error if any measurement is invalid, else fail if any
	// is over the target, else pass.
	Verdict results.Verdict `json:"verdict"`
}

// Result is one kind at one connection count.
type Result struct {
	Kind  Kind `json:"kind"`
	Conns int  `json:"conns"`
	// Opened is how many connections made their request and stayed open;
	// ProxyOpen how many the proxy counted open at the second reading
	// (tcp_open_connections, inbound, client side).
	Opened    int `json:"opened"`
	ProxyOpen int `json:"proxy_open"`
	// OpenSeconds is how long setting the connections up took.
	OpenSeconds float64 `json:"open_seconds"`
	// UpstreamBefore and UpstreamAfter are the proxy's open connections
	// to the backend at each reading: its keep-alive pool.
	UpstreamBefore int `json:"upstream_before"`
	UpstreamAfter  int `json:"upstream_after"`
	// Before is read once the proxy settled after the warm-up, After
	// once it settled with the connections idle.
	Before Memory `json:"before"`
	After  Memory `json:"after"`
	// The cost of one connection, KiB: the growth of VmRSS, RssAnon and
	// PSS divided by Opened.
	RSSKiBPerConn  float64 `json:"rss_kib_per_conn"`
	AnonKiBPerConn float64 `json:"rss_anon_kib_per_conn"`
	PSSKiBPerConn  float64 `json:"pss_kib_per_conn"`
	// Evicted, Rejected and Shed are the connections the proxy closed or
	// refused meanwhile (tcp_evicted_total, tcp_rejected_total,
	// memory_shed_connections_total); anything but 0 voids the figure.
	Evicted  int64 `json:"evicted"`
	Rejected int64 `json:"rejected"`
	Shed     int64 `json:"shed"`
	// Verdict against the target, and why when it is not a pass.
	Verdict results.Verdict `json:"verdict"`
	Why     string          `json:"why,omitempty"`
	// ProxyArgs is the proxy's command line.
	ProxyArgs []string `json:"proxy_args"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the table: one line per measurement, then the
// readings behind each.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Idle keep-alive connections on the proxy's inbound listener (target: at most %g KiB each)\n", r.TargetKiB)
	fmt.Fprintf(&b, "settled: VmRSS readings %s apart within %g%%, waiting at most %s", r.SettleInterval, r.SettleTolerance*100, r.MaxSettle)
	if r.MinSettle != "" && r.MinSettle != "0s" {
		fmt.Fprintf(&b, " after at least %s", r.MinSettle)
	}
	if r.ForceGC > 0 {
		fmt.Fprintf(&b, "; %d collections forced before each reading\n\n", r.ForceGC)
	} else {
		b.WriteString("; no collection forced\n\n")
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tconns\tΔRSS KiB/conn\tΔRssAnon KiB/conn\tΔPSS KiB/conn\tVmHWM MiB\tevicted/rejected/shed\tverdict\t")
	for _, x := range r.Results {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.1f\t%d/%d/%d\t%s\t\n", x.Kind, x.Conns,
			x.RSSKiBPerConn, x.AnonKiBPerConn, x.PSSKiBPerConn, x.After.VmHWMMB, x.Evicted, x.Rejected, x.Shed, strings.ToUpper(string(x.Verdict)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	for _, x := range r.Results {
		fmt.Fprintf(&b, "%s × %d: VmRSS %.1f → %.1f MiB, RssAnon %.1f → %.1f, RssFile %.1f → %.1f, PSS %.1f → %.1f; %s, %s\n",
			x.Kind, x.Conns, x.Before.VmRSSMB, x.After.VmRSSMB, x.Before.RssAnonMB, x.After.RssAnonMB,
			x.Before.RssFileMB, x.After.RssFileMB, x.Before.PssMB, x.After.PssMB, settled(x.Before), settled(x.After))
		fmt.Fprintf(&b, "  %d opened in %.1f s, %d open at the proxy; upstream connections %d → %d; evicted %d, rejected %d, shed %d\n",
			x.Opened, x.OpenSeconds, x.ProxyOpen, x.UpstreamBefore, x.UpstreamAfter, x.Evicted, x.Rejected, x.Shed)
		if a, z := x.Before.Runtime, x.After.Runtime; a != nil && z != nil && x.Opened > 0 {
			n := float64(x.Opened)
			fmt.Fprintf(&b, "  Go runtime, per connection: heap in use %.2f KiB, stacks %.2f KiB, goroutines %.2f (%d → %d), heap idle %+.2f KiB, GCs %d\n",
				perConn(z.HeapInuse, a.HeapInuse, n), perConn(z.StackInuse, a.StackInuse, n),
				float64(z.Goroutines-a.Goroutines)/n, a.Goroutines, z.Goroutines,
				perConn(z.HeapIdle-z.HeapReleased, a.HeapIdle-a.HeapReleased, n), z.NumGC-a.NumGC)
		}
		if x.Why != "" {
			fmt.Fprintf(&b, "  %s: %s\n", strings.ToUpper(string(x.Verdict)), x.Why)
		}
	}
	fmt.Fprintf(&b, "verdict: %s\n", strings.ToUpper(string(r.Verdict)))
	_, err := io.WriteString(w, b.String())
	return err
}

func perConn(after, before uint64, n float64) float64 {
	return (float64(after) - float64(before)) / 1024 / n
}

func settled(m Memory) string {
	if m.Settled {
		return fmt.Sprintf("settled in %.0f s", m.SettleSeconds)
	}
	return fmt.Sprintf("NOT settled in %.0f s", m.SettleSeconds)
}
