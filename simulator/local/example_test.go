package local_test

import (
	"context"
	"fmt"
	"log"
	"net/http"

	"github.com/skiff-mesh/skiff/simulator/demo"
	"github.com/skiff-mesh/skiff/simulator/local"
)

// Three meshed replicas of an echo service, one of them slow, and a
// request through the client sidecar; then a replica is killed.
func Example() {
	ctx := context.Background()
	bin, err := local.BuildBinaries(ctx, "bin")
	if err != nil {
		log.Fatal(err)
	}
	env, err := local.New(local.Config{Bin: bin, RunDir: "run", Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer env.Close()
	slow, _ := demo.ParseDelays("50ms")
	err = env.Up(ctx, []local.ServiceSpec{
		{Name: "echo", Replicas: 3, Meshed: true, Behaviour: []demo.Behaviour{{Latency: slow}}, Failover: []string{"backup"}},
		{Name: "backup", Replicas: 1, Meshed: true},
	})
	if err != nil {
		log.Fatal(err)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+env.Client().OutboundAddr()+"/", nil)
	req.Host = env.Authority("echo") // "echo.default.svc:8080"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get(demo.ReplicaHeader))

	pod, _ := env.Pod("echo-1")
	pod.Kill() // out of the registry at once
	fmt.Println(len(env.Endpoints("echo")))
	for _, p := range env.Processes() {
		fmt.Println(p.Name, p.Role, p.PID) // sample /proc/<pid>/status here
	}
}
