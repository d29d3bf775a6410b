// Command skiff is Skiff's command line: the mesh's commands (mesh/cli)
// joined with the harness's (scenarios/cli).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	meshcli "github.com/skiff-mesh/skiff/mesh/cli"
	harnesscli "github.com/skiff-mesh/skiff/scenarios/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := meshcli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr, harnesscli.Commands()...)
	stop()
	os.Exit(code)
}
