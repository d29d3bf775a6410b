// Command skiff-demo runs the demo workload that skiff scenarios drive: an
// HTTP/1.1 + h2c + gRPC echo backend with per-request fault controls, an
// optional native gRPC listener, and optional TCP echo, TLS echo and
// server-speaks-first banner listeners. See
// package github.com/skiff-mesh/skiff/simulator/demo for the endpoints.
//
//	skiff-demo --addr 127.0.0.1:8080 --grpc-addr 127.0.0.1:9090 --tcp-addr 127.0.0.1:7070 \
//	    --tls-addr 127.0.0.1:8443 --banner-addr 127.0.0.1:2525 \
//	    --name echo-1 --latency 1ms:50,10ms:1 --error-rate 0.01 --error-status 503 --max-concurrent 8
//
// It stops gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/skiff-mesh/skiff/simulator/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "skiff-demo:", err)
		os.Exit(1)
	}
}

// options holds the command line.
type options struct {
	addr, grpcAddr, tcpAddr, name string
	tlsAddr, bannerAddr           string
	latency                       demo.Delays
	latencyJitter                 time.Duration
	errorRate, resetRate          float64
	errorStatus, maxConcurrent    int
	seed                          uint64
	shutdownTimeout               time.Duration
	logLevel                      slog.Level
	logFormat                     string
}

// run parses args, logs to stdout and serves until ctx ends.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	var o options
	fs := flag.NewFlagSet("skiff-demo", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "listen address for HTTP/1.1, h2c, gRPC over h2c and the /_demo admin API")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "", "listen address for the native gRPC server (empty: none)")
	fs.StringVar(&o.tcpAddr, "tcp-addr", "", "listen address for the opaque TCP echo (empty: none)")
	fs.StringVar(&o.tlsAddr, "tls-addr", "", "listen address for the TLS echo, with a self-signed certificate (empty: none)")
	fs.StringVar(&o.bannerAddr, "banner-addr", "", "listen address for the server-speaks-first banner protocol (empty: none)")
	fs.StringVar(&o.name, "name", demo.DefaultName, "replica name, returned in bodies, the "+demo.ReplicaHeader+" header and stats")
	fs.TextVar(&o.latency, "latency", demo.Delays(nil), "added latency: a duration (2ms) or a distribution DURATION:PERCENT,… (1ms:50,10ms:1)")
	fs.DurationVar(&o.latencyJitter, "latency-jitter", 0, "uniform ± jitter on delayed requests")
	fs.Float64Var(&o.errorRate, "error-rate", 0, "fraction (0..1) of requests answered with --error-status")
	fs.IntVar(&o.errorStatus, "error-status", demo.DefaultErrorStatus, "HTTP status of injected errors (gRPC: mapped to a code)")
	fs.Float64Var(&o.resetRate, "reset-rate", 0, "fraction (0..1) of requests and TCP connections closed without an answer")
	fs.IntVar(&o.maxConcurrent, "max-concurrent", 0, "workload requests served at once; the rest wait their turn (0: no limit)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the fault randomness (0: from the clock)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", demo.DefaultShutdownTimeout, "how long in-flight work may finish after SIGTERM")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; every setting is a flag, see --help", fs.Args())
	}

	// STYLE.md wants one shared helper for --log-level and --log-format; it
	// is not in the tree yet, so this binary builds its handler itself.
	hopts := &slog.HandlerOptions{Level: o.logLevel}
	var h slog.Handler
	switch o.logFormat {
	case "text":
		h = slog.NewTextHandler(stdout, hopts)
	case "json":
		h = slog.NewJSONHandler(stdout, hopts)
	default:
		return fmt.Errorf("--log-format %q: want text or json", o.logFormat)
	}

	return demo.Serve(ctx, demo.Config{
		Addr:       o.addr,
		GRPCAddr:   o.grpcAddr,
		TCPAddr:    o.tcpAddr,
		TLSAddr:    o.tlsAddr,
		BannerAddr: o.bannerAddr,
		Name:       o.name,
		Behaviour: demo.Behaviour{
			Latency:       o.latency,
			LatencyJitter: o.latencyJitter,
			ErrorRate:     o.errorRate,
			ErrorStatus:   o.errorStatus,
			ResetRate:     o.resetRate,
			MaxConcurrent: o.maxConcurrent,
		},
		Seed:            o.seed,
		ShutdownTimeout: o.shutdownTimeout,
		Logger:          slog.New(h),
	})
}
