package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/skiff-mesh/skiff/faultinject"
	"github.com/skiff-mesh/skiff/simulator/local"
	"github.com/skiff-mesh/skiff/simulator/netns"
)

// ErrUnavailable marks an environment this machine cannot run (not root,
// no iptables, no Docker): the command line exits 2 on it, after one line
// that names what is missing.
var ErrUnavailable = errors.New("environment unavailable")

// unavailable wraps the one-line reason an environment cannot run.
func unavailable(env string, why error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, env, why)
}

// netnsNetwork gives the local simulator's pods each a network namespace
// on a bridge (simulator/netns): the netns environment.
type netnsNetwork struct{ n *netns.Net }

func newNetnsNetwork(ctx context.Context, r *run) (*netnsNetwork, error) {
	if err := netns.Available(); err != nil {
		return nil, unavailable(EnvNetns, err)
	}
	n, err := netns.New(ctx, netns.Config{Logger: r.log.With("component", "netns")})
	if err != nil {
		return nil, fmt.Errorf("environment netns: %w", err)
	}
	r.log.Info("network of pods", "subnet", n.Subnet().String(), "run", n.ID())
	return &netnsNetwork{n: n}, nil
}

func (w *netnsNetwork) AddPod(ctx context.Context, name string) (local.PodNetwork, error) {
	p, err := w.n.AddPod(ctx, name)
	if err != nil {
		return nil, err
	}
	return netnsPod{Pod: p, n: w.n}, nil
}

func (w *netnsNetwork) Close() error { return w.n.Close() }

// WatchMarker watches the switch between the pods for the marker.
func (w *netnsNetwork) WatchMarker(marker []byte) (func() uint64, func(), error) {
	s, err := w.n.Sniff(marker)
	if err != nil {
		return nil, nil, err
	}
	return s.Hits, func() { s.Close() }, nil
}

// netnsPod is one pod's namespace.
type netnsPod struct {
	*netns.Pod
	n *netns.Net
}

func (p netnsPod) Partition(ctx context.Context, from []netip.Addr) (func(context.Context) error, error) {
	var undos []netns.Undo
	undo := func(ctx context.Context) error {
		var errs []error
		for _, u := range undos {
			errs = append(errs, u(ctx))
		}
		return errors.Join(errs...)
	}
	for _, a := range from {
		if a == p.Addr() {
			continue // a pod is not cut off from itself
		}
		u, err := p.n.PartitionAddr(ctx, p.Pod, netip.PrefixFrom(a, 32))
		if err != nil {
			undo(ctx)
			return nil, err
		}
		undos = append(undos, u)
	}
	return undo, nil
}

func (p netnsPod) LinkDown(ctx context.Context) (func(context.Context) error, error) {
	u, err := p.n.LinkDown(ctx, p.Pod)
	if err != nil {
		return nil, err
	}
	return u, nil
}

func (p netnsPod) Impair(ctx context.Context, im faultinject.Impairment, seed uint64) (func(context.Context) error, error) {
	l, err := p.n.Impair(ctx, p.Pod, netns.Impairment{Latency: im.Latency, Jitter: im.Jitter, Loss: im.Loss, Seed: seed})
	if err != nil {
		return nil, err
	}
	return l.Clear, nil
}

// Wrap runs argv inside the pod's namespace with ip netns exec, which
// execs it: the process keeps its PID.
func (p netnsPod) Wrap(argv []string) []string {
	return append([]string{"ip", "netns", "exec", p.Namespace()}, argv...)
}
