// Package cli is the mesh's skiff command line: the root command, version,
// and the mesh's day-two commands (install, check, stat, tap …) as they
// land. The harness's verbs (scenario, bench) live with the harness
// (scenarios/cli); cmd/skiff joins both through Run's more commands, so
// this package links nothing of the harness.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/skiff-mesh/skiff/internal/logging"
)

// ExitError carries a process exit code through cobra, for outcomes that
// are verdicts rather than failures to run (a failed SLO, a failed gate).
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// Exit codes. A verdict (an SLO or gate that failed) exits 99, as k6 does
// for thresholds, so CI can tell "the system is too slow" from "the tool
// could not run" (1).
const (
	ExitAssertionFailed = 99
	ExitFailure         = 1
)

// Options are what every command shares: the logging flags and the
// output streams.
type Options struct {
	Log    logging.Options
	Stdout io.Writer
	Stderr io.Writer
}

// Logger is the logger the logging flags ask for, writing to Stderr.
func (o *Options) Logger() (*slog.Logger, error) { return o.Log.New(o.Stderr) }

// Command builds a sub-command of the skiff command line from the shared
// options.
type Command func(o *Options) *cobra.Command

// Run executes the skiff command line and returns the process exit code.
// more are further sub-commands (the harness's) joined to the mesh's.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, more ...Command) int {
	o := &Options{Stdout: stdout, Stderr: stderr}
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "Skiff: a lightweight service mesh whose every claim is measured",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	o.Log.AddFlags(root.PersistentFlags())
	root.AddCommand(newVersionCmd(o))
	root.AddCommand(newInjectCmd(o), newUninjectCmd(o))
	root.AddCommand(newInstallCmd(o), newUninstallCmd(o), newCheckCmd(o))
	for _, c := range more {
		root.AddCommand(c(o))
	}
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Msg != "" {
			fmt.Fprintln(stderr, ee.Msg)
		}
		return ee.Code
	}
	fmt.Fprintln(stderr, "skiff:", err)
	return 1
}

func newVersionCmd(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of skiff",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(o.Stdout, "skiff", Version())
			return nil
		},
	}
}

// Version is the module version, or the VCS revision of a development build.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
		if s.Key == "vcs.modified" && s.Value == "true" {
			v += "+dirty"
		}
	}
	return v
}

// FindBinary locates a Skiff binary: the flag's value when set, else next
// to the running executable (make build puts them all in bin/).
func FindBinary(flagValue, name string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	exe, err := os.Executable()
	if err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("cannot find %s next to %s: build it (make build) or pass --%s-bin", name, exe, name[len("skiff-"):])
}
