package local

import (
	"context"

	"github.com/skiff-mesh/skiff/scenarios"
)

// Environment returns e behind the environment contract the scenario
// runner and the faults speak to (scenarios.Environment). Env.Local on the
// result gives e back, for the runner's measurements that only this
// environment offers so far (the mTLS and rotation probes).
func (e *Env) Environment() scenarios.Environment { return environment{e} }

// environment adapts *Env to scenarios.Environment: the contract's
// methods return interfaces where Env's return its concrete pods.
type environment struct{ *Env }

var _ scenarios.Environment = environment{}

func (environment) Name() string { return "local" }

// Local returns the Env behind the contract.
func (w environment) Local() *Env { return w.Env }

func (w environment) Pods(service string) []scenarios.Pod {
	ps := w.Env.Pods(service)
	if ps == nil {
		return nil
	}
	out := make([]scenarios.Pod, len(ps))
	for i, p := range ps {
		out[i] = p
	}
	return out
}

func (w environment) Pod(name string) (scenarios.Pod, error) {
	p, err := w.Env.Pod(name)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (w environment) Client() scenarios.Pod {
	if c := w.Env.Client(); c != nil {
		return c
	}
	return nil
}

// Entry: meshed load goes to the client sidecar's outbound listener with
// the service's authority (or to its TCP route for a tcp service); direct
// load goes to replica 0's workload. Both from the harness's own network:
// every address is on loopback.
func (w environment) Entry(service string, direct bool) scenarios.Entry {
	if direct {
		return scenarios.Entry{Addr: w.DirectAddr(service, 0)}
	}
	en := scenarios.Entry{Authority: w.Authority(service), TCPAddr: w.TCPAddr(service)}
	if c := w.Env.Client(); c != nil {
		en.Addr = c.OutboundAddr()
	}
	return en
}

// Requests is how many workload requests the pod's skiff-demo has served
// since it started (its /_demo/stats).
func (p *Pod) Requests(ctx context.Context) (int64, error) {
	st, err := p.Stats(ctx)
	if err != nil {
		return 0, err
	}
	return st.Requests, nil
}

var _ scenarios.Pod = (*Pod)(nil)
