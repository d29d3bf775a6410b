package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	meshcli "github.com/skiff-mesh/skiff/mesh/cli"

	"github.com/spf13/cobra"

	"github.com/skiff-mesh/skiff/internal/plant"
	"github.com/skiff-mesh/skiff/results"
	"github.com/skiff-mesh/skiff/scenarios/catalog"
	"github.com/skiff-mesh/skiff/scenarios/runner"
	"github.com/skiff-mesh/skiff/scenarios/spec"
	"github.com/skiff-mesh/skiff/simulator/local"
)

func newScenarioCmd(o *meshcli.Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scenario",
		Short: "Run, list, report and compare scenarios: the mesh's claims as runs that can fail",
	}
	cmd.AddCommand(newScenarioRunCmd(o), newScenarioListCmd(o), newScenarioReportCmd(o), newScenarioCompareCmd(o))
	return cmd
}

func newScenarioRunCmd(o *meshcli.Options) *cobra.Command {
	var (
		env           string
		quick         bool
		seed          uint64
		out           string
		proxyBin      string
		demoBin       string
		controllerBin string
		planted       string
	)
	cmd := &cobra.Command{
		Use:   "run NAME|FILE.yaml",
		Short: "Run a scenario from the catalogue (or a YAML file) and judge its assertions",
		Long: `run brings the scenario's topology up on an environment, drives its load,
applies its fault timeline, tears everything down, evaluates its
assertions and writes a results folder (result.json, summary.md,
report.html, timeseries.csv, raw histograms, process logs).

Exit status: 0 when every assertion passed, 99 when one failed (the
message names the assertion, the threshold and the measured value), 98
when none failed but one could not be decided (docs/scenarios.md, "How
assertions decide"), 1 when the run itself could not happen.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := o.Logger()
			if err != nil {
				return err
			}
			sc, err := loadScenario(args[0])
			if err != nil {
				return err
			}
			if err := plantDefect(planted, o.Stdout); err != nil {
				return err
			}
			var bin local.Binaries
			if bin.Proxy, err = meshcli.FindBinary(proxyBin, "skiff-proxy"); err == nil {
				bin.Demo, err = meshcli.FindBinary(demoBin, "skiff-demo")
			}
			if err == nil && sc.Mesh.ControlPlane {
				bin.Controller, err = meshcli.FindBinary(controllerBin, "skiff-controller")
			}
			if err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join("results", "runs", sc.Name+"-"+time.Now().Format("20060102-150405"))
			}
			res, err := runner.Run(cmd.Context(), runner.Options{
				Scenario: sc, Env: env, Quick: quick, Seed: seed, OutDir: out, Bin: bin,
				Revision: gitRevision(), Progress: o.Stdout, TTY: isTerminal(o.Stdout), Logger: log,
			})
			if errors.Is(err, runner.ErrUnavailable) {
				return &meshcli.ExitError{Code: 2, Msg: "skiff: " + err.Error()}
			}
			if err != nil && res == nil {
				return err
			}
			fmt.Fprintln(o.Stdout)
			if werr := res.WriteSummary(o.Stdout); werr != nil {
				return werr
			}
			fmt.Fprintf(o.Stdout, "\nresults: %s (report: %s)\n", out, filepath.Join(out, results.ReportFile))
			if err != nil {
				return err
			}
			switch res.Verdict {
			case results.Pass:
				known := res.KnownFailures()
				fmt.Fprintf(o.Stdout, "PASS %s: %d assertions held\n", sc.Name, len(res.Assertions)-len(known))
				if len(known) > 0 {
					fmt.Fprintf(o.Stdout, "%d known failures, not counted (each has a ceiling that held):\n  %s\n", len(known), strings.Join(known, "\n  "))
				}
				return nil
			case results.Fail:
				return &meshcli.ExitError{Code: meshcli.ExitAssertionFailed, Msg: fmt.Sprintf("FAIL %s:\n%v", sc.Name, res.Failures())}
			case results.Inconclusive:
				return &meshcli.ExitError{Code: results.ExitInconclusive, Msg: fmt.Sprintf("INCONCLUSIVE %s (not a pass: the data cannot tell):\n%v", sc.Name, res.Failures())}
			default:
				return &meshcli.ExitError{Code: meshcli.ExitFailure, Msg: fmt.Sprintf("ERROR %s:\n%v", sc.Name, res.Failures())}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&env, "env", runner.EnvLocal, "environment: local, netns, kind or kube")
	f.BoolVar(&quick, "quick", false, "apply the scenario's quick overrides (CI)")
	f.Uint64Var(&seed, "seed", 0, "seed of every random choice (0: the scenario's, else from the clock)")
	f.StringVar(&out, "out", "", "results folder (default results/runs/NAME-TIMESTAMP)")
	f.StringVar(&proxyBin, "proxy-bin", "", "skiff-proxy binary (default: next to skiff)")
	f.StringVar(&demoBin, "demo-bin", "", "skiff-demo binary (default: next to skiff)")
	f.StringVar(&controllerBin, "controller-bin", "", "skiff-controller binary, for scenarios with a control plane (default: next to skiff)")
	f.StringVar(&planted, "plant", "", "run against a build with this defect planted (test builds only: make plant, then bin-plant/skiff); docs/scenarios.md lists them")
	return cmd
}

// plantDefect turns on a planted defect for the processes the run starts.
// Only a test build knows any; a release build says how to get one.
func plantDefect(defect string, w io.Writer) error {
	if defect == "" {
		return nil
	}
	if !plant.Built {
		return errors.New("--plant needs a test build: run make plant and use bin-plant/skiff (release builds hold no planted defects)")
	}
	var names []string
	for _, d := range plant.Catalogue {
		if string(d.Defect) == defect {
			fmt.Fprintf(w, "PLANTED DEFECT %s: %s. This run uses a build broken on purpose; it should FAIL.\n", d.Defect, d.Breaks)
			return os.Setenv(plant.EnvVar, defect)
		}
		names = append(names, string(d.Defect))
	}
	return fmt.Errorf("--plant %q: no such defect; this build has %s", defect, strings.Join(names, ", "))
}

// loadScenario reads a catalogue scenario, or a YAML file when the
// argument names one.
func loadScenario(arg string) (*spec.Scenario, error) {
	if strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml") || strings.ContainsRune(arg, os.PathSeparator) {
		data, err := os.ReadFile(arg)
		if err != nil {
			return nil, err
		}
		return spec.Parse(arg, data)
	}
	return catalog.Load(arg)
}

func newScenarioListCmd(o *meshcli.Options) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the scenarios in the catalogue, one line each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, name := range catalog.List() {
				sc, err := catalog.Load(name)
				if err != nil {
					return err
				}
				fmt.Fprintf(o.Stdout, "%-18s %s\n", name, sc.Description)
				for _, k := range sc.KnownFailures() {
					fmt.Fprintf(o.Stdout, "%-18s   known failure: %s\n", "", k)
				}
			}
			return nil
		},
	}
}

func newScenarioReportCmd(o *meshcli.Options) *cobra.Command {
	var html bool
	cmd := &cobra.Command{
		Use:   "report DIR",
		Short: "Print a results folder's summary (or rewrite its report.html)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := results.Read(args[0])
			if err != nil {
				return err
			}
			if html {
				f, err := os.Create(filepath.Join(args[0], results.ReportFile))
				if err != nil {
					return err
				}
				defer f.Close()
				return res.WriteReport(f)
			}
			return res.WriteSummary(o.Stdout)
		},
	}
	cmd.Flags().BoolVar(&html, "html", false, "rewrite report.html from result.json")
	return cmd
}

func newScenarioCompareCmd(o *meshcli.Options) *cobra.Command {
	return &cobra.Command{
		Use:   "compare OLD_DIR NEW_DIR",
		Short: "Tell what changed between two runs, with statistics (error counts by Fisher's exact test, latency from both runs' histograms)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := results.Read(args[0])
			if err != nil {
				return err
			}
			b, err := results.Read(args[1])
			if err != nil {
				return err
			}
			return results.Compare(a, b).WriteText(o.Stdout)
		},
	}
}

// gitRevision is the checkout's revision, or "" outside one.
func gitRevision() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if err := exec.Command("git", "diff", "--quiet", "HEAD").Run(); err != nil {
		rev += "+dirty"
	}
	return rev
}

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
