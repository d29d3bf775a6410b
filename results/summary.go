package results

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// WriteSummary writes r as Markdown for CI logs and pull-request comments:
// the verdict, the failed assertions, the assertion table, latency and
// success per phase and path, resources and the fault timeline.
func (r *Result) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s %s: scenario `%s`\n\n", verdictMark(r.Verdict), verdictWord(r.Verdict), r.Scenario)
	if r.Description != "" {
		fmt.Fprintf(&b, "%s\n\n", oneLine(r.Description))
	}
	if err := r.Failures(); err != nil {
		b.WriteString("```\n" + err.Error() + "\n```\n\n")
	}

	b.WriteString("| run | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, cell(v)) }
	row("revision", r.GitRevision)
	row("environment", r.Environment)
	m := r.Machine
	row("machine", fmt.Sprintf("%s: %d cores, %s %s %s, %s", m.Hostname, m.Cores, m.OS, m.Arch, m.Kernel, m.GoVersion))
	if m.CPUModel != "" {
		row("cpu", m.CPUModel)
	}
	seed := fmt.Sprint(r.Seed)
	if r.Quick {
		seed += " (quick run)"
	}
	row("seed", seed)
	row("start", fmt.Sprintf("%s (%.1f s)", r.Start.UTC().Format("2006-01-02 15:04:05Z"), r.duration()))
	if r.Noise != nil {
		row("machine noise", r.Noise.String())
	}
	b.WriteString("\n")
	if busy, why := r.Noise.Busy(); busy {
		fmt.Fprintf(&b, "> The machine was busy during this run (%s): single-run latency and error figures include a neighbour's share of the CPUs.\n\n", why)
	}

	if len(r.Assertions) > 0 {
		b.WriteString("## Assertions\n\n|   | phase | assertion | measured |\n|---|---|---|---|\n")
		for _, a := range r.Assertions {
			fmt.Fprintf(&b, "| %s | %s | `%s` | %s |\n", assertionMark(a), cell(a.Phase), cell(a.Expr), cell(measured(a)))
		}
		b.WriteString("\n")
	}

	if len(r.Phases) > 0 {
		b.WriteString("## Latency and success\n\nLatency in ms from each request's intended send time.\n\n")
		b.WriteString("| phase | path | requests | success | p50 | p90 | p99 | p99.9 | max | mean | retries | status codes |\n")
		b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
		var errs []string
		for _, ph := range r.Phases {
			name := ph.Name
			if ph.Excluded {
				name += " (excluded)"
			}
			for _, ps := range ph.Paths {
				l := ps.Latency
				fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %d | %s |\n",
					cell(name), cell(ps.Path), ps.Count, fmtPct(ps.SuccessRate),
					fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Mean),
					ps.Retries, cell(fmtCounts(ps.StatusCodes)))
				for _, e := range slices.Sorted(maps.Keys(ps.Errors)) {
					errs = append(errs, fmt.Sprintf("- %s/%s: `%s` ×%d\n", ph.Name, ps.Path, oneLine(e), ps.Errors[e]))
				}
			}
		}
		b.WriteString("\n")
		if len(errs) > 0 {
			b.WriteString("Errors:\n\n" + strings.Join(errs, "") + "\n")
		}
	}

	if r.Propagation != nil {
		r.Propagation.writeSummary(&b)
	}

	if len(r.Processes) > 0 {
		b.WriteString("## Resources\n\nMemory in MiB from /proc/<pid>/status: VmRSS sampled through the run (max), VmHWM the kernel's peak; PSS (smaps_rollup) counts a page shared by several processes (a binary's code) once among them: what a node pays. CPU is utime+stime. Each pid is listed once, with when it went and when its successor came.\n\n")
		b.WriteString("| process | role | pids | VmRSS max | VmHWM | PSS max | CPU s | CPU µs/request |\n|---|---|---|--:|--:|--:|--:|--:|\n")
		for _, p := range r.Processes {
			perReq := "—"
			if p.Requests > 0 {
				perReq = fmtNum(p.CPUMicrosPerRequest)
			}
			pids := strings.Join(p.pidHistory(), ", ")
			if len(p.Lives) == 0 && p.Note != "" {
				pids += "; " + p.Note // written before lives: the note says what happened
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", cell(p.Name), cell(p.Role), cell(pids),
				fmtMB(p.VmRSSMaxMB), fmtMB(p.VmHWMMB), fmtPss(p.PssMaxMB), fmtNum(p.CPUSeconds), perReq)
		}
		b.WriteString("\n")
	}

	if len(r.Events) > 0 {
		b.WriteString("## Events\n\n| t (s) | event | result |\n|--:|---|---|\n")
		for _, e := range r.Events {
			res := "✓"
			if !e.OK {
				res = "✗ " + e.Err
			}
			fmt.Fprintf(&b, "| %.1f | %s | %s |\n", e.OffsetS, cell(e.Label()), cell(res))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(oneLine(s), "|", `\|`)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// fmtPss is a PSS figure, or a dash where none was read (results written
// before it was recorded).
func fmtPss(mb float64) string {
	if mb <= 0 {
		return "—"
	}
	return fmtMB(mb)
}
