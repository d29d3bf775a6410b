package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	meshcli "github.com/skiff-mesh/skiff/mesh/cli"

	"github.com/spf13/cobra"

	"github.com/skiff-mesh/skiff/loadgen/bench"
	"github.com/skiff-mesh/skiff/results"
)

func newBenchCmd(o *meshcli.Options) *cobra.Command {
	var (
		cfg       bench.Config
		jsonOut   string
		gate      bool
		proxyBin  string
		demoBin   string
		keepLogs  string
		known     []string
		peers     []string
		install   bool
		gateLimit = bench.DefaultGate
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the latency and memory the proxy adds: direct vs one proxy vs two proxies (vs nginx, haproxy, a base build), interleaved",
		Long: `bench starts a skiff-demo backend and three skiff-proxy processes, then
drives open-model load along three paths, interleaved in every trial:
direct, one proxy, and two proxies (the meshed path), and along the
peers' and the base build's paths when asked (below). It reports
percentiles, latency added over the direct path (median over trials with
a 95% confidence interval), proxy CPU per request, proxy memory (VmRSS,
VmHWM) and the machine's own noise (other processes' CPU, steal, the load
generator's lateness, the direct path's spread).

With --gate it decides on the intervals: a figure passes when all of its
95% interval is within the limit and fails when none of it is. While one
straddles its limit, bench runs more interleaved trials, doubling them
up to --max-trials, and decides again. Exit status with --gate: 0 PASS,
99 FAIL, 98 INCONCLUSIVE (still straddling at --max-trials: not a pass),
1 when the bench could not run.

A limit known not to hold today is named with --known and a ceiling,
"added_p50_ms<=0.75: why": it is still judged and printed, as a known
failure, and the ceiling decides in its place, so that it cannot get
worse unnoticed.

--peers nginx,haproxy adds a path through each, a one-hop HTTP/1.1
reverse proxy to the same backend configured like Skiff's proxy (one
worker, keep-alive upstream, no access log; docs/proxy.md), run from a
temp dir on a loopback port of its own and stopped after. A peer that is
not installed is installed from Debian packages when bench runs as root
(--install-peers); otherwise it is skipped, with one line saying so. The
report then sets every path beside the peers, with ratios to nginx.

--baseline-proxy-bin OLD adds the paths one-hop@base and two-hop@base
through an older build's proxy, in the same trials. With --gate the
builds are compared too: this build fails when its CPU per request or
added p50 (one-hop, two-hop) exceeds the base's shifted by a margin
(--ab-cpu-margin, --ab-p50-margin-ms) by a signed-rank test paired by
trial at --ab-alpha; added p99 is reported only. make ab-gate builds the
base.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := o.Logger()
			if err != nil {
				return err
			}
			if cfg.ProxyBin, err = meshcli.FindBinary(proxyBin, "skiff-proxy"); err != nil {
				return err
			}
			if cfg.DemoBin, err = meshcli.FindBinary(demoBin, "skiff-demo"); err != nil {
				return err
			}
			cfg.WorkDir = keepLogs
			if keepLogs != "" {
				if err := os.MkdirAll(keepLogs, 0o755); err != nil {
					return err
				}
			}
			cfg.Logger = log.With("component", "bench")
			if cfg.BaselineProxyBin != "" {
				if _, err := os.Stat(cfg.BaselineProxyBin); err != nil {
					return fmt.Errorf("--baseline-proxy-bin: %w", err)
				}
			}
			var notes []string
			if len(peers) > 0 {
				if cfg.Peers, notes, err = findPeers(cmd.Context(), peers, install, keepLogs, o.Stderr); err != nil {
					return err
				}
			}
			if len(known) > 0 && !gate {
				return fmt.Errorf("--known needs --gate")
			}
			for _, k := range known {
				metric, kf, err := gateLimit.ParseKnown(k)
				if err != nil {
					return err
				}
				if gateLimit.Known == nil {
					gateLimit.Known = map[string]bench.Known{}
				}
				gateLimit.Known[metric] = kf
			}
			if gate {
				cfg.Gate = &gateLimit
			}
			rep, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			rep.Notes = append(rep.Notes, notes...)
			if err := rep.WriteText(o.Stdout); err != nil {
				return err
			}
			if jsonOut != "" {
				if err := writeJSONFile(jsonOut, rep.WriteJSON); err != nil {
					return err
				}
			}
			if rep.Gate == nil {
				return nil
			}
			return gateExit(rep.Gate)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Rate, "rate", 500, "requests per second on each path")
	f.DurationVar(&cfg.Duration, "duration", 0, "per path per trial, warm-up included (default 6s)")
	f.DurationVar(&cfg.WarmUp, "warmup", 0, "unmeasured start of each run (default 1s)")
	f.IntVar(&cfg.Trials, "trials", 5, "interleaved trials")
	f.IntVar(&cfg.MaxTrials, "max-trials", 24, "with --gate: while a figure's interval straddles its limit, double the trials up to this many")
	f.StringVar(&cfg.Protocol, "protocol", "http1", "http1, h2c or grpc")
	f.IntVar(&cfg.Connections, "connections", 0, "load generator connections (default: the load generator's)")
	f.IntVar(&cfg.PayloadBytes, "payload", 0, "request body bytes (POST /echo when > 0)")
	f.StringVar(&jsonOut, "json", "", "also write the report as JSON to this file")
	f.BoolVar(&gate, "gate", false, "decide the gate on the intervals: exit 0 PASS, 99 FAIL, 98 INCONCLUSIVE")
	f.Float64Var(&gateLimit.MaxAddedP50Ms, "gate-p50-ms", gateLimit.MaxAddedP50Ms, "gate: two-hop added p50")
	f.Float64Var(&gateLimit.MaxAddedP99Ms, "gate-p99-ms", gateLimit.MaxAddedP99Ms, "gate: two-hop added p99")
	f.Float64Var(&gateLimit.MaxVmHWMMB, "gate-vmhwm-mb", gateLimit.MaxVmHWMMB, "gate: every proxy's VmHWM")
	f.Float64Var(&gateLimit.MinSuccess, "gate-success", gateLimit.MinSuccess, "gate: every path's success rate")
	f.StringArrayVar(&known, "known", nil, `with --gate: a limit known to fail today and the ceiling that decides instead, "added_p50_ms<=0.75: why" (repeatable)`)
	f.StringVar(&proxyBin, "proxy-bin", "", "skiff-proxy binary (default: next to skiff)")
	f.StringVar(&demoBin, "demo-bin", "", "skiff-demo binary (default: next to skiff)")
	f.StringVar(&keepLogs, "logs", "", "keep the processes' logs in this folder")
	f.StringSliceVar(&peers, "peers", nil, "also measure these proxies one-hop beside Skiff's: nginx, haproxy (HTTP/1.1)")
	f.BoolVar(&install, "install-peers", true, "install a missing peer from Debian packages (root and apt-get only; otherwise it is skipped)")
	f.StringVar(&cfg.BaselineProxyBin, "baseline-proxy-bin", "", "a base build's skiff-proxy: adds one-hop@base and two-hop@base, and with --gate compares the builds")
	f.Float64Var(&gateLimit.AB.CPUMargin, "ab-cpu-margin", bench.DefaultABCPUMargin, "A/B gate: this build may use this fraction more CPU per request than the base")
	f.Float64Var(&gateLimit.AB.P50MarginMs, "ab-p50-margin-ms", bench.DefaultABP50MarginMs, "A/B gate: this build may add this many ms more at p50 than the base")
	f.Float64Var(&gateLimit.AB.Alpha, "ab-alpha", bench.DefaultABAlpha, "A/B gate: significance level of each comparison (two-sided p of a signed-rank test paired by trial)")
	cmd.AddCommand(newBenchIdleCmd(o))
	return cmd
}

// findPeers finds the named peers' binaries, installing the missing ones
// when install is set and the machine allows (bench.InstallPeers). A
// peer still missing is skipped, with one line on stderr and a note for
// the report.
func findPeers(ctx context.Context, names []string, install bool, logDir string, stderr io.Writer) ([]bench.Peer, []string, error) {
	names, err := bench.ParsePeers(names)
	if err != nil {
		return nil, nil, err
	}
	var missing []string
	for _, n := range names {
		if _, err := bench.FindPeer(ctx, n); err != nil {
			missing = append(missing, n)
		}
	}
	why := "not installed"
	if len(missing) > 0 && install {
		if logDir == "" {
			logDir = os.TempDir()
		}
		logPath := filepath.Join(logDir, "skiff-bench-apt.log")
		fmt.Fprintf(stderr, "bench: installing %s from Debian packages (apt-get; log: %s)\n", strings.Join(missing, ", "), logPath)
		if err := bench.InstallPeers(ctx, missing, logPath); err != nil {
			why = "not installed, and " + err.Error()
		}
	} else if len(missing) > 0 {
		why = "not installed (--install-peers=false)"
	}
	var found []bench.Peer
	var notes []string
	for _, n := range names {
		p, err := bench.FindPeer(ctx, n)
		if err != nil {
			note := fmt.Sprintf("%s skipped: %s; the rest of the bench runs", n, why)
			fmt.Fprintln(stderr, "bench: "+note)
			notes = append(notes, note)
			continue
		}
		found = append(found, p)
	}
	return found, notes, nil
}

// gateExit turns a gate's decision into the command's outcome: nil for a
// pass, exit 99 for a fail and 98 for an inconclusive decision, each with
// a one-line verdict that names the undecided or failed figures.
func gateExit(d *bench.Decision) error {
	var bad []string
	for _, c := range d.Checks {
		if c.Verdict != results.Pass && c.Counts() {
			bad = append(bad, c.Message)
		}
	}
	switch d.Verdict {
	case results.Pass:
		return nil
	case results.Inconclusive:
		return &meshcli.ExitError{Code: results.ExitInconclusive, Msg: fmt.Sprintf("bench gate INCONCLUSIVE after %d trials (not a pass; the intervals still straddle the limits):\n  %s",
			d.Trials, strings.Join(bad, "\n  "))}
	default:
		return &meshcli.ExitError{Code: meshcli.ExitAssertionFailed, Msg: fmt.Sprintf("bench gate FAILED after %d trials:\n  %s", d.Trials, strings.Join(bad, "\n  "))}
	}
}

// writeJSONFile writes a report's JSON to a new file at path.
func writeJSONFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
