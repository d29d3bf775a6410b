package proxyinit_test

import (
	"fmt"
	"os"

	"github.com/skiff-mesh/skiff/mesh/proxyinit"
)

// The default pod's rules, as `skiff-proxy init --dry-run` prints them
// for a table that holds no Skiff rule.
func ExampleRender() {
	rules, err := proxyinit.Render(proxyinit.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range rules {
		os.Stdout.Write(r.Restore())
	}
	// Output:
	// # skiff proxy-init: IPv4 nat rules (docs/proxy-init.md)
	// *nat
	// :SKIFF_INBOUND - [0:0]
	// :SKIFF_INBOUND_REDIRECT - [0:0]
	// :SKIFF_OUTPUT - [0:0]
	// :SKIFF_OUTBOUND_REDIRECT - [0:0]
	// -A PREROUTING -p tcp -m comment --comment "skiff: inbound TCP goes through SKIFF_INBOUND" -j SKIFF_INBOUND
	// -A SKIFF_INBOUND -p tcp -m tcp --dport 4190 -m comment --comment "skiff: inbound to port 4190 is not redirected (skip-inbound-ports)" -j RETURN
	// -A SKIFF_INBOUND -p tcp -m tcp --dport 4191 -m comment --comment "skiff: inbound to port 4191 is not redirected (skip-inbound-ports)" -j RETURN
	// -A SKIFF_INBOUND -m comment --comment "skiff: all other inbound TCP goes to the proxy" -j SKIFF_INBOUND_REDIRECT
	// -A SKIFF_INBOUND_REDIRECT -p tcp -m comment --comment "skiff: redirect to the inbound proxy on port 4143" -j REDIRECT --to-ports 4143
	// -A OUTPUT -p tcp -m comment --comment "skiff: outbound TCP goes through SKIFF_OUTPUT" -j SKIFF_OUTPUT
	// -A SKIFF_OUTPUT -m owner --uid-owner 2102 -m comment --comment "skiff: traffic of the proxy (uid 2102) is not redirected" -j RETURN
	// -A SKIFF_OUTPUT -o lo -m comment --comment "skiff: loopback (the pod calling itself, by its own IP too) is not redirected" -j RETURN
	// -A SKIFF_OUTPUT -m comment --comment "skiff: all other outbound TCP goes to the proxy" -j SKIFF_OUTBOUND_REDIRECT
	// -A SKIFF_OUTBOUND_REDIRECT -p tcp -m comment --comment "skiff: redirect to the outbound proxy on port 4140" -j REDIRECT --to-ports 4140
	// COMMIT
}
