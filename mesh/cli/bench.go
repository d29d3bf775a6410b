package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-mesh/skiff/loadgen/bench"
)

func newBenchCmd(o *options) *cobra.Command {
	var (
		cfg       bench.Config
		jsonOut   string
		gate      bool
		proxyBin  string
		demoBin   string
		keepLogs  string
		gateLimit = bench.DefaultGate
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the latency and memory the proxy adds: direct vs one proxy vs two proxies, interleaved",
		Long: `bench starts a skiff-demo backend and three skiff-proxy processes, then
drives open-model load along three paths, interleaved in every trial:
direct, one proxy, and two proxies (the meshed path). It reports
percentiles, latency added over the direct path (median over trials with
a 95% confidence interval), proxy CPU per request and proxy memory
(VmRSS, VmHWM). With --gate it fails (exit 99) when the meshed path
breaks the gate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := o.logger()
			if err != nil {
				return err
			}
			if cfg.ProxyBin, err = findBinary(proxyBin, "skiff-proxy"); err != nil {
				return err
			}
			if cfg.DemoBin, err = findBinary(demoBin, "skiff-demo"); err != nil {
				return err
			}
			cfg.WorkDir = keepLogs
			if keepLogs != "" {
				if err := os.MkdirAll(keepLogs, 0o755); err != nil {
					return err
				}
			}
			cfg.Logger = log.With("component", "bench")
			rep, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := rep.WriteText(o.stdout); err != nil {
				return err
			}
			if jsonOut != "" {
				f, err := os.Create(jsonOut)
				if err != nil {
					return err
				}
				if err := rep.WriteJSON(f); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			if !gate {
				return nil
			}
			if v := gateLimit.Check(rep); len(v) > 0 {
				return &ExitError{Code: ExitAssertionFailed, Msg: "bench gate FAILED:\n  " + strings.Join(v, "\n  ")}
			}
			fmt.Fprintf(o.stdout, "\nbench gate passed: two-hop added p50 <= %g ms, added p99 <= %g ms, every proxy VmHWM <= %g MB\n",
				gateLimit.MaxAddedP50Ms, gateLimit.MaxAddedP99Ms, gateLimit.MaxVmHWMMB)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Rate, "rate", 500, "requests per second on each path")
	f.DurationVar(&cfg.Duration, "duration", 0, "per path per trial, warm-up included (default 6s)")
	f.DurationVar(&cfg.WarmUp, "warmup", 0, "unmeasured start of each run (default 1s)")
	f.IntVar(&cfg.Trials, "trials", 5, "interleaved trials")
	f.StringVar(&cfg.Protocol, "protocol", "http1", "http1, h2c or grpc")
	f.IntVar(&cfg.Connections, "connections", 0, "load generator connections (default: the load generator's)")
	f.IntVar(&cfg.PayloadBytes, "payload", 0, "request body bytes (POST /echo when > 0)")
	f.StringVar(&jsonOut, "json", "", "also write the report as JSON to this file")
	f.BoolVar(&gate, "gate", false, "exit 99 when the meshed path breaks the gate")
	f.Float64Var(&gateLimit.MaxAddedP50Ms, "gate-p50-ms", gateLimit.MaxAddedP50Ms, "gate: two-hop added p50")
	f.Float64Var(&gateLimit.MaxAddedP99Ms, "gate-p99-ms", gateLimit.MaxAddedP99Ms, "gate: two-hop added p99")
	f.Float64Var(&gateLimit.MaxVmHWMMB, "gate-vmhwm-mb", gateLimit.MaxVmHWMMB, "gate: every proxy's VmHWM")
	f.StringVar(&proxyBin, "proxy-bin", "", "skiff-proxy binary (default: next to skiff)")
	f.StringVar(&demoBin, "demo-bin", "", "skiff-demo binary (default: next to skiff)")
	f.StringVar(&keepLogs, "logs", "", "keep the processes' logs in this folder")
	return cmd
}
