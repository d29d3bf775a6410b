package faultinject

import (
	"context"
	"errors"
	"fmt"
)

// DrainPod is a pod that service discovery can take out of, and put back
// into, its service while its processes keep running: Kubernetes' not-ready
// pod, an endpoint removed from the registry.
type DrainPod interface {
	Pod
	// Drain takes the pod out of discovery; its processes keep serving
	// whoever still sends to them.
	Drain() error
	// Undrain puts it back.
	Undrain() error
}

// drainFault takes pods out of discovery without stopping them: a change
// that only the mesh can make visible. A dead process serves nothing
// whether or not its proxies heard of its death; a drained one serves
// whatever the proxies, going by stale endpoints, still send it. Its undo
// (a duration on the timeline entry, or the undrain fault) puts them back.
type drainFault struct{ undrain bool }

func (f drainFault) Type() string {
	if f.undrain {
		return "undrain"
	}
	return "drain"
}

func (f drainFault) Validate(params map[string]any) error {
	if len(params) > 0 {
		return fmt.Errorf("fault %q takes no params, got %v", f.Type(), keys(params))
	}
	return nil
}

func (f drainFault) Apply(_ context.Context, pods []Pod, _ map[string]any) (Undo, error) {
	var drained []DrainPod
	var errs []error
	for _, p := range pods {
		d, ok := p.(DrainPod)
		if !ok {
			errs = append(errs, fmt.Errorf("%s %s: this environment cannot take a pod out of discovery while it runs", f.Type(), p.Name()))
			continue
		}
		op := d.Drain
		if f.undrain {
			op = d.Undrain
		}
		if err := op(); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", f.Type(), p.Name(), err))
			continue
		}
		drained = append(drained, d)
	}
	if f.undrain {
		return nil, errors.Join(errs...)
	}
	undo := func(context.Context) error {
		var errs []error
		for _, d := range drained {
			if err := d.Undrain(); err != nil {
				errs = append(errs, fmt.Errorf("undrain %s: %w", d.Name(), err))
			}
		}
		return errors.Join(errs...)
	}
	return undo, errors.Join(errs...)
}
