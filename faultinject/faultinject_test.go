package faultinject

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/simulator/demo"
)

type fakePod struct {
	name string
	log  []string
	b    demo.Behaviour
}

func (p *fakePod) Name() string                  { return p.name }
func (p *fakePod) Kill() error                   { p.log = append(p.log, "kill"); return nil }
func (p *fakePod) Restart(context.Context) error { p.log = append(p.log, "restart"); return nil }
func (p *fakePod) Pause() error                  { p.log = append(p.log, "pause"); return nil }
func (p *fakePod) Resume() error                 { p.log = append(p.log, "resume"); return nil }
func (p *fakePod) ResetBehaviour(context.Context) error {
	p.b = demo.Behaviour{}
	p.log = append(p.log, "reset")
	return nil
}
func (p *fakePod) SetBehaviour(_ context.Context, b demo.Behaviour) error {
	p.b = b
	p.log = append(p.log, "behaviour")
	return nil
}

func TestRegistryStrict(t *testing.T) {
	r := Default()
	if err := r.Register(podAction{typ: "kill"}); err == nil || !strings.Contains(err.Error(), "registered twice") {
		t.Fatalf("duplicate registration: %v", err)
	}
	if _, err := r.Get("explode"); err == nil || !strings.Contains(err.Error(), "known: behaviour, kill, pause") {
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
