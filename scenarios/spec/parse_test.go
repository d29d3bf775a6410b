package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"go.yaml.in/yaml/v3"
)

// briefExample is the example of the schema documentation, every field set.
const briefExample = `name: failover
description: One of three replicas is killed, a second paused; the mesh routes around both.
seed: 42
topology:
  services:
    - name: echo
      port: 8080
      replicas: 3
      protocol: http1
      meshed: true
      failover: [echo-backup]
      behaviour:
        latency: 1ms
        latency_jitter: 0s
        error_rate: 0
        error_status: 503
        reset_rate: 0
        max_concurrent: 0
      replica_behaviour:
        2: {latency: 10ms}
    - name: echo-backup
      meshed: false
mesh:
  balancer: ewma
load:
  target: echo
  protocol: http1
  path: /
  method: GET
  payload_bytes: 0
  connections: 16
  rate: {shape: constant, rps: 500}
  duration: 40s
  warmup: 5s
  compare_direct: false
  trials: 1
timeline:
  - at: 10s
    fault: kill
    target: echo-2
  - at: 20s
    fault: pause
    target: echo-1
  - at: 30s
    fault: restart
    target: echo-2
  - at: 30s
    fault: resume
    target: echo-1
  - at: 12s
    fault: behaviour
    target: echo-0
    params: {latency: 200ms}
    for: 5s
phases:
  before_fault: {from: 0s, to: 10s}
  during_fault: {from: 10s, to: 30s}
  after_recovery: {from: 33s, to: end}
assertions:
  - {phase: during_fault, expr: "success_rate >= 0.999"}
  - {phase: during_fault, expr: "p99_ms < 50"}
  - {phase: whole, expr: "recovery_s < 3"}
  - {phase: after_recovery, expr: "share(echo-2) >= 0.2"}
  - {phase: whole, expr: "success_rate >= 0.99"}
quick:
  duration: 20s
  timeline_scale: 0.5
`

func ptr[T any](v T) *T { return &v }

func TestParseExample(t *testing.T) {
	s, err := Parse("failover.yaml", []byte(briefExample))
	if err != nil {
		t.Fatal(err)
	}
	lat10 := Distribution{{Delay: 10 * time.Millisecond, Percent: 100}}
	want := &Scenario{
		Name:        "failover",
		Description: "One of three replicas is killed, a second paused; the mesh routes around both.",
		Seed:        42,
		Topology: Topology{Services: []Service{
			{
				Name: "echo", Port: 8080, Replicas: 3, Protocol: "http1", Meshed: ptr(true),
				Failover:         []string{"echo-backup"},
				Behaviour:        Behaviour{Latency: Distribution{{Delay: time.Millisecond, Percent: 100}}, ErrorStatus: 503},
				ReplicaBehaviour: map[int]BehaviourPatch{2: {Latency: &lat10}},
			},
			{Name: "echo-backup", Port: 8080, Replicas: 1, Protocol: "http1", Meshed: ptr(false), Behaviour: Behaviour{ErrorStatus: 503}},
		}},
		Mesh: Mesh{Balancer: "ewma"},
		Load: Traffic{
			Target: "echo", Protocol: "http1", Path: "/", Method: "GET", Connections: 16,
			Rate:     Rate{Shape: "constant", RPS: 500},
			Duration: 40 * time.Second, Warmup: 5 * time.Second, Trials: 1,
		},
		Timeline: []Event{
			{At: 10 * time.Second, Fault: "kill", Target: "echo-2"},
			{At: 20 * time.Second, Fault: "pause", Target: "echo-1"},
			{At: 30 * time.Second, Fault: "restart", Target: "echo-2"},
			{At: 30 * time.Second, Fault: "resume", Target: "echo-1"},
			{At: 12 * time.Second, Fault: "behaviour", Target: "echo-0", Params: map[string]any{"latency": "200ms"}, For: 5 * time.Second},
		},
		Phases: Phases{
			{Name: "before_fault", From: At(0), To: At(10 * time.Second)},
			{Name: "during_fault", From: At(10 * time.Second), To: At(30 * time.Second)},
			{Name: "after_recovery", From: At(33 * time.Second), To: End},
		},
		Assertions: []Assertion{
			{Phase: "during_fault", Expr: "success_rate >= 0.999"},
			{Phase: "during_fault", Expr: "p99_ms < 50"},
			{Phase: "whole", Expr: "recovery_s < 3"},
			{Phase: "after_recovery", Expr: "share(echo-2) >= 0.2"},
			{Phase: "whole", Expr: "success_rate >= 0.99"},
		},
		Quick: &Quick{Duration: 20 * time.Second, TimelineScale: 0.5},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", s, want)
	}
	if got := s.Topology.Services[0].BehaviourOf(2).Latency.String(); got != "10ms" {
		t.Errorf("BehaviourOf(2).Latency = %s, want 10ms", got)
	}
	if got := s.Topology.Services[0].BehaviourOf(0).Latency.String(); got != "1ms" {
		t.Errorf("BehaviourOf(0).Latency = %s, want 1ms", got)
	}
	if svc, r, ok := s.ResolveTarget("echo-2"); !ok || svc.Name != "echo" || r != 2 {
		t.Errorf("ResolveTarget(echo-2) = %v, %d, %v", svc, r, ok)
	}
	if svc, r, ok := s.ResolveTarget("echo-backup"); !ok || svc.Name != "echo-backup" || r != -1 {
		t.Errorf("ResolveTarget(echo-backup) = %v, %d, %v", svc, r, ok)
	}
	for _, bad := range []string{"echo-3", "echo-01", "nope", "echo-", "echo-backup-1"} {
		if _, _, ok := s.ResolveTarget(bad); ok {
			t.Errorf("ResolveTarget(%q) ok, want not found", bad)
		}
	}
	if from, to, ok := s.Phase("after_recovery"); !ok || from != 33*time.Second || to != 40*time.Second {
		t.Errorf("Phase(after_recovery) = %s, %s, %v", from, to, ok)
	}
	if from, to, ok := s.Phase(PhaseWarmup); !ok || from != -5*time.Second || to != 0 {
		t.Errorf("Phase(warmup) = %s, %s, %v", from, to, ok)
	}
	sorted := s.SortedTimeline()
	if sorted[1].At != 12*time.Second || sorted[3].Fault != "restart" || sorted[4].Fault != "resume" {
		t.Errorf("SortedTimeline not stable by At: %+v", sorted)
	}
	if s.Timeline[4].At != 12*time.Second {
		t.Error("SortedTimeline reordered the scenario")
	}
}

