package spec

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestParseErrors pins the exact message, with file:line:col, of each
// problem Parse reports. Each input has one mistake unless it says
// otherwise.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"unknown field with suggestion", `
topology:
  services:
    - name: echo
      replcias: 3
`, `t.yaml:5:7: unknown field "replcias" in topology.services[0]; did you mean "replicas"?`},
		{"unknown field without suggestion", `
topology: {services: [{name: echo}]}
colour: blue
`, `t.yaml:3:1: unknown field "colour" in the scenario; known fields: name, description, seed, topology, mesh, load, timeline, phases, assertions, quick, control_plane_scale, planted, resources, environments`},
		{"unknown field in a phase", `
topology: {services: [{name: echo}]}
phases: {p: {form: 1s}}
`, `t.yaml:3:14: unknown field "form" in phases.p; did you mean "from"?`},
		{"duplicate key", `
topology: {services: [{name: echo}]}
load:
  duration: 5s
  duration: 6s
`, `t.yaml:5:3: load.duration: duplicate key "duration" (first at line 4)`},
		{"integer type", `
topology: {services: [{name: echo, replicas: three}]}
`, `t.yaml:2:46: topology.services[0].replicas: want an integer, got "three"`},
		{"float for an integer", `
topology: {services: [{name: echo, replicas: 2.5}]}
`, `t.yaml:2:46: topology.services[0].replicas: want an integer, got "2.5"`},
		{"bool type", `
topology: {services: [{name: echo, meshed: "yes"}]}
`, `t.yaml:2:44: topology.services[0].meshed: want true or false, got "yes"`},
		{"mapping for a list", `
topology: {services: {name: echo}}
`, `t.yaml:2:22: topology.services: want a list, got a mapping`},
		{"list for a string", `
topology: {services: [{name: [echo]}]}
`, `t.yaml:2:30: topology.services[0].name: want a string, got a list`},
		{"negative seed", `
seed: -1
topology: {services: [{name: echo}]}
`, `t.yaml:2:7: seed: want a non-negative integer, got "-1"`},
		{"duration without unit", `
topology: {services: [{name: echo}]}
load: {duration: 40}
`, `t.yaml:3:18: load.duration: "40" has no unit: write a duration like 40s or 40ms`},
		{"duration garbage", `
topology: {services: [{name: echo}]}
load: {warmup: soon}
`, `t.yaml:3:16: load.warmup: "soon" is not a duration: write one like 10s, 1.5s or 200ms`},
		{"bad name", `
name: Fail_Over
topology: {services: [{name: echo}]}
`, `t.yaml:2:7: name: "Fail_Over" is not a DNS label: lower-case letters, digits and '-', at most 63 characters, starting and ending with a letter or digit`},
		{"multi-line description", `
description: |
  two
  lines
topology: {services: [{name: echo}]}
`, `t.yaml:2:14: description: must be one line; put details in comments`},
		{"no services", `
topology: {services: []}
`, `t.yaml:2:22: topology.services: at least one service is required`},
		{"no topology", `
load: {rate: {rps: 10}}
`, `t.yaml:2:1: topology.services: at least one service is required`},
		{"replicas zero", `
topology: {services: [{name: echo, replicas: 0}]}
`, `t.yaml:2:46: topology.services[0].replicas: must be at least 1, got 0`},
		{"replicas too many", `
topology: {services: [{name: echo, replicas: 65}]}
`, `t.yaml:2:46: topology.services[0].replicas: must be at most 64, got 65`},
		{"port", `
topology: {services: [{name: echo, port: 70000}]}
`, `t.yaml:2:42: topology.services[0].port: must be a port between 1 and 65535, got 70000`},
		{"unknown protocol", `
topology: {services: [{name: echo, protocol: http2}]}
`, `t.yaml:2:46: topology.services[0].protocol: unknown protocol "http2"; want "http1", "h2c", "grpc" or "tcp"; did you mean "http1"?`},
		{"duplicate service", `
topology:
  services:
    - name: echo
    - name: echo
load: {target: echo}
`, `t.yaml:5:13: topology.services[1].name: duplicate service name "echo" (first at line 4)`},
		{"service named like a pod", `
