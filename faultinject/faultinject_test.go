package faultinject

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/faultinject/chaos"
	"github.com/skiff-mesh/skiff/faultinject/httpfault"
)

type fakePod struct {
	name string
	log  []string
	b    httpfault.Behaviour
}

func (p *fakePod) Name() string                  { return p.name }
func (p *fakePod) Kill() error                   { p.log = append(p.log, "kill"); return nil }
func (p *fakePod) Restart(context.Context) error { p.log = append(p.log, "restart"); return nil }
func (p *fakePod) Pause() error                  { p.log = append(p.log, "pause"); return nil }
func (p *fakePod) Resume() error                 { p.log = append(p.log, "resume"); return nil }
func (p *fakePod) ResetBehaviour(context.Context) error {
	p.b = httpfault.Behaviour{}
	p.log = append(p.log, "reset")
	return nil
}
func (p *fakePod) SetBehaviour(_ context.Context, b httpfault.Behaviour) error {
	p.b = b
	p.log = append(p.log, "behaviour")
	return nil
}

func TestRegistryStrict(t *testing.T) {
	r := Default()
	if err := r.Register(podAction{typ: "kill"}); err == nil || !strings.Contains(err.Error(), "registered twice") {
		t.Fatalf("duplicate registration: %v", err)
	}
	if _, err := r.Get("explode"); err == nil || !strings.Contains(err.Error(), "known: add_trust_anchor, apply, behaviour, chaos, clear_chaos, drain, heal, kill, latency, link_down, loss, partition, pause") {
		t.Fatalf("unknown type: %v", err)
	}
}

func TestPodFaultsAndUndo(t *testing.T) {
	ctx := context.Background()
	r := Default()
	for _, tc := range []struct {
		typ      string
		params   map[string]any
		want     string
		wantUndo string
	}{
		{"kill", nil, "kill", "kill restart"},
		{"pause", nil, "pause", "pause resume"},
		{"restart", nil, "restart", "restart"},
		{"behaviour", map[string]any{"latency": "200ms", "error_rate": 0.3}, "behaviour", "behaviour reset"},
	} {
		f, err := r.Get(tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Validate(tc.params); err != nil {
			t.Fatalf("%s: %v", tc.typ, err)
		}
		p := &fakePod{name: "echo-1"}
		undo, err := f.Apply(ctx, []Pod{p}, tc.params)
		if err != nil {
			t.Fatalf("%s: %v", tc.typ, err)
		}
		if got := strings.Join(p.log, " "); got != tc.want {
			t.Errorf("%s did %q, want %q", tc.typ, got, tc.want)
		}
		if tc.typ == "behaviour" && (p.b.ErrorRate != 0.3 || len(p.b.Latency) != 1 || p.b.Latency[0].Delay != 200*time.Millisecond) {
			t.Errorf("behaviour applied: %+v", p.b)
		}
		if undo != nil {
			if err := undo(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got := strings.Join(p.log, " "); got != tc.wantUndo {
			t.Errorf("%s then undo did %q, want %q", tc.typ, got, tc.wantUndo)
		}
	}
}

func TestValidateParams(t *testing.T) {
	r := Default()
	for _, tc := range []struct {
		typ    string
		params map[string]any
		want   string
	}{
		{"kill", map[string]any{"signal": 9}, "takes no params"},
		{"behaviour", nil, "needs params"},
		{"behaviour", map[string]any{"latncy": "2ms"}, "latncy"},
		{"behaviour", map[string]any{"error_rate": 3}, "error_rate"},
	} {
		f, _ := r.Get(tc.typ)
		if err := f.Validate(tc.params); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want an error containing %q", tc.typ, tc.params, err, tc.want)
		}
	}
}

type chaosPod struct {
	fakePod
	link *chaos.Link
}

func (p *chaosPod) Chaos() *chaos.Link { return p.link }

func TestChaosFault(t *testing.T) {
	l, err := chaos.New(chaos.Config{Upstream: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := &chaosPod{fakePod: fakePod{name: "echo-0"}, link: l}
	r := Default()
	f, _ := r.Get("chaos")
	params := map[string]any{"toxic": "latency", "latency": "100ms", "jitter": "10ms", "toxicity": 0.5}
	if err := f.Validate(params); err != nil {
		t.Fatal(err)
	}
	undo, err := f.Apply(context.Background(), []Pod{p}, params)
	if err != nil {
		t.Fatal(err)
	}
	if ts := l.Toxics(); len(ts) != 1 || ts[0].Kind.Type() != "latency" || *ts[0].Toxicity != 0.5 {
		t.Fatalf("toxics: %+v", ts)
	}
	if err := undo(context.Background()); err != nil || len(l.Toxics()) != 0 {
		t.Fatalf("undo left %v (%v)", l.Toxics(), err)
	}
	// A pod without a link says so.
	if _, err := f.Apply(context.Background(), []Pod{&fakePod{name: "plain"}}, params); err == nil || !strings.Contains(err.Error(), "no chaos link") {
		t.Fatalf("pod without a link: %v", err)
	}
	clear, _ := r.Get("clear_chaos")
	f.Apply(context.Background(), []Pod{p}, map[string]any{"toxic": "bandwidth", "rate": 100})
	if _, err := clear.Apply(context.Background(), []Pod{p}, nil); err != nil || len(l.Toxics()) != 0 {
		t.Fatalf("clear_chaos left %v (%v)", l.Toxics(), err)
	}
	for _, bad := range []map[string]any{
		{"toxic": "gremlin"},
		{"toxic": "latency", "latency": 100},
		{"toxic": "latency", "latncy": "1s"},
		{"toxic": "bandwidth", "rate": "fast"},
		{},
	} {
		if err := f.Validate(bad); err == nil {
			t.Errorf("params %v validated", bad)
		}
	}
}

// TestNetworkFaultParams: the network faults check their params before a
// run, and refuse a pod without a link of its own in one clear error.
func TestNetworkFaultParams(t *testing.T) {
	r := Default()
	for _, tc := range []struct {
		typ    string
		params map[string]any
		want   string // "" for valid
	}{
		{"partition", map[string]any{"from": "echo-1"}, ""},
		{"partition", nil, "needs params.from"},
		{"partition", map[string]any{"from": "echo-1", "both": true}, `unknown param "both"`},
		{"link_down", nil, ""},
		{"link_down", map[string]any{"x": 1}, "takes no params"},
		{"latency", map[string]any{"latency": "20ms", "jitter": "5ms"}, ""},
		{"latency", map[string]any{"jitter": "5ms"}, "needs params.latency"},
		{"latency", map[string]any{"latency": "soon"}, "not a duration"},
		{"loss", map[string]any{"rate": 0.05}, ""},
		{"loss", map[string]any{"rate": 1.5}, "not a share from 0 to 1"},
		{"loss", map[string]any{}, "needs params.rate"},
		{"heal", nil, ""},
	} {
		f, err := r.Get(tc.typ)
		if err != nil {
			t.Fatal(err)
		}
		err = f.Validate(tc.params)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %v: %v", tc.typ, tc.params, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s %v: %v, want an error with %q", tc.typ, tc.params, err, tc.want)
		}
	}
	f, _ := r.Get("link_down")
	if _, err := f.Apply(t.Context(), []Pod{&fakePod{name: "echo-0"}}, nil); err == nil || !strings.Contains(err.Error(), "--env netns") {
		t.Errorf("link_down on a loopback pod: %v, want an error naming --env netns", err)
	}
}
