package balance_test

import (
	"errors"
	"fmt"

	"github.com/skiff-mesh/skiff/mesh/proxy/balance"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// A request with up to two retries, each on an endpoint not tried yet.
func Example() {
	b := balance.New(balance.Options{}) // Linkerd's defaults
	b.Update([]endpoint.Endpoint{{Addr: "10.0.0.1:8080"}, {Addr: "10.0.0.2:8080"}})

	send := func(addr string) error {
		if addr == "10.0.0.1:8080" {
			return errors.New("connection refused")
		}
		return nil
	}

	var triedBuf [3]*balance.Node // on the stack: no allocation per request
	tried := triedBuf[:0]
	for range 3 {
		n, ok := b.Pick(tried)
		if !ok {
			fmt.Println("no endpoint left")
			return
		}
		start := n.Start()
		err := send(n.Endpoint().Addr)
		n.Finish(start, err != nil) // always, whatever the outcome
		if err == nil {
			fmt.Println("served")
			return
		}
		tried = append(tried, n)
	}
	// Output: served
}
