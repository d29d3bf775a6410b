package gatewayapi

import (
	"fmt"
	"reflect"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// The CircuitBreaker CRD is rendered from the Go type: the properties,
// their types and which are required come from walking CircuitBreaker's
// fields with reflect, as controller-gen would (it cannot be fetched
// here); descriptions and bounds come from circuitBreakerFields, which
// TestCircuitBreakerSchemaCoversType keeps in step with the type. The
// bounds are the kubebuilder markers on the type and the ones Parse
// checks.

// crdHeader opens the rendered CRD.
const crdHeader = "# The CircuitBreaker CustomResourceDefinition, rendered by gatewayapi.CircuitBreakerCRD\n" +
	"# (mesh/control/gatewayapi). Regenerate with:\n" +
	"#   go test ./mesh/control/gatewayapi -run TestCircuitBreakerCRD -update\n"

// CircuitBreakerCRD renders the CustomResourceDefinition of
// CircuitBreaker (apiextensions.k8s.io/v1, policy.skiff.dev/v1alpha1) as
// YAML for kubectl apply. Its OpenAPI schema and CEL rules refuse what
// Parse refuses.
func CircuitBreakerCRD() []byte {
	spec := schemaOf(reflect.TypeFor[CircuitBreakerSpec](), "spec", circuitBreakerFields())
	crd := crdDocument{
		APIVersion: "apiextensions.k8s.io/v1",
		Kind:       "CustomResourceDefinition",
		Metadata:   crdMetadata{Name: "circuitbreakers." + PolicyGroup},
		Spec: crdSpec{
			Group: PolicyGroup,
			Names: crdNames{
				Kind: CircuitBreakerKind, ListKind: CircuitBreakerKind + "List",
				Plural: "circuitbreakers", Singular: "circuitbreaker",
				ShortNames: []string{"cb"}, Categories: []string{"skiff"},
			},
			Scope: "Namespaced",
			Versions: []crdVersion{{
				Name: PolicyVersion, Served: true, Storage: true,
				AdditionalPrinterColumns: []printerColumn{
					{Name: "Target", Type: "string", JSONPath: ".spec.targetRef.name"},
					{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
				},
				Schema: crdValidation{OpenAPIV3Schema: &schemaProps{
					Description: "CircuitBreaker ejects the failing endpoints of a Service, in the Skiff mesh's sidecar proxies. " +
						"It is a Direct Attached Policy: its targetRef names the Service, and it applies to the routes of every port of that Service.",
					Type: "object",
					Properties: map[string]*schemaProps{
						"apiVersion": {Type: "string", Description: "APIVersion defines the versioned schema of this representation of an object."},
						"kind":       {Type: "string", Description: "Kind is a string value representing the REST resource this object represents."},
						"metadata":   {Type: "object"},
						"spec":       spec,
					},
					Required: []string{"spec"},
				}},
			}},
		},
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		// The document is made of strings, bools, maps and slices of
		// them: marshaling cannot fail.
		panic(fmt.Sprintf("gatewayapi: rendering the CircuitBreaker CRD: %v", err))
	}
	return append([]byte(crdHeader), out...)
}

// circuitBreakerFields holds what the Go type does not say about each
// field of a CircuitBreakerSpec, by path: its description and bounds.
func circuitBreakerFields() map[string]schemaProps {
	duration := func(desc string, rules ...validationRule) schemaProps {
		return schemaProps{Description: desc + " A Gateway API duration (GEP-2257), such as \"300ms\", \"10s\" or \"1m30s\".", Validations: rules}
	}
	return map[string]schemaProps{
		"spec": {
			Description: "Spec says which Service's endpoints are judged and how. Every field but targetRef is optional; one left out takes the proxy's default.",
			Validations: []validationRule{{
				Rule:    "!has(self.maxEjection) || duration(self.maxEjection) >= (has(self.baseEjection) ? duration(self.baseEjection) : duration('1s'))",
				Message: "maxEjection must not be shorter than baseEjection (1s when not set)",
			}},
		},
		"spec.targetRef": {
			Description: "TargetRef is the Service whose endpoints the breaker judges: group \"\" (or \"core\"), kind Service, and its name in the breaker's namespace.",
			Validations: []validationRule{{
				Rule:    "(self.group == '' || self.group == 'core') && self.kind == 'Service'",
				Message: "targetRef must be a Service: group \"\" (or \"core\") and kind Service",
			}},
		},
		"spec.targetRef.group": {Description: "Group is the group of the target: \"\" (or \"core\") for a Service.",
			MaxLength: ptr[int64](253), Pattern: `^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`},
		"spec.targetRef.kind": {Description: "Kind is the kind of the target: Service.",
			MinLength: ptr[int64](1), MaxLength: ptr[int64](63), Pattern: `^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`},
		"spec.targetRef.name": {Description: "Name is the name of the Service.",
			MinLength: ptr[int64](1), MaxLength: ptr[int64](253)},
		"spec.consecutiveFailures": {Description: "ConsecutiveFailures ejects an endpoint after this many failures in a row. Not set means 7; 0 turns consecutive-failure accrual off.",
			Minimum: ptr[int64](0), Maximum: ptr[int64](maxConsecutiveFailures)},
		"spec.minSuccessRate": {Description: "MinSuccessRate, a decimal from \"0\" to \"1\" (a string because CRDs avoid floating point), also ejects an endpoint whose success rate over window falls below it once minRequests outcomes are in the window. Not set or \"0\" does not judge the rate.",
			Pattern: minSuccessRatePattern},
		"spec.window": duration("Window is the span the success rate is measured over, from 10ms to 1h. Not set means 10s.",
			validationRule{Rule: "duration(self) >= duration('10ms') && duration(self) <= duration('1h')", Message: "window must be from 10ms to 1h"}),
		"spec.minRequests": {Description: "MinRequests is the fewest outcomes in window before the success rate is judged. Not set means 20.",
			Minimum: ptr[int64](1), Maximum: ptr[int64](maxMinRequests)},
		"spec.baseEjection": duration("BaseEjection is how long the first ejection lasts; each ejection that follows without a healthy maxEjection in between lasts twice the one before, up to maxEjection. Not set means 1s.",
			validationRule{Rule: "duration(self) > duration('0s')", Message: "baseEjection must be longer than 0s"}),
		"spec.maxEjection": duration("MaxEjection caps an ejection's length. Not set means 1m, or baseEjection when that is longer.",
			validationRule{Rule: "duration(self) > duration('0s')", Message: "maxEjection must be longer than 0s"}),
	}
}

func ptr[T any](v T) *T { return &v }

// durationType is the Gateway API's Duration: a string with GEP-2257's
// pattern, which the schema puts on it wherever it appears.
var durationType = reflect.TypeFor[gatewayv1.Duration]()

// schemaOf derives the schema of Go type t at path p: a struct's JSON
// fields become properties, those without omitempty are required, and
// fields[p] adds the description and bounds.
func schemaOf(t reflect.Type, p string, fields map[string]schemaProps) *schemaProps {
	s := fields[p] // a copy
	t = indirect(t)
	switch {
	case t == durationType:
		s.Type = "string"
		s.Pattern = durationFormat.String()
	case t.Kind() == reflect.String:
		s.Type = "string"
	case t.Kind() == reflect.Int32:
		s.Type, s.Format = "integer", "int32"
	case t.Kind() == reflect.Int64 || t.Kind() == reflect.Int:
		s.Type, s.Format = "integer", "int64"
	case t.Kind() == reflect.Struct:
		s.Type = "object"
		s.Properties = map[string]*schemaProps{}
		addProperties(t, p, fields, &s)
	default:
		panic(fmt.Sprintf("gatewayapi: no schema for %s at %s", t, p))
	}
	return &s
}

func addProperties(t reflect.Type, p string, fields map[string]schemaProps, s *schemaProps) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, inline, skip := jsonName(f)
		switch {
		case skip:
		case inline:
			addProperties(indirect(f.Type), p, fields, s)
		default:
			s.Properties[name] = schemaOf(f.Type, child(p, name), fields)
			if !strings.Contains(f.Tag.Get("json"), ",omitempty") {
				s.Required = append(s.Required, name)
			}
		}
	}
}

