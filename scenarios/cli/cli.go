// Package cli is the harness's part of the skiff command line: scenario
// (run, list, report, compare) and bench. cmd/skiff joins it to the mesh's
// commands (mesh/cli), which link nothing of the harness.
package cli

import meshcli "github.com/skiff-mesh/skiff/mesh/cli"

// Commands are the harness's sub-commands of skiff.
func Commands() []meshcli.Command {
	return []meshcli.Command{newBenchCmd, newScenarioCmd}
}
