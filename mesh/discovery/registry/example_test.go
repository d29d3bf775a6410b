package registry_test

import (
	"context"
	"fmt"

	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// The simulator publishes the proxy's endpoint type through a ProxySink
// (simulator/local.Config{Registry: reg.ProxySink()}); the control plane
// watches the same registry as a discovery.Source.
func ExampleRegistry_ProxySink() {
	reg := &registry.Registry{}
	sink := reg.ProxySink()
	_ = sink.Set("echo.default.svc:8080", []endpoint.Endpoint{
		{Addr: "127.10.1.2:4143", Meshed: true, Labels: map[string]string{"pod": "echo-1"}},
		{Addr: "127.10.1.1:4143", Meshed: true, Labels: map[string]string{"pod": "echo-0"}},
	})

	ctx, cancel := context.WithCancel(context.Background())
	_ = reg.Watch(ctx, "echo.default.svc:8080", func(s discovery.Snapshot) {
		for _, e := range s.Endpoints {
			fmt.Println(e.Addr, e.Pod, e.Meshed)
		}
		cancel() // one snapshot is enough here
	})
	// Output:
	// 127.10.1.1:4143 echo-0 true
	// 127.10.1.2:4143 echo-1 true
}
