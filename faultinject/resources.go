package faultinject

import (
	"context"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/skiff-mesh/skiff/mesh/control/gatewayapi"
)

// ResourcesPod is a pod that holds the Kubernetes objects the control
// plane serves as policy (HTTPRoute, GRPCRoute, XBackendTrafficPolicy,
// CircuitBreaker): the local environment's controller, or later a
// cluster's API server.
type ResourcesPod interface {
	Pod
	// ApplyResources replaces the whole set of objects with data, a YAML
	// stream.
	ApplyResources(data []byte) error
}

// applyFault replaces the policy objects on the control plane while the
// run goes on, as `kubectl apply` of a new version of them would: the
// scenario then shows whether the change reaches the proxies. Its one
// param, resources, is the whole new set, a list of objects.
type applyFault struct{}

func (applyFault) Type() string { return "apply" }

func (applyFault) Validate(params map[string]any) error {
	_, err := resourcesParam(params)
	return err
}

func (f applyFault) Apply(_ context.Context, pods []Pod, params map[string]any) (Undo, error) {
	data, err := resourcesParam(params)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, p := range pods {
		rp, ok := p.(ResourcesPod)
		if !ok {
			errs = append(errs, fmt.Errorf("apply %s: this pod holds no policy objects (target the controller)", p.Name()))
			continue
		}
		if err := rp.ApplyResources(data); err != nil {
			errs = append(errs, fmt.Errorf("apply %s: %w", p.Name(), err))
		}
	}
	return nil, errors.Join(errs...)
}

// resourcesParam turns the resources param into a YAML stream, checked
// with the objects' own Go types.
func resourcesParam(params map[string]any) ([]byte, error) {
	for k := range params {
		if k != "resources" {
			return nil, fmt.Errorf("fault \"apply\": unknown param %q (want resources)", k)
		}
	}
	list, ok := params["resources"].([]any)
	if !ok || len(list) == 0 {
		return nil, errors.New("fault \"apply\": param resources must be a non-empty list of Kubernetes objects")
	}
	data, err := ResourcesYAML(list)
	if err != nil {
		return nil, err
	}
	if _, err := gatewayapi.Parse("apply", data); err != nil {
		return nil, fmt.Errorf("fault \"apply\": %w", err)
	}
	return data, nil
}

// ResourcesYAML renders objects, as a YAML decoder gives them, as one YAML
// stream.
func ResourcesYAML(objects []any) ([]byte, error) {
	var out []byte
	for i, o := range objects {
		doc, err := yaml.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("fault \"apply\": resources[%d]: %w", i, err)
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, doc...)
	}
	return out, nil
}
