package discovery_test

import (
	"context"
	"fmt"

	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
)

// A consumer watches an authority through the interface; here the source
// is the in-memory registry, in a cluster it would be kube.Source.
func Example() {
	var reg registry.Registry
	var src discovery.Source = &reg

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snaps := make(chan discovery.Snapshot, 8)
	done := make(chan error)
	go func() {
		done <- src.Watch(ctx, "web.shop.svc.cluster.local:80", func(s discovery.Snapshot) { snaps <- s })
	}()
	show := func(s discovery.Snapshot) {
		fmt.Printf("%s exists=%v", s.Authority, s.Exists)
		for _, e := range s.Endpoints {
			fmt.Printf(" %s(meshed=%v id=%s)", e.Addr, e.Meshed, e.Identity)
		}
		fmt.Println()
	}

	show(<-snaps) // at once: not known yet
	_ = reg.Set("web.shop.svc.cluster.local:80", []discovery.Endpoint{
		{Addr: "10.0.0.1:8080", Meshed: true, Identity: "spiffe://cluster.local/ns/shop/sa/web"},
	})
	show(<-snaps)
	_ = reg.Set("web.shop.svc.cluster.local:80", nil)
	show(<-snaps)
	cancel()
	fmt.Println("Watch returned", <-done)
	// Output:
	// web.shop.svc.cluster.local:80 exists=false
	// web.shop.svc.cluster.local:80 exists=true 10.0.0.1:8080(meshed=true id=spiffe://cluster.local/ns/shop/sa/web)
	// web.shop.svc.cluster.local:80 exists=true
	// Watch returned <nil>
}