topology:
  services:
    - {name: echo, replicas: 2}
    - {name: echo-1}
load: {target: echo}
`, `t.yaml:5:14: topology.services[1].name: "echo-1" is also the name of replica 1 of service "echo"; rename one so that fault targets are unambiguous`},
		{"failover unknown", `
topology:
  services:
    - {name: echo, failover: [echo-bakup]}
    - {name: echo-backup}
load: {target: echo}
`, `t.yaml:4:31: topology.services[0].failover[0]: unknown service "echo-bakup"; did you mean "echo-backup"?`},
		{"failover protocol", `
topology:
  services:
    - {name: echo, failover: [other]}
    - {name: other, protocol: grpc}
load: {target: echo}
`, `t.yaml:4:31: topology.services[0].failover[0]: service "other" speaks grpc but "echo" speaks http1; failover needs the same protocol`},
		{"behaviour rates", `
topology:
  services:
    - name: echo
      behaviour: {error_rate: 1.5, reset_rate: -0.1, error_status: 99}
`, `t.yaml:5:31: topology.services[0].behaviour.error_rate: 1.5 is outside [0, 1]; it is a fraction, e.g. 0.3 for 30 %
t.yaml:5:48: topology.services[0].behaviour.reset_rate: -0.1 is outside [0, 1]; it is a fraction, e.g. 0.3 for 30 %
t.yaml:5:68: topology.services[0].behaviour.error_status: 99 is not an HTTP status between 200 and 599`},
		{"behaviour max_concurrent", `
topology:
  services:
    - name: echo
      replicas: 2
      replica_behaviour: {1: {max_concurrent: -1}}
`, `t.yaml:6:47: topology.services[0].replica_behaviour[1].max_concurrent: -1 is outside [0, 1000000]; 0 means no limit`},
		{"latency distribution", `
topology:
  services:
    - name: echo
      behaviour: {latency: "1ms:60,2ms:50"}
`, `t.yaml:5:28: topology.services[0].behaviour.latency: bad latency="1ms:60,2ms:50": percentages add up to 110, more than 100`},
		{"replica index", `
topology:
  services:
    - name: echo
      replicas: 3
      replica_behaviour: {3: {latency: 10ms}}
`, `t.yaml:6:27: topology.services[0].replica_behaviour[3]: replica 3 does not exist: service "echo" has 3 replicas (echo-0..echo-2)`},
		{"replica override checked", `
topology:
  services:
    - name: echo
      replicas: 3
      replica_behaviour: {1: {error_status: 0}}
`, `t.yaml:6:45: topology.services[0].replica_behaviour[1].error_status: 0 is not an HTTP status between 200 and 599`},
		{"replica key", `
topology:
  services:
    - name: echo
      replica_behaviour: {first: {latency: 10ms}}
`, `t.yaml:5:27: topology.services[0].replica_behaviour: key "first" is not an integer index`},
		{"balancer", `
topology: {services: [{name: echo}]}
mesh: {balancer: roundrobin}
`, `t.yaml:3:18: mesh.balancer: unknown balancer "roundrobin"; want "ewma" or "round_robin"; did you mean "round_robin"?`},
		{"target required", `
topology: {services: [{name: a}, {name: b}]}
`, `t.yaml:2:1: load.target: required when the topology has more than one service; one of a, b`},
		{"target unknown", `
topology: {services: [{name: echo}]}
load: {target: ehco}
`, `t.yaml:3:16: load.target: unknown service "ehco"; did you mean "echo"?`},
		{"tls to tcp", `
topology: {services: [{name: raw, protocol: tcp}]}
load: {protocol: tls}
`, `t.yaml:3:18: load.protocol: tls does not match service "raw", which speaks tcp`},
		{"detect timeout", `
topology: {services: [{name: echo}]}
mesh: {detect_timeout: 2h}
`, `t.yaml:3:24: mesh.detect_timeout: 2h0m0s is outside 1ms..1h0m0s`},
		{"protocol mismatch", `
topology: {services: [{name: echo}]}
load: {protocol: grpc}
`, `t.yaml:3:18: load.protocol: grpc does not match service "echo", which speaks http1`},
		{"path and method", `
