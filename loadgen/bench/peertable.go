package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// PeerTable sets every proxied path beside the peers: added latency, CPU
// per request and memory, each also as a ratio to the reference peer's.
type PeerTable struct {
	// Reference is the path the ratios are to: "nginx" when nginx ran;
	// empty when it did not (the rows then have no ratios).
	Reference string    `json:"reference,omitempty"`
	Rows      []PeerRow `json:"rows"`
}

// PeerRow is one proxied path. Memory is the total over the path's
// processes (PathReport explains each figure).
type PeerRow struct {
	Path        string   `json:"path"`
	Kind        string   `json:"kind"`
	Server      string   `json:"server,omitempty"`
	Processes   int      `json:"processes"`
	AddedP50Ms  Estimate `json:"added_p50_ms"`
	AddedP99Ms  Estimate `json:"added_p99_ms"`
	AddedP999Ms Estimate `json:"added_p999_ms"`
	CPUUsPerReq Estimate `json:"cpu_us_per_req"`
	MaxVmRSSMB  float64  `json:"max_vmrss_mb"`
	VmHWMMB     float64  `json:"vmhwm_mb"`
	MaxPssMB    float64  `json:"max_pss_mb"`
	// Ratio is each figure (medians for the estimates) divided by the
	// reference path's; nil without a reference.
	Ratio *PeerRatios `json:"ratio,omitempty"`
}

// PeerRatios are a row's figures over the reference's. A ratio whose
// reference figure is zero or negative (an added latency the reference
// did not add) is NaN, and null in JSON.
type PeerRatios struct {
	AddedP50  jsonFloat `json:"added_p50"`
	AddedP99  jsonFloat `json:"added_p99"`
	AddedP999 jsonFloat `json:"added_p999"`
	CPUPerReq jsonFloat `json:"cpu_per_req"`
	MaxVmRSS  jsonFloat `json:"max_vmrss"`
	VmHWM     jsonFloat `json:"vmhwm"`
	MaxPss    jsonFloat `json:"max_pss"`
}

// NewPeerTable builds the table from a report's paths: a row for every
// path but direct, ratios to nginx when it is among them.
func NewPeerTable(paths []PathReport) *PeerTable {
	t := &PeerTable{}
	var ref *PeerRow
	for _, p := range paths {
		if p.Kind == KindDirect || p.Name == PathDirect {
			continue
		}
		t.Rows = append(t.Rows, PeerRow{
			Path: p.Name, Kind: p.Kind, Server: p.Server, Processes: p.Processes,
			AddedP50Ms: p.AddedP50Ms, AddedP99Ms: p.AddedP99Ms, AddedP999Ms: p.AddedP999Ms, CPUUsPerReq: p.ProxyCPUUsPerReq,
			MaxVmRSSMB: p.MaxVmRSSMB, VmHWMMB: p.VmHWMMB, MaxPssMB: p.MaxPssMB,
		})
	}
	for i := range t.Rows {
		if t.Rows[i].Path == PeerNginx {
			ref = &t.Rows[i]
			t.Reference = PeerNginx
		}
	}
	if ref == nil {
		return t
	}
	for i := range t.Rows {
		r := &t.Rows[i]
		r.Ratio = &PeerRatios{
			AddedP50:  ratio(r.AddedP50Ms.Median, ref.AddedP50Ms.Median),
			AddedP99:  ratio(r.AddedP99Ms.Median, ref.AddedP99Ms.Median),
			AddedP999: ratio(r.AddedP999Ms.Median, ref.AddedP999Ms.Median),
			CPUPerReq: ratio(r.CPUUsPerReq.Median, ref.CPUUsPerReq.Median),
			MaxVmRSS:  ratio(r.MaxVmRSSMB, ref.MaxVmRSSMB),
			VmHWM:     ratio(r.VmHWMMB, ref.VmHWMMB),
			MaxPss:    ratio(r.MaxPssMB, ref.MaxPssMB),
		}
	}
	return t
}

// ratio is a/b, NaN when b is not positive or either is not finite.
func ratio(a, b float64) jsonFloat {
	if b <= 0 || math.IsInf(a, 0) || math.IsNaN(a) || math.IsInf(b, 0) || math.IsNaN(b) {
		return jsonFloat(math.NaN())
	}
	return jsonFloat(a / b)
}

// WriteText prints the table and, with a reference, the ratios.
func (t *PeerTable) WriteText(w io.Writer) error {
	fmt.Fprintln(w, "beside the peers (memory: totals over each path's processes, nginx's master and worker together;")
	fmt.Fprintln(w, "VmHWM: the sum of each process's peak; CPU: every process of the path):")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tserver\tprocs\tadded p50 ms [95% CI]\tadded p99 ms [95% CI]\tadded p99.9 ms [95% CI]\tCPU µs/req [95% CI]\tmax VmRSS MB\tVmHWM MB\tmax PSS MB\t")
	for _, r := range t.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t\n", r.Path, r.Server, r.Processes,
			r.AddedP50Ms, r.AddedP99Ms, r.AddedP999Ms, r.CPUUsPerReq.Format(0, false), r.MaxVmRSSMB, r.VmHWMMB, r.MaxPssMB)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if t.Reference == "" {
		fmt.Fprintln(w, "\n(no ratios: nginx did not run)")
		return nil
	}
	fmt.Fprintf(w, "\nthe same ÷ %s (medians; two-hop is two proxies against %s's one; -: %s added nothing to divide by):\n\n", t.Reference, t.Reference, t.Reference)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tadded p50\tadded p99\tadded p99.9\tCPU/req\tmax VmRSS\tVmHWM\tmax PSS\t")
	for _, r := range t.Rows {
		q := r.Ratio
		cells := []string{r.Path}
		for _, v := range []jsonFloat{q.AddedP50, q.AddedP99, q.AddedP999, q.CPUPerReq, q.MaxVmRSS, q.VmHWM, q.MaxPss} {
			cells = append(cells, ratioText(float64(v)))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	return tw.Flush()
}

func ratioText(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2f×", v)
}
