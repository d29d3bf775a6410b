package gatewayapi

import (
	"regexp"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Skiff's own policy API group, where CircuitBreaker lives.
const (
	// PolicyGroup is the API group of Skiff's policies.
	PolicyGroup = "policy.skiff.dev"
	// PolicyVersion is the version of PolicyGroup that this package reads.
	PolicyVersion = "v1alpha1"
	// CircuitBreakerKind is the kind of a CircuitBreaker object.
	CircuitBreakerKind = "CircuitBreaker"
)

// Bounds of a CircuitBreakerSpec, shared by the CRD schema and Parse.
const (
	maxConsecutiveFailures = 1_000_000
	maxMinRequests         = 1_000_000
)

// minSuccessRatePattern is a decimal from 0 to 1 with up to six places:
// CRDs avoid floating-point fields, so the rate is a string.
const minSuccessRatePattern = `^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$`

var rateFormat = regexp.MustCompile(minSuccessRatePattern)

// CircuitBreaker ejects the failing endpoints of a Service: what
// breaker.Config configures in the proxy, as a Kubernetes object. It is a
// Direct Attached Policy in the Gateway API's sense: its targetRef names
// the Service, and it applies to the routes of every port of that Service.
//
//	apiVersion: policy.skiff.dev/v1alpha1
//	kind: CircuitBreaker
//	metadata: {name: echo, namespace: default}
//	spec:
//	  targetRef: {group: "", kind: Service, name: echo}
//	  consecutiveFailures: 5
//	  minSuccessRate: "0.9"
//	  window: 10s
//	  minRequests: 20
//	  baseEjection: 1s
//	  maxEjection: 1m
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=skiff,shortName=cb
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.targetRef.name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CircuitBreaker struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which Service's endpoints are judged and how.
	// +required
	Spec CircuitBreakerSpec `json:"spec"`
}

// CircuitBreakerSpec is what a CircuitBreaker asks for. Every field but
// TargetRef is optional; one left out takes breaker.Config's default.
//
// +kubebuilder:validation:XValidation:message="maxEjection must not be shorter than baseEjection (1s when not set)",rule="!has(self.maxEjection) || duration(self.maxEjection) >= (has(self.baseEjection) ? duration(self.baseEjection) : duration('1s'))"
type CircuitBreakerSpec struct {
	// TargetRef is the Service whose endpoints the breaker judges: group
	// "" (or "core"), kind Service, and its name in the breaker's
	// namespace.
	//
	// +required
	// +kubebuilder:validation:XValidation:message="targetRef must be a Service: group \"\" (or \"core\") and kind Service",rule="(self.group == '' || self.group == 'core') && self.kind == 'Service'"
	TargetRef gatewayv1.LocalPolicyTargetReference `json:"targetRef"`

	// ConsecutiveFailures ejects an endpoint after this many failures in
	// a row. Not set means 7; 0 turns consecutive-failure accrual off.
	//
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	ConsecutiveFailures *int32 `json:"consecutiveFailures,omitempty"`

	// MinSuccessRate, a decimal from "0" to "1" (a string because CRDs
	// avoid floating point), also ejects an endpoint whose success rate
	// over Window falls below it once MinRequests outcomes are in the
	// window. Not set or "0" does not judge the rate.
	//
	// +optional
	// +kubebuilder:validation:Pattern=`^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$`
	MinSuccessRate *string `json:"minSuccessRate,omitempty"`

	// Window is the span the success rate is measured over, a Gateway API
	// duration from 10ms to 1h. Not set means 10s.
	//
	// +optional
	// +kubebuilder:validation:XValidation:message="window must be from 10ms to 1h",rule="duration(self) >= duration('10ms') && duration(self) <= duration('1h')"
	Window *gatewayv1.Duration `json:"window,omitempty"`

	// MinRequests is the fewest outcomes in Window before the success
	// rate is judged. Not set means 20.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	MinRequests *int32 `json:"minRequests,omitempty"`

	// BaseEjection is how long the first ejection lasts; each ejection
	// that follows without a healthy MaxEjection in between lasts twice
	// the one before, up to MaxEjection. Not set means 1s.
	//
	// +optional
	// +kubebuilder:validation:XValidation:message="baseEjection must be longer than 0s",rule="duration(self) > duration('0s')"
	BaseEjection *gatewayv1.Duration `json:"baseEjection,omitempty"`

	// MaxEjection caps an ejection's length. Not set means 1m, or
	// BaseEjection when that is longer.
	//
	// +optional
	// +kubebuilder:validation:XValidation:message="maxEjection must be longer than 0s",rule="duration(self) > duration('0s')"
	MaxEjection *gatewayv1.Duration `json:"maxEjection,omitempty"`
}

// CircuitBreakerList is a list of CircuitBreakers, as the API server
// returns it.
//
// +kubebuilder:object:root=true
type CircuitBreakerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CircuitBreaker `json:"items"`
}

var (
	_ runtime.Object = (*CircuitBreaker)(nil)
	_ runtime.Object = (*CircuitBreakerList)(nil)
)
