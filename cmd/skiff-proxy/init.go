package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxyinit"
)

// runInit is `skiff-proxy init`, the init step of a meshed pod: it applies
// the pod's iptables rules (docs/proxy-init.md), or prints what it would
// apply (--dry-run), removes them (--remove) or checks them (--check,
// an error when they differ). Its message is one line on stderr; a dry
// run's rules go to stdout, iptables-restore input. A nil runner runs the
// iptables programs as processes.
func runInit(ctx context.Context, args []string, stdout, stderr io.Writer, runner proxyinit.Runner) error {
	fs := flag.NewFlagSet("skiff-proxy init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: skiff-proxy init [flags]: install the pod's iptables rules that redirect its TCP to the proxy (docs/proxy-init.md)")
		fs.PrintDefaults()
	}
	var (
		opts                  proxyinit.Options
		mode                  string
		dryRun, remove, check bool
		timeout               time.Duration
	)
	opts.AddFlags(fs)
	fs.StringVar(&mode, "iptables-mode", string(proxyinit.ModeAuto), "iptables back end: legacy, nft, or auto (the one whose tables hold more rules; nft when neither holds any)")
	fs.BoolVar(&dryRun, "dry-run", false, "print the iptables-restore input that would be applied (or, with --remove, run for the removal), and change nothing")
	fs.BoolVar(&remove, "remove", false, "delete Skiff's chains and the jumps to them; the rest of the table stays as it is")
	fs.BoolVar(&check, "check", false, "compare the installed rules with those the flags render; exit non-zero when they differ")
	fs.DurationVar(&timeout, "command-timeout", proxyinit.DefaultCommandTimeout, "bound on each iptables command")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("init: unexpected arguments: %q", fs.Args())
	}
	m, err := proxyinit.ParseMode(mode)
	if err != nil {
		return err
	}
	if check && (dryRun || remove) {
		return errors.New("init: --check only reads the tables: it takes neither --dry-run nor --remove")
	}
	if timeout <= 0 {
		return fmt.Errorf("--command-timeout %v: want a positive duration", timeout)
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	if runner == nil {
		runner = proxyinit.ExecRunner{Timeout: timeout}
	}
	in := proxyinit.Installer{Mode: m, Runner: runner}

	if check {
		rep, err := in.Check(ctx, opts)
		if err != nil {
			return err
		}
		if !rep.InPlace() {
			for _, d := range rep.Differences {
				fmt.Fprintln(stderr, d)
			}
			return errors.New(rep.Summary())
		}
		fmt.Fprintln(stderr, "skiff-proxy init:", rep.Summary())
		return nil
	}
	plan := in.Plan
	if remove {
		plan = in.PlanRemove
	}
	p, err := plan(ctx, opts)
	if err != nil {
		return err
	}
	if dryRun {
		if _, err := p.WriteTo(stdout); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "skiff-proxy init: dry run:", p.Summary(true))
		return nil
	}
	if err := in.Execute(ctx, p); err != nil {
		return err
	}
	fmt.Fprintln(stderr, "skiff-proxy init:", p.Summary(false))
	return nil
}
