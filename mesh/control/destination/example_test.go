package destination_test

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	"github.com/skiff-mesh/skiff/mesh/control/destination"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
)

// Serve the endpoints of a local registry and watch one authority: the
// first message is a snapshot, the next ones deltas.
func Example() {
	reg := &registry.Registry{}
	reg.Set("web.shop:8080", []discovery.Endpoint{{Addr: "127.0.0.2:8080", Meshed: true}})
	srv, err := destination.NewServer(destination.Config{Source: reg})
	if err != nil {
		fmt.Println(err)
		return
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	gs := grpc.NewServer()
	destinationv1.RegisterDestinationServer(gs, srv)
	go gs.Serve(lis)
	defer gs.Stop()
	defer srv.Close() // before GracefulStop in a real server: watches never end on their own

	cc, _ := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	stream, _ := destinationv1.NewDestinationClient(cc).Watch(context.Background(), &destinationv1.WatchRequest{Authority: "web.shop:8080"})
	u, _ := stream.Recv()
	fmt.Println("snapshot:", u.GetSnapshot().GetEndpoints()[0].GetAddress())

	reg.Set("web.shop:8080", []discovery.Endpoint{{Addr: "127.0.0.2:8080", Meshed: true}, {Addr: "127.0.0.3:8080", Meshed: true}})
	u, _ = stream.Recv()
	fmt.Println("add:", u.GetAdd().GetEndpoints()[0].GetAddress())
	// Output:
	// snapshot: 127.0.0.2:8080
	// add: 127.0.0.3:8080
}