topology: {services: [{name: echo}]}
load: {path: echo, method: get}
`, `t.yaml:3:14: load.path: "echo" must start with /
t.yaml:3:28: load.method: "get" is not an HTTP method like GET or POST`},
		{"grpc path", `
topology: {services: [{name: g, protocol: grpc}]}
load: {path: /x, method: Echo}
`, `t.yaml:3:14: load.path: only for HTTP; a gRPC load calls load.method
t.yaml:3:26: load.method: "Echo" is not a full gRPC method like /skiff.demo.v1.Echo/Echo`},
		{"payload bounds", `
topology: {services: [{name: echo}]}
load: {payload_bytes: 16777217}
`, `t.yaml:3:23: load.payload_bytes: must be between 0 and 16777216 (16 MiB), got 16777217`},
		{"connections and trials zero", `
topology: {services: [{name: echo}]}
load: {connections: 0, trials: 0}
`, `t.yaml:3:21: load.connections: must be at least 1, got 0
t.yaml:3:32: load.trials: must be at least 1, got 0`},
		{"requests per connection", `
topology: {services: [{name: echo}]}
load: {requests_per_connection: -1}
`, `t.yaml:3:33: load.requests_per_connection: must be between 1 and 1000000 requests, got -1 (0 keeps the connections open)`},
		{"requests per connection over gRPC", `
topology: {services: [{name: g, protocol: grpc}]}
load: {requests_per_connection: 20}
`, `t.yaml:3:33: load.requests_per_connection: only for an http1 load: h2c and gRPC multiplex their requests over a few long-lived connections`},
		{"duration zero", `
topology: {services: [{name: echo}]}
load: {duration: 0s}
`, `t.yaml:3:18: load.duration: 0s is outside (0s, 24h0m0s]`},
		{"rate zero", `
topology: {services: [{name: echo}]}
load: {rate: {rps: 0}}
`, `t.yaml:3:20: load.rate.rps: must be between 1 and 1000000 requests per second, got 0`},
		{"rate negative", `
topology: {services: [{name: echo}]}
load: {rate: {shape: constant, rps: -5}}
`, `t.yaml:3:37: load.rate.rps: must be between 1 and 1000000 requests per second, got -5`},
		{"rate shape", `
topology: {services: [{name: echo}]}
load: {rate: {shape: linear, rps: 5}}
`, `t.yaml:3:22: load.rate.shape: unknown shape "linear"; want "constant", "ramp" or "steps"`},
		{"ramp from zero and stray rps", `
