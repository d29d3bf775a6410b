package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// Gate is the performance gate on the meshed (two-hop) path. A zero field
// is not checked.
type Gate struct {
	MaxAddedP50Ms float64 // median over trials of the added p50
	MaxAddedP99Ms float64 // median over trials of the added p99
	MaxVmHWMMB    float64 // every proxy's VmHWM
	MinSuccess    float64 // every path's success rate
}

// DefaultGate is make bench-gate's: two proxies add at most 0.5 ms at p50
// and 1 ms at p99, and no proxy ever holds more than 10 MB resident.
var DefaultGate = Gate{MaxAddedP50Ms: 0.5, MaxAddedP99Ms: 1, MaxVmHWMMB: 10, MinSuccess: 0.999}

// Check returns one line per violated limit; none means the gate passes.
// Latency limits judge the median over trials (the point estimate); the
// confidence interval is reported so a reader sees how sure it is.
func (g Gate) Check(r *Report) []string {
	var out []string
	if two := r.Path(PathTwoHop); two != nil {
		if g.MaxAddedP50Ms > 0 && two.AddedP50Ms.Median > g.MaxAddedP50Ms {
			out = append(out, fmt.Sprintf("two-hop added p50 %.3f ms > %.3g ms (95%% CI %.3f..%.3f)", two.AddedP50Ms.Median, g.MaxAddedP50Ms, two.AddedP50Ms.Lo, two.AddedP50Ms.Hi))
		}
		if g.MaxAddedP99Ms > 0 && two.AddedP99Ms.Median > g.MaxAddedP99Ms {
			out = append(out, fmt.Sprintf("two-hop added p99 %.3f ms > %.3g ms (95%% CI %.3f..%.3f)", two.AddedP99Ms.Median, g.MaxAddedP99Ms, two.AddedP99Ms.Lo, two.AddedP99Ms.Hi))
		}
	}
	for _, p := range r.Procs {
		if g.MaxVmHWMMB > 0 && p.VmHWMMB > g.MaxVmHWMMB {
			out = append(out, fmt.Sprintf("%s VmHWM %.2f MB > %.3g MB", p.Name, p.VmHWMMB, g.MaxVmHWMMB))
		}
	}
	for _, p := range r.Paths {
		if g.MinSuccess > 0 && p.SuccessRate < g.MinSuccess {
			out = append(out, fmt.Sprintf("%s success rate %.4f < %.4g", p.Name, p.SuccessRate, g.MinSuccess))
		}
	}
	return out
}

// WriteText prints the report as tables.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "skiff bench: %s at %d req/s, %d interleaved trials of %gs (%gs warm-up) on %s (%d cores, %s)\n\n",
		r.Protocol, r.Rate, r.TrialsCount, r.DurationS, r.WarmUpS, r.Machine.Hostname, r.Machine.Cores, r.Machine.Kernel)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tp50 ms\tp99 ms\tp99.9 ms\tadded p50 ms [95% CI]\tadded p99 ms [95% CI]\tproxy CPU µs/req\tsuccess\t")
	for _, p := range r.Paths {
		added50, added99, cpu := "-", "-", "-"
		if p.Name != PathDirect {
			added50, added99 = p.AddedP50Ms.String(), p.AddedP99Ms.String()
			cpu = fmt.Sprintf("%.0f", p.ProxyCPUUsPerReq.Median)
		}
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%s\t%s\t%s\t%.4f\t\n", p.Name, p.P50Ms.Median, p.P99Ms.Median, p.P999Ms.Median, added50, added99, cpu, p.SuccessRate)
	}
	tw.Flush()
	fmt.Fprintln(w, "\n(latencies: median over trials; added: this path minus direct in the same trial)")
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "proxy\tpath\tidle VmRSS MB\tmax VmRSS MB\tVmHWM MB\t")
	for _, p := range r.Procs {
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%.2f\t\n", p.Name, p.Path, p.IdleVmRSSMB, p.MaxVmRSSMB, p.VmHWMMB)
	}
	return tw.Flush()
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
