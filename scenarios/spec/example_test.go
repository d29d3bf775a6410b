package spec_test

import (
	"fmt"

	"github.com/skiff-mesh/skiff/scenarios/spec"
)

func ExampleParse() {
	const file = `
name: kill-one
description: One of two replicas is killed at 5 s.
topology:
  services:
    - {name: echo, replicas: 2}
load:
  rate: {rps: 200}
  duration: 10s
timeline:
  - {at: 5s, fault: kill, target: echo-1}
phases:
  after_kill: {from: 6s, to: end}
assertions:
  - {phase: after_kill, expr: "share(echo-1) == 0"}
quick:
  timeline_scale: 0.5
`
	s, err := spec.Parse("kill-one.yaml", []byte(file))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Load.Target, s.Load.Protocol, s.Load.Connections, s.Mesh.Balancer)
	from, to, _ := s.Phase("after_kill")
	fmt.Println("after_kill:", from, "to", to)

	s.ApplyQuick()
	from, to, _ = s.Phase("after_kill")
	fmt.Println("quick:", s.Load.Duration, s.Timeline[0].At, "after_kill:", from, "to", to)
	// Output:
	// echo http1 10 ewma
	// after_kill: 6s to 10s
	// quick: 5s 2.5s after_kill: 3s to 5s
}

func ExampleParse_errors() {
	const file = `name: broken
topology:
  services:
    - name: echo
      replcias: 3
load:
  rate: {rps: 0}
timeline:
  - {at: 5s, fault: kill, target: echo-1}
`
	_, err := spec.Parse("broken.yaml", []byte(file))
	fmt.Println(err)
	// Output:
	// broken.yaml:5:7: unknown field "replcias" in topology.services[0]; did you mean "replicas"?
	// broken.yaml:7:15: load.rate.rps: must be between 1 and 1000000 requests per second, got 0
}