topology: {services: [{name: echo}]}
load: {rate: {shape: ramp, from: 0, to: 100, rps: 5}}
`, `t.yaml:3:34: load.rate.from: must be between 1 and 1000000 requests per second, got 0
t.yaml:3:51: load.rate.rps: only for shape constant; this rate's shape is ramp`},
		{"steps too short", `
topology: {services: [{name: echo}]}
load:
  duration: 20s
  warmup: 5s
  rate: {steps: [{rps: 100, for: 10s}, {rps: 200, for: 10s}]}
`, `t.yaml:6:17: load.rate.steps: the steps last 20s but a trial lasts 25s (warmup 5s + duration 20s); the load would stop early`},
		{"steps all zero", `
topology: {services: [{name: echo}]}
load: {rate: {steps: [{rps: 0, for: 10s}, {rps: 0, for: 0s}]}}
`, `t.yaml:3:22: load.rate.steps: every step has rps 0; nothing would be sent
t.yaml:3:57: load.rate.steps[1].for: 0s is outside (0s, 24h0m0s]`},
		{"fault unknown", `
topology: {services: [{name: echo}]}
timeline: [{at: 1s, fault: kil, target: echo}]
`, `t.yaml:3:28: timeline[0].fault: unknown fault type "kil"; want "kill", "restart", "pause", "resume", "behaviour", "reset_behaviour", "chaos", "clear_chaos", "drain", "undrain", "apply", "rotate_issuer", "add_trust_anchor", "retire_trust_anchors", "partition", "link_down", "latency", "loss" or "heal"; did you mean "kill"?`},
		{"fault target missing", `
topology: {services: [{name: echo}]}
timeline: [{at: 1s, fault: kill}]
`, `t.yaml:3:12: timeline[0].target: required: a pod "<service>-<index>" or a service`},
		{"fault target pod index", `
topology: {services: [{name: echo, replicas: 3}]}
timeline: [{at: 1s, fault: kill, target: echo-3}]
`, `t.yaml:3:42: timeline[0].target: pod "echo-3" does not exist: service "echo" has 3 replicas (echo-0..echo-2)`},
		{"fault target unknown", `
topology: {services: [{name: echo, replicas: 3}]}
timeline: [{at: 1s, fault: kill, target: ecko-2}]
`, `t.yaml:3:42: timeline[0].target: unknown target "ecko-2": want a pod "<service>-<index>" or a service; did you mean "echo-2"?`},
		{"fault after the end", `
topology: {services: [{name: echo}]}
load: {duration: 30s}
timeline: [{at: 30s, fault: kill, target: echo}]
`, `t.yaml:4:17: timeline[0].at: 30s is not before the end of the run (load.duration 30s)`},
		{"fault negative", `
topology: {services: [{name: echo}]}
timeline: [{at: -1s, fault: kill, target: echo}]
`, `t.yaml:3:17: timeline[0].at: -1s is negative; times count from the end of the warm-up`},
		{"fault for too long", `
topology: {services: [{name: echo}]}
load: {duration: 30s}
timeline: [{at: 20s, fault: pause, target: echo, for: 15s}]
`, `t.yaml:4:55: timeline[0].for: the fault would be undone at 35s, after the end of the run (load.duration 30s)`},
		{"fault for zero", `
topology: {services: [{name: echo}]}
timeline: [{at: 2s, fault: pause, target: echo, for: 0s}]
`, `t.yaml:3:54: timeline[0].for: must be positive, got 0s; leave it out to keep the fault until an event undoes it`},
		{"params not a mapping", `
topology: {services: [{name: echo}]}
timeline: [{at: 2s, fault: behaviour, target: echo, params: 5}]
`, `t.yaml:3:61: timeline[0].params: want a mapping, got "5"`},
		{"phase to before from", `
topology: {services: [{name: echo}]}
load: {duration: 30s}
phases: {p: {from: 20s, to: 10s}}
`, `t.yaml:4:29: phases.p.to: 10s is not after from (20s)`},
		{"phase past the end", `
topology: {services: [{name: echo}]}
load: {duration: 30s}
phases: {p: {from: 20s, to: 31s}}
`, `t.yaml:4:29: phases.p.to: 31s is after the end of the run (load.duration 30s); write end to mean the end`},
		{"phase from end", `
topology: {services: [{name: echo}]}
phases: {p: {from: end}}
`, `t.yaml:3:20: phases.p.from: end would start the phase when the run ends; give an offset like 10s`},
		{"phase to zero", `
topology: {services: [{name: echo}]}
phases: {p: {to: 0s}}
`, `t.yaml:3:18: phases.p.to: 0s is not after from; leave to out or write end to mean the end of the run`},
		{"phase bound garbage", `
topology: {services: [{name: echo}]}
phases: {p: {to: later}}
`, `t.yaml:3:18: phases.p.to: "later" is not a duration: write one like 10s, 1.5s or 200ms, or end`},
		{"phase reserved and badly named", `
topology: {services: [{name: echo}]}
phases: {whole: {from: 1s}, During: {from: 1s}}
`, `t.yaml:3:10: phases.whole: "whole" is implicit (the whole measured run) and cannot be redefined; pick another name
t.yaml:3:29: phases.During: phase name "During": use lower-case letters, digits and underscores, starting with a letter`},
		{"phases not a mapping", `
topology: {services: [{name: echo}]}
phases: [{from: 1s}]
`, `t.yaml:3:9: phases: want a mapping from phase name to {from, to}, got a list`},
		{"assertion phase", `
topology: {services: [{name: echo}]}
phases: {during_fault: {from: 1s}}
assertions: [{phase: durign_fault, expr: "p99_ms < 5"}]
`, `t.yaml:4:22: assertions[0].phase: unknown phase "durign_fault"; did you mean "during_fault"?`},
		{"assertion phase list", `
topology: {services: [{name: echo}]}
assertions: [{phase: later, expr: "p99_ms < 5"}]
`, `t.yaml:3:22: assertions[0].phase: unknown phase "later"; phases: whole, warmup`},
		{"assertion empty", `
topology: {services: [{name: echo}]}
assertions: [{expr: "  "}, {phase: whole}]
`, `t.yaml:3:21: assertions[0].expr: required: a condition like "success_rate >= 0.999"
t.yaml:3:28: assertions[1].expr: required: a condition like "success_rate >= 0.999"`},
		{"added latency without direct", `
topology: {services: [{name: echo}]}
assertions: [{expr: "p99_added_ms <= 1"}]
`, `t.yaml:3:21: assertions[0].expr: p99_added_ms needs load.compare_direct: true (it is the meshed minus the direct latency)`},
		{"share of a missing pod", `
topology: {services: [{name: echo, replicas: 2}]}
assertions: [{expr: "share(echo-2) >= 0.2"}]
`, `t.yaml:3:21: assertions[0].expr: share(echo-2): pod "echo-2" does not exist: service "echo" has 2 replicas (echo-0..echo-1)`},
		{"quick fields", `
topology: {services: [{name: echo}]}
quick: {duration: -1s, trials: 0, timeline_scale: 1.5, warmup: -2s}
`, `t.yaml:3:19: quick.duration: -1s is outside (0s, 24h0m0s]; leave it out to scale load.duration by timeline_scale
t.yaml:3:32: quick.trials: must be between 1 and 100, got 0
t.yaml:3:51: quick.timeline_scale: must be in (0, 1], got 1.5
t.yaml:3:64: quick.warmup: -2s is outside [0s, 24h0m0s]`},
		{"quick rate", `
topology: {services: [{name: echo}]}
quick: {rate: {rps: 0}}
`, `t.yaml:3:21: quick.rate.rps: must be between 1 and 1000000 requests per second, got 0`},
		{"quick form checked", `
topology: {services: [{name: echo}]}
load: {duration: 40s}
timeline: [{at: 30s, fault: kill, target: echo}]
quick: {duration: 20s}
`, `t.yaml:4:17: with --quick, timeline[0].at: 30s is not before the end of the run (load.duration 20s)`},
		{"several problems in file order", `
topology:
  services:
    - {name: echo, replicas: 0, protocols: http1}
load: {rate: {rps: 0}, duration: 1m}
timeline: [{at: 2m, fault: kill, target: echo-0}]
`, `t.yaml:4:30: topology.services[0].replicas: must be at least 1, got 0
t.yaml:4:33: unknown field "protocols" in topology.services[0]; did you mean "protocol"?
t.yaml:5:20: load.rate.rps: must be between 1 and 1000000 requests per second, got 0
t.yaml:6:17: timeline[0].at: 2m0s is not before the end of the run (load.duration 1m0s)`},
		{"decode error not repeated", `
topology: {services: [{name: echo, replicas: x}]}
load: {duration: soon}
timeline: [{at: 50s, fault: kill, target: echo-5}]
`, `t.yaml:2:46: topology.services[0].replicas: want an integer, got "x"
t.yaml:3:18: load.duration: "soon" is not a duration: write one like 10s, 1.5s or 200ms`},
		{"identity fault on a pod", `
topology: {services: [{name: echo}]}
mesh: {control_plane: true}
timeline: [{at: 1s, fault: rotate_issuer, target: echo-0}]
`, `t.yaml:4:51: timeline[0].target: fault "rotate_issuer" acts on the certificate authority: its target is "controller", not "echo-0"`},
		{"identity fault undone", `
topology: {services: [{name: echo}]}
mesh: {control_plane: true}
timeline: [{at: 1s, fault: add_trust_anchor, target: controller, for: 2s}]
`, `t.yaml:4:71: timeline[0].for: fault "add_trust_anchor" cannot be undone: a rotation only goes forward; leave for out`},
		{"leaf lifetime", `
topology: {services: [{name: echo}]}
mesh: {control_plane: true, leaf_lifetime: 1s}
`, `t.yaml:3:44: mesh.leaf_lifetime: 1s is outside 3s..8760h0m0s`},
		{"leaf lifetime without a control plane", `
topology: {services: [{name: echo}]}
mesh: {leaf_lifetime: 1h}
`, `t.yaml:3:23: mesh.leaf_lifetime: needs mesh.control_plane: true (certificates come from its Identity API)`},
		{"syntax error", `
topology:
  services: [
`, `t.yaml:3: invalid YAML: did not find expected node content`},
		{"two documents", `
topology: {services: [{name: echo}]}
---
name: other
`, `t.yaml:3: a second YAML document (after ---); a scenario file holds exactly one`},
		{"empty", "\n# nothing\n", `t.yaml: empty file: a scenario needs at least a topology and a load`},
		{"scalar document", "hello\n", `t.yaml:1:1: want a mapping, got "hello"`},
		{"non-scalar key", `
topology: {services: [{name: echo}]}
? [a]
: b
`, `t.yaml:3:3: a key of the scenario is a list; keys are plain names`},
		{"self-referencing anchor", `
topology: &t {services: [{name: echo}], x: *t}
`, `t.yaml:2:41: unknown field "x" in topology; known fields: services`},
		{"self-merging anchor", `
topology:
  services:
    - &s {name: echo, <<: *s}
`, `t.yaml:4:27: topology.services[0]: more than 100000 YAML nodes, or nesting deeper than 64, once aliases and merge keys are expanded; a scenario is far smaller`},
		{"self-referencing params", `
topology: {services: [{name: echo}]}
timeline: [{at: 1s, fault: chaos, target: echo, params: &p {loop: *p}}]
`, `t.yaml:3:57: timeline[0].params.loop: anchor 'p' value contains itself`},
		{"alias bomb", aliasBomb(), `t.yaml:5:57: topology.services[5]: more than 100000 YAML nodes, or nesting deeper than 64, once aliases and merge keys are expanded; a scenario is far smaller`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.TrimPrefix(tc.in, "\n")
			if strings.HasPrefix(tc.in, "\n") {
				in = "# " + tc.name + "\n" + in // keep line numbers as written above
			}
			_, err := Parse("t.yaml", []byte(in))
			if err == nil {
				t.Fatalf("no error, want:\n%s", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != strings.Count(tc.want, "\n")+1 {
				t.Errorf("error is not an Errors with one entry per line: %#v", err)
			}
		})
	}
}

