package faultinject

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// NetworkPod is a pod with a network link of its own (the netns
// environment): it can be cut off from peers, lose its link, and suffer
// latency and loss on it. On loopback (the local environment) these faults
// fail with an error that says so; the chaos faults are loopback's way.
type NetworkPod interface {
	Pod
	// Partition cuts the pod off from the pods named in from (pod names,
	// service names, or "controller") in both directions: their packets
	// are dropped, so connections stall as in a real partition.
	Partition(ctx context.Context, from []string) (Undo, error)
	// LinkDown takes the pod's link down (a pulled cable); undo brings it
	// back up.
	LinkDown(ctx context.Context) (Undo, error)
	// Impair adds latency (each way, with jitter) and packet loss on the
	// pod's link, in user space. A later call replaces an earlier one;
	// undo restores what was there before.
	Impair(ctx context.Context, im Impairment) (Undo, error)
	// Heal removes every network fault from the pod: partitions,
	// a link down, impairments.
	Heal(ctx context.Context) error
}

// Impairment is latency and loss on a pod's link.
type Impairment struct {
	Latency time.Duration // added to each packet, each way
	Jitter  time.Duration // spread of Latency, uniform ±
	Loss    float64       // probability of a packet being dropped, 0..1
}

// networkFaults are partition, link_down, latency, loss and heal.
func networkFaults() []Fault {
	return []Fault{partitionFault{}, linkDownFault{}, impairFault{"latency"}, impairFault{"loss"}, healFault{}}
}

func networkPods(typ string, pods []Pod) ([]NetworkPod, error) {
	out := make([]NetworkPod, 0, len(pods))
	for _, p := range pods {
		np, ok := p.(NetworkPod)
		if !ok {
			return nil, fmt.Errorf("%s %s: this environment has no network link per pod (use --env netns, or the chaos faults on local)", typ, p.Name())
		}
		out = append(out, np)
	}
	return out, nil
}

// undoAll runs undos in reverse order.
func undoAll(undos []Undo) Undo {
	return func(ctx context.Context) error {
		var errs []error
		for i := len(undos) - 1; i >= 0; i-- {
			if err := undos[i](ctx); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
}

// partitionFault cuts its target off from params.from: a pod, a service or
// "controller". Undo (a duration on the timeline entry, or heal) reconnects.
type partitionFault struct{}

func (partitionFault) Type() string { return "partition" }

func (f partitionFault) Validate(params map[string]any) error {
	_, err := partitionFrom(params)
	return err
}

func partitionFrom(params map[string]any) ([]string, error) {
	p := paramReader{what: "partition", params: params, used: map[string]bool{}}
	from := p.str("from")
	if from == "" && len(p.errs) == 0 {
		p.fail(`needs params.from: the pod, service or "controller" to cut the target off from`)
	}
	p.unused()
	return []string{from}, errors.Join(p.errs...)
}

func (f partitionFault) Apply(ctx context.Context, pods []Pod, params map[string]any) (Undo, error) {
	from, err := partitionFrom(params)
	if err != nil {
		return nil, err
	}
	nps, err := networkPods(f.Type(), pods)
	if err != nil {
		return nil, err
	}
	var undos []Undo
	for _, np := range nps {
		u, err := np.Partition(ctx, from)
		if err != nil {
			undoAll(undos)(ctx)
			return nil, fmt.Errorf("partition %s from %v: %w", np.Name(), from, err)
		}
		undos = append(undos, u)
	}
	return undoAll(undos), nil
}

// linkDownFault takes the target's link down; undo brings it up.
type linkDownFault struct{}

func (linkDownFault) Type() string { return "link_down" }

func (f linkDownFault) Validate(params map[string]any) error {
	if len(params) > 0 {
		return fmt.Errorf("fault %q takes no params, got %v", f.Type(), keys(params))
	}
	return nil
}

func (f linkDownFault) Apply(ctx context.Context, pods []Pod, _ map[string]any) (Undo, error) {
	nps, err := networkPods(f.Type(), pods)
	if err != nil {
		return nil, err
	}
	var undos []Undo
	for _, np := range nps {
		u, err := np.LinkDown(ctx)
		if err != nil {
			undoAll(undos)(ctx)
			return nil, fmt.Errorf("link_down %s: %w", np.Name(), err)
		}
		undos = append(undos, u)
	}
	return undoAll(undos), nil
}

// impairFault is latency (params latency, jitter) or loss (params rate) on
// the target's link, in user space; undo restores the link as it was.
type impairFault struct{ typ string }

func (f impairFault) Type() string { return f.typ }

func (f impairFault) Validate(params map[string]any) error {
	_, err := f.impairment(params)
	return err
}

func (f impairFault) impairment(params map[string]any) (Impairment, error) {
	p := paramReader{what: f.typ, params: params, used: map[string]bool{}}
	var im Impairment
	switch f.typ {
	case "latency":
		im.Latency, im.Jitter = p.dur("latency"), p.dur("jitter")
		if _, ok := params["latency"]; !ok {
			p.fail("needs params.latency: the delay added each way, like 20ms")
		}
		if im.Latency < 0 || im.Jitter < 0 || im.Latency > time.Minute || im.Jitter > time.Minute {
			p.fail("latency %s and jitter %s must be from 0 to 1m", im.Latency, im.Jitter)
		}
	case "loss":
		im.Loss = p.float("rate")
		if _, ok := params["rate"]; !ok {
			p.fail("needs params.rate: the share of packets dropped, like 0.05")
		}
		if !(im.Loss >= 0 && im.Loss <= 1) {
			p.fail("rate %v is not a share from 0 to 1", im.Loss)
		}
	}
	p.unused()
	return im, errors.Join(p.errs...)
}

func (f impairFault) Apply(ctx context.Context, pods []Pod, params map[string]any) (Undo, error) {
	im, err := f.impairment(params)
	if err != nil {
		return nil, err
	}
	nps, err := networkPods(f.typ, pods)
	if err != nil {
		return nil, err
	}
	var undos []Undo
	for _, np := range nps {
		u, err := np.Impair(ctx, im)
		if err != nil {
			undoAll(undos)(ctx)
			return nil, fmt.Errorf("%s %s: %w", f.typ, np.Name(), err)
		}
		undos = append(undos, u)
	}
	return undoAll(undos), nil
}

// healFault removes every network fault from its target.
type healFault struct{}

func (healFault) Type() string { return "heal" }

func (f healFault) Validate(params map[string]any) error {
	if len(params) > 0 {
		return fmt.Errorf("fault %q takes no params, got %v", f.Type(), keys(params))
	}
	return nil
}

func (f healFault) Apply(ctx context.Context, pods []Pod, _ map[string]any) (Undo, error) {
	nps, err := networkPods(f.Type(), pods)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, np := range nps {
		if err := np.Heal(ctx); err != nil {
			errs = append(errs, fmt.Errorf("heal %s: %w", np.Name(), err))
		}
	}
	return nil, errors.Join(errs...)
}