// The apiextensions.k8s.io/v1 types, as far as this CRD uses them
// (k8s.io/apiextensions-apiserver is not a dependency of Skiff).
type (
	crdDocument struct {
		APIVersion string      `json:"apiVersion"`
		Kind       string      `json:"kind"`
		Metadata   crdMetadata `json:"metadata"`
		Spec       crdSpec     `json:"spec"`
	}
	crdMetadata struct {
		Name string `json:"name"`
	}
	crdSpec struct {
		Group    string       `json:"group"`
		Names    crdNames     `json:"names"`
		Scope    string       `json:"scope"`
		Versions []crdVersion `json:"versions"`
	}
	crdNames struct {
		Kind       string   `json:"kind"`
		ListKind   string   `json:"listKind"`
		Plural     string   `json:"plural"`
		Singular   string   `json:"singular"`
		ShortNames []string `json:"shortNames,omitempty"`
		Categories []string `json:"categories,omitempty"`
	}
	crdVersion struct {
		Name                     string          `json:"name"`
		Served                   bool            `json:"served"`
		Storage                  bool            `json:"storage"`
		AdditionalPrinterColumns []printerColumn `json:"additionalPrinterColumns,omitempty"`
		Schema                   crdValidation   `json:"schema"`
	}
	printerColumn struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		JSONPath string `json:"jsonPath"`
	}
	crdValidation struct {
		OpenAPIV3Schema *schemaProps `json:"openAPIV3Schema"`
	}
	schemaProps struct {
		Description string                  `json:"description,omitempty"`
		Type        string                  `json:"type,omitempty"`
		Format      string                  `json:"format,omitempty"`
		Properties  map[string]*schemaProps `json:"properties,omitempty"`
		Required    []string                `json:"required,omitempty"`
		Minimum     *int64                  `json:"minimum,omitempty"`
		Maximum     *int64                  `json:"maximum,omitempty"`
		MinLength   *int64                  `json:"minLength,omitempty"`
		MaxLength   *int64                  `json:"maxLength,omitempty"`
		Pattern     string                  `json:"pattern,omitempty"`
		Validations []validationRule        `json:"x-kubernetes-validations,omitempty"`
	}
	validationRule struct {
		Rule    string `json:"rule"`
		Message string `json:"message"`
	}
)
