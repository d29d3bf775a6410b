package demo_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/skiff-mesh/skiff/simulator/demo"
)

// Run a replica in-process, make it fail every request through the admin
// API, and read the result.
func Example() {
	s, err := demo.New(demo.Config{Name: "echo-1", Seed: 1})
	if err != nil {
		panic(err)
	}
	if err := s.Start(); err != nil {
		panic(err)
	}
	defer s.Close()
	base := "http://" + s.Addr()

	resp, err := http.Get(base + "/")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))
	fmt.Println(resp.Header.Get(demo.ReplicaHeader))

	req, _ := http.NewRequest(http.MethodPut, base+"/_demo/behaviour",
		strings.NewReader(`{"error_rate":1,"error_status":503}`))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	resp, err = http.Get(base + "/echo")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, s.Stats().HTTP[503])
	// Output:
	// skiff-demo echo-1 HTTP/1.1
	// echo-1
	// 503 1
}

// Call the gRPC Echo service with the exported client helper; the fault
// parameters travel as metadata.
func ExampleEcho() {
	s, err := demo.New(demo.Config{})
	if err != nil {
		panic(err)
	}
	if err := s.Start(); err != nil {
		panic(err)
	}
	defer s.Close()
	cc, err := grpc.NewClient("passthrough:///"+s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer cc.Close()

	out, err := demo.Echo(context.Background(), cc, []byte("hi"))
	fmt.Println(string(out), err)

	ctx := metadata.AppendToOutgoingContext(context.Background(), demo.ParamStatus, "429")
	_, err = demo.Echo(ctx, cc, []byte("hi"))
	fmt.Println(status.Code(err))
	// Output:
	// hi <nil>
	// ResourceExhausted
}
