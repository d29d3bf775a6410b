package cli

import (
	"fmt"
	"time"

	meshcli "github.com/skiff-mesh/skiff/mesh/cli"

	"github.com/spf13/cobra"

	"github.com/skiff-mesh/skiff/loadgen/idleconn"
	"github.com/skiff-mesh/skiff/results"
)

func newBenchIdleCmd(o *meshcli.Options) *cobra.Command {
	var (
		cfg      idleconn.Config
		kinds    []string
		jsonOut  string
		proxyBin string
		gate     bool
	)
	cmd := &cobra.Command{
		Use:   "idle",
		Short: "Measure the memory each idle keep-alive connection costs the proxy (target: 12 KiB)",
		Long: `idle starts a skiff-proxy in front of an in-process demo backend for each
connection kind and count, opens that many connections to its inbound
listener (spread over 127.0.0.10-40), each making one request and then
staying idle, and reports the growth of the proxy's VmRSS, RssAnon and PSS
per connection once its memory has settled, with VmHWM, against the
target of 12 KiB a connection (issue 12).

Kinds: http1 (plaintext HTTP/1.1 keep-alive, an unmeshed client) and
h2-mtls (mutual TLS 1.3 with ALPN h2, as a peer sidecar connects; the
proxy's certificate comes from a throwaway CA served in this process).

The proxy's connection cap and memory budget are raised so that it keeps
every connection; a measurement where it evicted, refused or shed any is
reported as an error, not a figure. With --profile (a skiff-proxy built
with -tags pprof) the Go runtime's heap, stack and goroutine figures per
connection are added, and the profiles saved.

Exit status with --gate: 0 when every figure is within the target, 99
when one is over it, 1 when a measurement could not be made or is not
valid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := o.Logger()
			if err != nil {
				return err
			}
			if cfg.ProxyBin, err = meshcli.FindBinary(proxyBin, "skiff-proxy"); err != nil {
				return err
			}
			cfg.Kinds = nil
			for _, s := range kinds {
				k, err := idleconn.ParseKind(s)
				if err != nil {
					return err
				}
				cfg.Kinds = append(cfg.Kinds, k)
			}
			cfg.Logger = log.With("component", "bench-idle")
			rep, err := idleconn.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if err := rep.WriteText(o.Stdout); err != nil {
				return err
			}
			if jsonOut != "" {
				if err := writeJSONFile(jsonOut, rep.WriteJSON); err != nil {
					return err
				}
			}
			if !gate {
				return nil
			}
			switch rep.Verdict {
			case results.Pass:
				return nil
			case results.Fail:
				return &meshcli.ExitError{Code: meshcli.ExitAssertionFailed, Msg: fmt.Sprintf("bench idle FAILED: an idle connection costs more than %g KiB", rep.TargetKiB)}
			default:
				return &meshcli.ExitError{Code: meshcli.ExitFailure, Msg: "bench idle: a measurement is not valid (the proxy dropped connections); see the report"}
			}
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&cfg.Conns, "conns", []int{1000, 10000}, "connection counts, each measured on a fresh proxy")
	f.StringSliceVar(&kinds, "kind", []string{string(idleconn.KindHTTP1), string(idleconn.KindH2MTLS)}, "connection kinds: http1, h2-mtls")
	f.StringVar(&jsonOut, "json", "", "also write the report as JSON to this file")
	f.StringVar(&proxyBin, "proxy-bin", "", "skiff-proxy binary (default: next to skiff; build it static, as make build does)")
	f.Float64Var(&cfg.TargetKiB, "target-kib", idleconn.DefaultTargetKiB, "the most one idle connection may cost (ΔVmRSS / connections)")
	f.DurationVar(&cfg.MaxSettle, "max-settle", idleconn.DefaultMaxSettle, "the longest wait for the proxy's memory to settle before a reading")
	f.DurationVar(&cfg.MinSettle, "min-settle", 0, "a wait before each reading's settling (and its --force-gc), for what the proxy does only after a while")
	f.DurationVar(&cfg.SettleInterval, "settle-interval", time.Second, "settled: two VmRSS readings this far apart within --settle-tolerance")
	f.Float64Var(&cfg.SettleTolerance, "settle-tolerance", idleconn.DefaultSettleTolerance, "settled: the largest change between two readings, a fraction")
	f.IntVar(&cfg.Concurrency, "concurrency", idleconn.DefaultConcurrency, "connections set up at once")
	f.StringVar(&cfg.ProfileDir, "profile", "", "run the proxy with --pprof (build it with -tags pprof) and save its heap and goroutine profiles here")
	f.IntVar(&cfg.ForceGC, "force-gc", 0, "with --profile: full collections forced before each reading (a forced settle)")
	f.StringArrayVar(&cfg.ProxyArgs, "proxy-arg", nil, "an extra skiff-proxy flag, appended last (repeatable)")
	f.BoolVar(&gate, "gate", false, "exit 99 when a connection costs more than the target, 1 when a measurement is not valid")
	return cmd
}
