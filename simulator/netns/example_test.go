package netns_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/skiff-mesh/skiff/simulator/netns"
)

// Two pods on a bridge, a process in one, a connection to it from the
// harness through the other, then 20 ms of latency on a link and a
// partition. Not run as a test: it needs root (the package's own tests
// run it all when they can).
func Example() {
	if err := netns.Available(); err != nil {
		fmt.Fprintln(os.Stderr, err) // one line: what is missing
		os.Exit(2)
	}
	ctx := context.Background()
	n, err := netns.New(ctx, netns.Config{RunID: "demo"})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	client, err := n.AddPod(ctx, "client")
	if err != nil {
		log.Fatal(err)
	}
	server, err := n.AddPod(ctx, "server-0")
	if err != nil {
		log.Fatal(err)
	}

	// A program inside the server pod; cmd.Process.Pid is the program's.
	srv := server.Command(ctx, "skiff-demo", "--listen", ":8080")
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Wait()
	defer srv.Process.Kill()

	// The harness itself, from inside the client pod (fits
	// http.Transport.DialContext).
	conn, err := client.DialContext(ctx, "tcp", server.Addr().String()+":8080")
	if err == nil {
		conn.Close()
	}

	// 20 ms each way on the server's link, then a partition.
	slow, err := n.Impair(ctx, server, netns.Impairment{Latency: 20 * time.Millisecond, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer slow.Clear(ctx)
	heal, err := n.Partition(ctx, client, server)
	if err != nil {
		log.Fatal(err)
	}
	defer heal(ctx)
}