// TestRoundTrip: a parsed scenario marshals to YAML that parses back to
// the same scenario.
func TestRoundTrip(t *testing.T) {
	s, err := Parse("failover.yaml", []byte(briefExample))
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("failover.yaml", out)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(s, again) {
		t.Errorf("round trip changed the scenario:\n got %+v\nwant %+v\n%s", again, s, out)
	}
	var viaYAML Scenario
	if err := yaml.Unmarshal(out, &viaYAML); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&viaYAML, s) {
		t.Errorf("yaml.Unmarshal differs:\n got %+v\nwant %+v", &viaYAML, s)
	}
}

func TestNormalizeDefaults(t *testing.T) {
	s, err := Parse("minimal.yaml", []byte("topology: {services: [{name: echo}]}\nphases: {p: {from: 1s}}\nassertions: [{expr: rps > 0}]\nquick: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Scenario{
		Name: "minimal",
		Topology: Topology{Services: []Service{{
			Name: "echo", Port: DefaultPort, Replicas: DefaultReplicas, Protocol: DefaultProtocol,
			Meshed: ptr(true), Behaviour: Behaviour{ErrorStatus: DefaultErrorStatus},
		}}},
		Mesh: Mesh{Balancer: DefaultBalancer},
		Load: Traffic{
			Target: "echo", Protocol: "http1", Path: "/", Method: "GET", Connections: DefaultConnections,
			Rate: Rate{Shape: ShapeConstant, RPS: DefaultRPS}, Duration: DefaultDuration, Trials: DefaultTrials,
		},
		Phases:     Phases{{Name: "p", From: At(time.Second), To: End}},
		Assertions: []Assertion{{Phase: PhaseWhole, Expr: "rps > 0"}},
		Quick:      &Quick{TimelineScale: 1},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", s, want)
	}
	c := s.Clone()
	c.Normalize()
	if !reflect.DeepEqual(c, s) {
		t.Error("Normalize is not idempotent")
	}
}

func TestNormalizeProtocolDefaults(t *testing.T) {
	for _, tc := range []struct {
		yaml                 string
		method, path         string
		connections          int
		shape                string
		duration             time.Duration
		rps, from, to, steps int
	}{
		{yaml: "topology: {services: [{name: g, protocol: grpc}]}", method: DefaultGRPCMethod, connections: 1, shape: "constant", rps: DefaultRPS, duration: DefaultDuration},
		{yaml: "topology: {services: [{name: h, protocol: h2c}]}\nload: {payload_bytes: 10}", method: "POST", path: "/", connections: 1, shape: "constant", rps: DefaultRPS, duration: DefaultDuration},
		{yaml: "topology: {services: [{name: h}]}\nload: {rate: {from: 1, to: 5}}", method: "GET", path: "/", connections: 10, shape: "ramp", from: 1, to: 5, duration: DefaultDuration},
		{yaml: "topology: {services: [{name: h}]}\nload: {warmup: 2s, rate: {steps: [{rps: 1, for: 5s}, {rps: 2, for: 10s}]}}", method: "GET", path: "/", connections: 10, shape: "steps", steps: 2, duration: 13 * time.Second},
	} {
		s, err := Parse("p.yaml", []byte(tc.yaml))
		if err != nil {
			t.Errorf("%s: %v", tc.yaml, err)
			continue
		}
		l := s.Load
		if l.Method != tc.method || l.Path != tc.path || l.Connections != tc.connections || l.Rate.Shape != tc.shape ||
			l.Duration != tc.duration || l.Rate.RPS != tc.rps || l.Rate.From != tc.from || l.Rate.To != tc.to || len(l.Rate.Steps) != tc.steps {
			t.Errorf("%s: got %+v", tc.yaml, l)
		}
	}
}

func TestApplyQuick(t *testing.T) {
	s, err := Parse("failover.yaml", []byte(briefExample))
	if err != nil {
		t.Fatal(err)
	}
	orig := s.Clone()
	s.ApplyQuick()
	if s.Quick != nil {
		t.Error("ApplyQuick left Quick set")
	}
	if s.Load.Duration != 20*time.Second || s.Load.Warmup != 5*time.Second || s.Load.Trials != 1 {
		t.Errorf("load after quick: %+v", s.Load)
	}
	wantAt := []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second, 15 * time.Second, 6 * time.Second}
	for i, e := range s.Timeline {
		if e.At != wantAt[i] {
			t.Errorf("timeline[%d].at = %s, want %s", i, e.At, wantAt[i])
		}
	}
	if s.Timeline[4].For != 2500*time.Millisecond {
		t.Errorf("timeline[4].for = %s, want 2.5s", s.Timeline[4].For)
	}
	wantPhases := Phases{
		{Name: "before_fault", From: At(0), To: At(5 * time.Second)},
		{Name: "during_fault", From: At(5 * time.Second), To: At(15 * time.Second)},
		{Name: "after_recovery", From: At(16500 * time.Millisecond), To: End},
	}
	if !reflect.DeepEqual(s.Phases, wantPhases) {
		t.Errorf("phases after quick: %+v", s.Phases)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("quick form invalid: %v", err)
	}
	again := s.Clone()
	again.ApplyQuick()
	if !reflect.DeepEqual(again, s) {
		t.Error("second ApplyQuick changed the scenario")
	}
	if orig.Timeline[0].At != 10*time.Second || orig.Quick == nil {
		t.Error("Clone shares state with the original")
	}
}

