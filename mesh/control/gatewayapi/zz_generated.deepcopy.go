package gatewayapi

// The deep copies of the CircuitBreaker types, in the form deepcopy-gen
// (controller-gen object) writes them. They are written by hand because
// the generators cannot be fetched here; TestDeepCopy checks that every
// pointer of a copy is its own. Regenerate with controller-gen
// object paths=./mesh/control/gatewayapi once it is pinned in go.mod, and
// keep this comment's place for its header.

import (
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// DeepCopyInto copies in into out; in must be non-nil.
func (in *CircuitBreaker) DeepCopyInto(out *CircuitBreaker) {
	*out = *in
	out.TypeMeta = in.TypeMeta
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	in.Spec.DeepCopyInto(&out.Spec)
}

// DeepCopy returns a copy of in that shares nothing with it; nil for nil.
func (in *CircuitBreaker) DeepCopy() *CircuitBreaker {
	if in == nil {
		return nil
	}
	out := new(CircuitBreaker)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject is DeepCopy as a runtime.Object; nil for nil.
func (in *CircuitBreaker) DeepCopyObject() runtime.Object {
	if c := in.DeepCopy(); c != nil {
		return c
	}
	return nil
}

// DeepCopyInto copies in into out; in must be non-nil.
func (in *CircuitBreakerList) DeepCopyInto(out *CircuitBreakerList) {
	*out = *in
	out.TypeMeta = in.TypeMeta
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		in, out := &in.Items, &out.Items
		*out = make([]CircuitBreaker, len(*in))
		for i := range *in {
			(*in)[i].DeepCopyInto(&(*out)[i])
		}
	}
}

// DeepCopy returns a copy of in that shares nothing with it; nil for nil.
func (in *CircuitBreakerList) DeepCopy() *CircuitBreakerList {
	if in == nil {
		return nil
	}
	out := new(CircuitBreakerList)
	in.DeepCopyInto(out)
	return out
}

// DeepCopyObject is DeepCopy as a runtime.Object; nil for nil.
func (in *CircuitBreakerList) DeepCopyObject() runtime.Object {
	if c := in.DeepCopy(); c != nil {
		return c
	}
	return nil
}

// DeepCopyInto copies in into out; in must be non-nil.
func (in *CircuitBreakerSpec) DeepCopyInto(out *CircuitBreakerSpec) {
	*out = *in
	out.TargetRef = in.TargetRef
	if in.ConsecutiveFailures != nil {
		in, out := &in.ConsecutiveFailures, &out.ConsecutiveFailures
		*out = new(int32)
		**out = **in
	}
	if in.MinSuccessRate != nil {
		in, out := &in.MinSuccessRate, &out.MinSuccessRate
		*out = new(string)
		**out = **in
	}
	if in.Window != nil {
		in, out := &in.Window, &out.Window
		*out = new(gatewayv1.Duration)
		**out = **in
	}
	if in.MinRequests != nil {
		in, out := &in.MinRequests, &out.MinRequests
		*out = new(int32)
		**out = **in
	}
	if in.BaseEjection != nil {
		in, out := &in.BaseEjection, &out.BaseEjection
		*out = new(gatewayv1.Duration)
		**out = **in
	}
	if in.MaxEjection != nil {
		in, out := &in.MaxEjection, &out.MaxEjection
		*out = new(gatewayv1.Duration)
		**out = **in
	}
}

// DeepCopy returns a copy of in that shares nothing with it; nil for nil.
func (in *CircuitBreakerSpec) DeepCopy() *CircuitBreakerSpec {
	if in == nil {
		return nil
	}
	out := new(CircuitBreakerSpec)
	in.DeepCopyInto(out)
	return out
}
