package destinationv1_test

import (
	"fmt"
	"maps"
	"slices"

	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
)

// A client keeps the endpoint set of its authority by applying each update
// of a Watch stream in order.
func Example() {
	set := map[string]*destinationv1.Endpoint{}
	apply := func(u *destinationv1.Update) {
		switch k := u.GetKind().(type) {
		case *destinationv1.Update_Snapshot:
			clear(set) // a snapshot replaces everything, even after a reconnect
			for _, e := range k.Snapshot.GetEndpoints() {
				set[e.GetAddress()] = e
			}
		case *destinationv1.Update_Add:
			for _, e := range k.Add.GetEndpoints() {
				set[e.GetAddress()] = e // same address: replaced
			}
		case *destinationv1.Update_Remove:
			for _, a := range k.Remove.GetAddresses() {
				delete(set, a)
			}
		case *destinationv1.Update_NoEndpoints:
			clear(set)
		}
	}

	web := func(addr string) *destinationv1.Endpoint {
		return &destinationv1.Endpoint{
			Address:      addr,
			Weight:       1,
			Identity:     "spiffe://cluster.local/ns/shop/sa/web",
			ProtocolHint: destinationv1.ProtocolHint_PROTOCOL_HINT_H2C,
			Meshed:       true,
		}
	}
	for _, u := range []*destinationv1.Update{
		{Kind: &destinationv1.Update_Snapshot{Snapshot: &destinationv1.Snapshot{
			Exists: true, Endpoints: []*destinationv1.Endpoint{web("10.0.0.1:8080")},
		}}},
		{Kind: &destinationv1.Update_Add{Add: &destinationv1.Add{
			Endpoints: []*destinationv1.Endpoint{web("10.0.0.2:8080")},
		}}},
		{Kind: &destinationv1.Update_Remove{Remove: &destinationv1.Remove{
			Addresses: []string{"10.0.0.1:8080"},
		}}},
	} {
		apply(u)
		fmt.Println(slices.Sorted(maps.Keys(set)))
	}
	// Output:
	// [10.0.0.1:8080]
	// [10.0.0.1:8080 10.0.0.2:8080]
	// [10.0.0.2:8080]
}
