package faultinject

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/faultinject/chaos"
)

// ChaosPod is a pod with a TCP chaos link in front of it (the local
// environment sets one up for services whose timeline uses chaos).
type ChaosPod interface {
	Pod
	Chaos() *chaos.Link
}

// chaosFault adds a toxic, in Toxiproxy's vocabulary, to the chaos link of
// each target pod; its undo removes it. Params:
//
//	toxic: latency | bandwidth | reset_peer | timeout | slicer | limit_data | slow_close
//	stream: downstream (default: towards the client) | upstream
//	toxicity: 0..1, the share of connections affected (default 1)
//	latency, jitter, timeout, delay: durations ("200ms")
//	rate: KB/s (bandwidth); bytes (limit_data); average_size, size_variation (slicer)
type chaosFault struct{ seq atomic.Uint64 }

func (*chaosFault) Type() string { return "chaos" }

func (*chaosFault) Validate(params map[string]any) error {
	_, err := toxicOf(params, "check")
	return err
}

func (f *chaosFault) Apply(_ context.Context, pods []Pod, params map[string]any) (Undo, error) {
	name := fmt.Sprintf("fault-%d", f.seq.Add(1))
	t, err := toxicOf(params, name)
	if err != nil {
		return nil, err
	}
	var links []*chaos.Link
	var errs []error
	for _, p := range pods {
		l, err := linkOf(p)
		if err == nil {
			err = l.Add(t)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("chaos %s: %w", p.Name(), err))
			continue
		}
		links = append(links, l)
	}
	undo := func(context.Context) error {
		var errs []error
		for _, l := range links {
			if err := l.Remove(name); err != nil && !errors.Is(err, chaos.ErrNoToxic) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	return undo, errors.Join(errs...)
}

// clearChaos removes every toxic from the target pods' links.
type clearChaos struct{}

func (clearChaos) Type() string { return "clear_chaos" }

func (clearChaos) Validate(params map[string]any) error {
	if len(params) > 0 {
		return fmt.Errorf(`fault "clear_chaos" takes no params, got %v`, keys(params))
	}
	return nil
}

func (clearChaos) Apply(_ context.Context, pods []Pod, _ map[string]any) (Undo, error) {
	var errs []error
	for _, p := range pods {
		l, err := linkOf(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range l.Toxics() {
			if err := l.Remove(t.Name); err != nil && !errors.Is(err, chaos.ErrNoToxic) {
				errs = append(errs, fmt.Errorf("clear_chaos %s: %w", p.Name(), err))
			}
		}
	}
	return nil, errors.Join(errs...)
}

func linkOf(p Pod) (*chaos.Link, error) {
	cp, ok := p.(ChaosPod)
	if !ok || cp.Chaos() == nil {
		return nil, fmt.Errorf("pod %s has no chaos link (the environment puts one in front of services a timeline targets with chaos)", p.Name())
	}
	return cp.Chaos(), nil
}

// toxicOf builds a toxic from params, naming every parameter that is
// wrong, missing or unknown.
func toxicOf(params map[string]any, name string) (chaos.Toxic, error) {
	t := chaos.Toxic{Name: name}
	p := paramReader{params: params, used: map[string]bool{}}
	kind := p.str("toxic")
	switch s := p.str("stream"); s {
	case "", "downstream":
		t.Stream = chaos.Downstream
	case "upstream":
		t.Stream = chaos.Upstream
	default:
		p.fail("stream %q: want downstream or upstream", s)
	}
	if _, ok := params["toxicity"]; ok {
		v := p.float("toxicity")
		t.Toxicity = &v
	}
	switch kind {
	case "latency":
		t.Kind = chaos.Latency{Latency: p.dur("latency"), Jitter: p.dur("jitter")}
	case "bandwidth":
		t.Kind = chaos.Bandwidth{Rate: int64(p.float("rate"))}
	case "reset_peer":
		t.Kind = chaos.ResetPeer{Timeout: p.dur("timeout")}
	case "timeout":
		t.Kind = chaos.Timeout{Timeout: p.dur("timeout")}
	case "slicer":
		t.Kind = chaos.Slicer{AverageSize: int(p.float("average_size")), SizeVariation: int(p.float("size_variation")), Delay: p.dur("delay")}
	case "limit_data":
		t.Kind = chaos.LimitData{Bytes: int64(p.float("bytes"))}
	case "slow_close":
		t.Kind = chaos.SlowClose{Delay: p.dur("delay")}
	case "":
		p.fail(`fault "chaos" needs params.toxic: latency, bandwidth, reset_peer, timeout, slicer, limit_data or slow_close`)
	default:
		p.fail("toxic %q: want latency, bandwidth, reset_peer, timeout, slicer, limit_data or slow_close", kind)
	}
	for k := range params {
		if !p.used[k] {
			p.fail("unknown param %q for toxic %q", k, kind)
		}
	}
	return t, errors.Join(p.errs...)
}

type paramReader struct {
	what   string // the fault, for errors ("chaos" when empty)
	params map[string]any
	used   map[string]bool
	errs   []error
}

func (p *paramReader) fail(format string, args ...any) {
	what := p.what
	if what == "" {
		what = "chaos"
	}
	p.errs = append(p.errs, fmt.Errorf(what+" params: "+format, args...))
}

// unused reports the params nothing read.
func (p *paramReader) unused() {
	for k := range p.params {
		if !p.used[k] {
			p.fail("unknown param %q", k)
		}
	}
}

func (p *paramReader) str(k string) string {
	v, ok := p.params[k]
	if !ok {
		return ""
	}
	p.used[k] = true
	s, ok := v.(string)
	if !ok {
		p.fail("%s: want a string, got %v", k, v)
	}
	return s
}

func (p *paramReader) float(k string) float64 {
	v, ok := p.params[k]
	if !ok {
		return 0
	}
	p.used[k] = true
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case uint64:
		return float64(n)
	case float64:
		return n
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err == nil {
			return f
		}
	}
	p.fail("%s: want a number, got %v", k, v)
	return 0
}

func (p *paramReader) dur(k string) time.Duration {
	v, ok := p.params[k]
	if !ok {
		return 0
	}
	p.used[k] = true
	s, ok := v.(string)
	if !ok {
		p.fail("%s: want a duration like 200ms, got %v", k, v)
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.fail("%s: %q is not a duration like 200ms", k, s)
	}
	return d
}