// aliasBomb is the "billion laughs" attack on a decoder that expands
// aliases: each level merges the previous one ten times, 10^7 mappings in
// all.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("# alias bomb\ntopology:\n  services:\n    - &l0 {name: echo}\n")
	for i := 1; i <= 7; i++ {
		fmt.Fprintf(&b, "    - &l%d {<<: [", i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]}\n")
	}
	return b.String()
}

func TestMergeKeys(t *testing.T) {
	const in = `
base: &base
  replicas: 3
  behaviour: {latency: 2ms}
topology:
  services:
    - <<: *base
      name: echo
      replicas: 2
`
	// "base" is not a field; move the anchor into a field that allows it.
	_, err := Parse("m.yaml", []byte(in))
	if err == nil || !strings.Contains(err.Error(), `unknown field "base"`) {
		t.Fatalf("want unknown field base, got %v", err)
	}
	const ok = `
topology:
  services:
    - &base {name: echo, replicas: 3, behaviour: {latency: 2ms}}
    - <<: *base
      name: echo2
      replicas: 2
load: {target: echo}
`
	s, err := Parse("m.yaml", []byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	got := s.Topology.Services[1]
	if got.Name != "echo2" || got.Replicas != 2 || got.Behaviour.Latency.String() != "2ms" {
		t.Errorf("merged service = %+v", got)
	}
}

func TestShareOfAService(t *testing.T) {
	_, err := Parse("t.yaml", []byte("topology: {services: [{name: echo}]}\nassertions: [{expr: share(echo) > 0.5}]\n"))
	want := `t.yaml:2:21: assertions[0].expr: share() takes a pod such as "echo-0", not the service "echo"`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}
