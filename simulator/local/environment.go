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

// Name is "local", or "netns" on a Network of pods.
func (w environment) Name() string {
	if w.cfg.Network != nil {
		return "netns"
	}
	return "local"
}

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
//
// On a Network the load comes from inside the client pod, unaware of the
// mesh: it connects to the service's virtual address with the service's
// authority, and the client pod's rules take the connection to its
// sidecar, as a cluster's ClusterIP traffic is; tcp services go to the
// client sidecar's TCP route on the pod's loopback. The direct load comes
// from the direct client's network, which the meshed pods' rules let
// through to the workload.
func (w environment) Entry(service string, direct bool) scenarios.Entry {
	if w.cfg.Network != nil {
		return w.networkEntry(service, direct)
	}
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
// since it started (its /_demo/stats): HTTP requests and gRPC calls, and
// the connections of its TCP echo, TLS echo and banner, one exchange each
// (the load generator's tcp, tls and banner requests).
func (p *Pod) Requests(ctx context.Context) (int64, error) {
	st, err := p.Stats(ctx)
	if err != nil {
		return 0, err
	}
	return st.Requests + st.TCPConnections + st.TLSConnections + st.BannerConnections, nil
}

var _ scenarios.Pod = (*Pod)(nil)
