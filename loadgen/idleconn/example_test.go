package idleconn_test

import (
	"context"
	"log"
	"os"

	"github.com/skiff-mesh/skiff/loadgen/idleconn"
)

// Measure both kinds at 1,000 and 10,000 idle connections against a
// static build of the proxy, and print the table (skiff bench idle does
// this).
func Example() {
	rep, err := idleconn.Run(context.Background(), idleconn.Config{
		ProxyBin: "bin/skiff-proxy", // CGO_ENABLED=0 go build -trimpath
		Conns:    []int{1000, 10000},
		Kinds:    idleconn.Kinds,
	})
	if err != nil {
		log.Fatal(err)
	}
	rep.WriteText(os.Stdout)
}
