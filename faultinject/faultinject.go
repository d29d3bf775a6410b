// Package faultinject holds the fault types a scenario's timeline uses and
// a strict registry of them. A fault acts on pods that an environment
// supplies (local processes now, Kubernetes pods later) through the small
// interfaces below, so the same timeline runs on every environment.
package faultinject

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/skiff-mesh/skiff/faultinject/httpfault"
)

// Pod is what faults need from one pod of an environment.
type Pod interface {
	Name() string
	// Kill stops the pod's processes at once (SIGKILL).
	Kill() error
	// Restart starts a killed pod again and waits until it is ready.
	Restart(ctx context.Context) error
	// Pause freezes the pod's processes (SIGSTOP); Resume thaws them.
	Pause() error
	Resume() error
	// SetBehaviour changes the demo workload's latency and errors;
	// ResetBehaviour restores its start-up behaviour.
	SetBehaviour(ctx context.Context, b httpfault.Behaviour) error
	ResetBehaviour(ctx context.Context) error
}

// Target resolves a timeline's target: a pod name ("echo-2") or a service
// name, meaning all of its pods.
type Target interface {
	Pods(target string) ([]Pod, error)
}

// Undo reverts a fault; faults that need none return nil.
type Undo func(ctx context.Context) error

// Fault is one fault type.
type Fault interface {
	// Type is the name used in scenario timelines.
	Type() string
	// Validate checks params before a run starts.
	Validate(params map[string]any) error
	// Apply injects the fault into every pod of target.
	Apply(ctx context.Context, pods []Pod, params map[string]any) (Undo, error)
}

// Registry maps fault types to faults. Registering a type twice is an
// error, never a silent replacement.
type Registry struct {
	mu     sync.RWMutex
	faults map[string]Fault
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{faults: make(map[string]Fault)} }

// Register adds f, or fails if its type is taken.
func (r *Registry) Register(f Fault) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.faults[f.Type()]; dup {
		return fmt.Errorf("faultinject: fault type %q is registered twice", f.Type())
	}
	r.faults[f.Type()] = f
	return nil
}

// Get returns the fault of a type, or an error listing the known types.
func (r *Registry) Get(typ string) (Fault, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if f, ok := r.faults[typ]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("unknown fault type %q (known: %s)", typ, strings.Join(r.typesLocked(), ", "))
}

// Types lists the registered types, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.typesLocked()
}

func (r *Registry) typesLocked() []string {
	out := make([]string, 0, len(r.faults))
	for t := range r.faults {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Default returns a registry with every built-in fault type.
func Default() *Registry {
	r := NewRegistry()
	for _, f := range append([]Fault{
		podAction{"kill", func(_ context.Context, p Pod) error { return p.Kill() }},
		podAction{"restart", func(ctx context.Context, p Pod) error { return p.Restart(ctx) }},
		podAction{"pause", func(_ context.Context, p Pod) error { return p.Pause() }},
		podAction{"resume", func(_ context.Context, p Pod) error { return p.Resume() }},
		podAction{"reset_behaviour", func(ctx context.Context, p Pod) error { return p.ResetBehaviour(ctx) }},
		behaviourFault{},
		drainFault{}, drainFault{undrain: true},
		applyFault{},
		&chaosFault{},
		clearChaos{},
	}, append(identityFaults(), networkFaults()...)...) {
		if err := r.Register(f); err != nil {
			panic(err) // a built-in registered twice is a programming error
		}
	}
	return r
}

// podAction is a fault without parameters that does one thing to each pod.
// kill and pause undo themselves (restart, resume) when a timeline entry
// gives them a duration.
type podAction struct {
	typ string
	do  func(context.Context, Pod) error
}

func (a podAction) Type() string { return a.typ }

func (a podAction) Validate(params map[string]any) error {
	if len(params) > 0 {
		return fmt.Errorf("fault %q takes no params, got %v", a.typ, keys(params))
	}
	return nil
}

func (a podAction) Apply(ctx context.Context, pods []Pod, _ map[string]any) (Undo, error) {
	var errs []error
	for _, p := range pods {
		if err := a.do(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", a.typ, p.Name(), err))
		}
	}
	var undo Undo
	switch a.typ {
	case "kill":
		undo = forEach(pods, func(ctx context.Context, p Pod) error { return p.Restart(ctx) })
	case "pause":
		undo = forEach(pods, func(_ context.Context, p Pod) error { return p.Resume() })
	}
	return undo, errors.Join(errs...)
}

func forEach(pods []Pod, f func(context.Context, Pod) error) Undo {
	return func(ctx context.Context) error {
		var errs []error
		for _, p := range pods {
			if err := f(ctx, p); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.Name(), err))
			}
		}
		return errors.Join(errs...)
	}
}

// behaviourFault makes the demo workload of a pod slow or failing:
// params are httpfault.Behaviour's JSON fields (latency, latency_jitter,
// error_rate, error_status, reset_rate). Its undo restores the start-up
// behaviour.
type behaviourFault struct{}

func (behaviourFault) Type() string { return "behaviour" }

func (behaviourFault) Validate(params map[string]any) error {
	_, err := behaviourOf(params)
	return err
}

func (behaviourFault) Apply(ctx context.Context, pods []Pod, params map[string]any) (Undo, error) {
	b, err := behaviourOf(params)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, p := range pods {
		if err := p.SetBehaviour(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("behaviour %s: %w", p.Name(), err))
		}
	}
	return forEach(pods, func(ctx context.Context, p Pod) error { return p.ResetBehaviour(ctx) }), errors.Join(errs...)
}

func behaviourOf(params map[string]any) (httpfault.Behaviour, error) {
	var b httpfault.Behaviour
	if len(params) == 0 {
		return b, errors.New(`fault "behaviour" needs params: latency, latency_jitter, error_rate, error_status or reset_rate`)
	}
	data, err := jsonOf(params)
	if err != nil {
		return b, fmt.Errorf("behaviour params: %w", err)
	}
	if err := b.UnmarshalJSON(data); err != nil {
		return b, fmt.Errorf("behaviour params: %w", err)
	}
	return b, b.Validate()
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