func TestApplyQuickOverrides(t *testing.T) {
	const in = `topology: {services: [{name: echo}]}
load:
  duration: 30s
  warmup: 5s
  trials: 8
  compare_direct: true
  rate: {steps: [{rps: 10, for: 15s}, {rps: 20, for: 20s}]}
timeline: [{at: 20s, fault: kill, target: echo-0, for: 4s}]
quick:
  warmup: 0s
  trials: 2
  timeline_scale: 0.3
`
	s, err := Parse("q.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	s.ApplyQuick()
	l := s.Load
	// Duration scales with the timeline when quick.duration is absent;
	// 0.3 × 30 s is not exact in floating point, rounding fixes it.
	if l.Duration != 9*time.Second || l.Warmup != 0 || l.Trials != 2 {
		t.Errorf("load: %+v", l)
	}
	if l.Rate.Steps[0].For != 4500*time.Millisecond || l.Rate.Steps[1].For != 6*time.Second {
		t.Errorf("steps: %+v", l.Rate.Steps)
	}
	if e := s.Timeline[0]; e.At != 6*time.Second || e.For != 1200*time.Millisecond {
		t.Errorf("event: %+v", e)
	}
	if got := s.WallTime(); got != 2*2*9*time.Second {
		t.Errorf("WallTime = %s", got)
	}

	// quick.rate replaces the rate, steps included, and is not scaled.
	s, err = Parse("q.yaml", []byte(strings.Replace(in, "  trials: 2\n", "  trials: 2\n  rate: {rps: 50}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s.ApplyQuick()
	if !reflect.DeepEqual(s.Load.Rate, Rate{Shape: ShapeConstant, RPS: 50}) {
		t.Errorf("rate: %+v", s.Load.Rate)
	}

	// quick.leaf_lifetime replaces the mesh's; out of bounds on the quick
	// form, it is refused there.
	withCP := strings.Replace(in, "topology:", "mesh: {control_plane: true, leaf_lifetime: 1m}\ntopology:", 1)
	s, err = Parse("q.yaml", []byte(strings.Replace(withCP, "  trials: 2\n", "  trials: 2\n  leaf_lifetime: 15s\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s.ApplyQuick()
	if s.Mesh.LeafLifetime != 15*time.Second {
		t.Errorf("leaf lifetime: %s", s.Mesh.LeafLifetime)
	}
	for _, bad := range []string{"1s", "0s"} {
		_, err = Parse("q.yaml", []byte(strings.Replace(withCP, "  trials: 2\n", "  trials: 2\n  leaf_lifetime: "+bad+"\n", 1)))
		if err == nil || !strings.Contains(err.Error(), "leaf_lifetime") {
			t.Errorf("quick.leaf_lifetime %s: %v", bad, err)
		}
	}

	// Without a quick section ApplyQuick only normalizes.
	s = &Scenario{Topology: Topology{Services: []Service{{Name: "a"}}}}
	s.ApplyQuick()
	if s.Load.Duration != DefaultDuration || s.Load.Target != "a" {
		t.Errorf("no quick: %+v", s.Load)
	}
}

func TestValidateBuiltInGo(t *testing.T) {
	s := &Scenario{
		Name:     "go",
		Topology: Topology{Services: []Service{{Name: "echo", Replicas: 2}}},
		Timeline: []Event{{At: time.Second, Fault: "kill", Target: "echo-2"}},
	}
	err := s.Validate()
	want := `timeline[0].target: pod "echo-2" does not exist: service "echo" has 2 replicas (echo-0..echo-1)`
	if err == nil || err.Error() != want {
		t.Fatalf("Validate = %v, want %s", err, want)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Path != "timeline[0].target" || es[0].Line != 0 {
		t.Errorf("errors.As(Errors) = %#v", es)
	}
	var e *Error
	if !errors.As(err, &e) || e.Path != "timeline[0].target" {
		t.Errorf("errors.As(*Error) = %#v", e)
	}
	if s.Load.Duration != 0 {
		t.Error("Validate changed the scenario")
	}
	s.Timeline[0].Target = "echo-1"
	if err := s.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
}

func TestWithFaults(t *testing.T) {
	in := []byte("topology: {services: [{name: echo}]}\ntimeline: [{at: 1s, fault: flood, target: echo}]\n")
	if _, err := Parse("f.yaml", in); err == nil || !strings.Contains(err.Error(), `unknown fault type "flood"`) {
		t.Errorf("default faults: %v", err)
	}
	if _, err := Parse("f.yaml", in, WithFaults([]string{"flood", "kill"})); err != nil {
		t.Errorf("WithFaults: %v", err)
	}
	_, err := Parse("f.yaml", []byte("topology: {services: [{name: echo}]}\ntimeline: [{at: 1s, fault: kill, target: echo}]\n"), WithFaults([]string{"flood"}))
	if want := `f.yaml:2:28: timeline[0].fault: unknown fault type "kill"; want "flood"`; err == nil || err.Error() != want {
		t.Errorf("WithFaults(flood) = %v, want %s", err, want)
	}
}

func TestLoad(t *testing.T) {
	fsys := fstest.MapFS{
		"echo.yaml":   {Data: []byte("topology: {services: [{name: echo}]}\n")},
		"named.yaml":  {Data: []byte("name: other\ntopology: {services: [{name: echo}]}\n")},
		"broken.yaml": {Data: []byte("topology: {services: [{name: echo, replicas: 0}]}\n")},
		"README.md":   {Data: []byte("not a scenario")},
	}
	s, err := Load(fsys, "echo")
	if err != nil || s.Name != "echo" {
		t.Fatalf("Load(echo) = %v, %v", s, err)
	}
	if s, err = Load(fsys, "echo.yaml"); err != nil || s.Name != "echo" {
		t.Errorf("Load(echo.yaml) = %v, %v", s, err)
	}
	for name, want := range map[string]string{
		"ecoh":      `unknown scenario "ecoh"; known scenarios: broken, echo, named; did you mean "echo"?`,
		"zzz":       `unknown scenario "zzz"; known scenarios: broken, echo, named`,
		"named":     `named.yaml:1:7: name: "other" does not match the file name; call the scenario "named" or rename the file`,
		"broken":    `broken.yaml:1:46: topology.services[0].replicas: must be at least 1, got 0`,
		"../x":      `scenario name "../x": want a name such as "failover", not a path`,
		"sub/inner": `scenario name "sub/inner": want a name such as "failover", not a path`,
	} {
		if _, err := Load(fsys, name); err == nil || err.Error() != want {
			t.Errorf("Load(%q) = %v\nwant %s", name, err, want)
		}
	}
	names, err := Names(fsys)
	if err != nil || strings.Join(names, ",") != "broken,echo,named" {
		t.Errorf("Names = %v, %v", names, err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f.yaml", Line: 3, Column: 7, Msg: "m"}, "f.yaml:3:7: m"},
		{Error{File: "f.yaml", Line: 3, Msg: "m"}, "f.yaml:3: m"},
		{Error{File: "f.yaml", Msg: "m"}, "f.yaml: m"},
		{Error{Line: 3, Column: 1, Msg: "m"}, "3:1: m"},
		{Error{Msg: "m"}, "m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestLevenshtein(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"replicas", "replcias", 2}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"same", "same", 0}, {"ab", "abc", 1},
	} {
		if got := levenshtein(tc.a, tc.b, 10); got != tc.want {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if got := suggest("Replicas", []string{"name", "replicas"}); got != "replicas" {
		t.Errorf("suggest is case-sensitive: %q", got)
	}
	if got := suggest("zzzzzz", []string{"name", "replicas"}); got != "" {
		t.Errorf("suggest(zzzzzz) = %q", got)
	}
}

func TestDistribution(t *testing.T) {
	for in, want := range map[string]string{
		"":                "0s",
		"0s":              "0s",
		"2ms":             "2ms",
		" 1ms:50, 10ms:1": "1ms:50,10ms:1",
		"0":               "0s",
		"150us:10":        "150µs:10",
	} {
		d, err := ParseDistribution(in)
		if err != nil || d.String() != want {
			t.Errorf("ParseDistribution(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, in := range []string{"1ms:60,2ms:50", "fast", "1ms:x", "2h", "-1ms", "1ms:-1", "1ms:NaN", "1ms,,2ms"} {
		if d, err := ParseDistribution(in); err == nil {
			t.Errorf("ParseDistribution(%q) = %v, want an error", in, d)
		}
	}
}

// TestNetworkFaultsNeedEnvironments: network faults need a scenario that
// names environments with a network per pod, and partition's from is a
// target of the topology (or the client).
func TestNetworkFaultsNeedEnvironments(t *testing.T) {
	base := "topology: {services: [{name: echo, replicas: 2}]}\n"
	for _, tc := range []struct{ in, want string }{
		{"timeline: [{at: 1s, fault: link_down, target: echo-0}]\n", "list the environments"},
		{"environments: [local, netns]\ntimeline: [{at: 1s, fault: link_down, target: echo-0}]\n", "list the environments"},
		{"environments: [netns]\ntimeline: [{at: 1s, fault: link_down, target: echo-0}]\n", ""},
		{"environments: [netns]\ntimeline: [{at: 1s, fault: partition, target: echo-0, params: {from: client}}]\n", ""},
		{"environments: [netns]\ntimeline: [{at: 1s, fault: partition, target: echo-0, params: {from: echo-1}}]\n", ""},
		{"environments: [netns]\ntimeline: [{at: 1s, fault: partition, target: echo-0, params: {from: echo-7}}]\n", `pod "echo-7" does not exist`},
		{"environments: [moon]\n", `unknown environment "moon"`},
	} {
		_, err := Parse("n.yaml", []byte(base+tc.in))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}
