package chaos_test

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/skiff-mesh/skiff/faultinject/chaos"
)

// A Link between a client and an echo server: 50 ms of latency on the
// answers of every connection, then a reset on the requests of about a
// third of the connections.
func Example() {
	echo, _ := net.Listen("tcp", "127.0.0.1:0")
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()

	link, err := chaos.New(chaos.Config{Upstream: echo.Addr().String(), Seed: 42})
	if err != nil {
		panic(err)
	}
	defer link.Close()
	if err := link.Start(); err != nil {
		panic(err)
	}
	link.Add(chaos.Toxic{Name: "slow", Kind: chaos.Latency{Latency: 50 * time.Millisecond}})

	c, _ := net.Dial("tcp", link.Addr())
	start := time.Now()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	io.ReadFull(c, buf)
	fmt.Println(string(buf), time.Since(start) >= 50*time.Millisecond)
	c.Close()

	link.Remove("slow")
	link.Add(chaos.Toxic{Name: "rst", Stream: chaos.Upstream, Toxicity: new(0.3), Kind: chaos.ResetPeer{}})
	for _, t := range link.Toxics() {
		fmt.Println(t)
	}
	// Output:
	// ping true
	// rst(reset_peer{Timeout:0s} upstream toxicity=0.3)
}
