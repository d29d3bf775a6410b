// Package injector is the sidecar-injection admission webhook: an
// http.Handler that takes AdmissionReview v1 requests for Pod creations,
// as the API server posts them to kubemeta.WebhookPath, and answers each
// with the JSON patch mesh/inject computes, the same one `skiff inject`
// applies to a manifest.
//
// A pod is injected when it, or else its namespace, is annotated
// skiff.dev/inject: enabled (namespaces through a NamespaceGetter). A pod
// the injector cannot handle (it does not decode, an annotation does not
// parse, the namespace cannot be read) is refused, allowed: false with a
// message saying why: never admitted half-injected, nor silently without
// the sidecar it asked for. Before a pod is injected, its namespace is
// given a copy of the trust-anchor ConfigMap it mounts (Anchors), except
// on a dry run. Requests for anything but a Pod's creation are allowed
// unchanged. docs/injection.md has the whole picture.
package injector

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-mesh/skiff/mesh/inject"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

// DefaultMaxBodyBytes bounds an AdmissionReview's body: a Pod is at most
// about 1.5 MiB in etcd, and a review of a creation holds one.
const DefaultMaxBodyBytes = 3 << 20

// DefaultLookupTimeout bounds reading a namespace when the API server's
// request says no timeout of its own.
const DefaultLookupTimeout = 5 * time.Second

// NamespaceGetter reads a namespace's annotations. An unknown namespace
// is an error.
type NamespaceGetter interface {
	NamespaceAnnotations(ctx context.Context, name string) (map[string]string, error)
}

// Config configures a Handler. Only Namespaces is needed for namespace
// opt-in; the zero value injects the pods that opt in themselves.
type Config struct {
	// Inject is what is injected (its zero value: the defaults).
	Inject inject.Config
	// Namespaces reads namespaces' annotations; nil reads none, so only
	// pods annotated themselves are injected.
	Namespaces NamespaceGetter
	// Anchors puts the trust-anchor ConfigMap in a pod's namespace before
	// the pod is injected (an *Anchors); nil puts none there, so it must
	// be there already.
	Anchors AnchorsPublisher
	// MaxBodyBytes bounds a request's body (0 means DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// Log receives a line per admission (nil: discarded).
	Log *slog.Logger
	// Registerer receives the admission counters (nil: none).
	Registerer prometheus.Registerer
}

// Handler serves the webhook. Make it with New; it is safe for concurrent
// use.
type Handler struct {
	cfg        Config
	log        *slog.Logger
	admissions *prometheus.CounterVec
}

var _ http.Handler = (*Handler)(nil)

// Results counted by skiff_injector_admissions_total{result}.
const (
	resultInjected  = "injected"  // a patch was returned
	resultUnchanged = "unchanged" // already injected as asked
	resultSkipped   = "skipped"   // left alone, with a reason
	resultDenied    = "denied"    // allowed: false
	resultIgnored   = "ignored"   // not a Pod creation: allowed unchanged
	resultMalformed = "malformed" // not an AdmissionReview: HTTP 4xx
)

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("MaxBodyBytes %d: want a positive size", cfg.MaxBodyBytes)
	}
	if err := cfg.Inject.Validate(); err != nil {
		return nil, fmt.Errorf("injector configuration: %w", err)
	}
	h := &Handler{cfg: cfg, log: cfg.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("component", "injector")
	h.admissions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skiff_injector_admissions_total",
		Help: "AdmissionReviews the injector answered, by result: injected, unchanged (already injected), skipped (left alone), denied, ignored (not a Pod creation), malformed (not a review).",
	}, []string{"result"})
	for _, r := range []string{resultInjected, resultUnchanged, resultSkipped, resultDenied, resultIgnored, resultMalformed} {
		h.admissions.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(h.admissions); err != nil {
			return nil, fmt.Errorf("injector metrics: %w", err)
		}
	}
	return h, nil
}

// ServeHTTP answers one AdmissionReview. What is not one (wrong method,
// content type, size, or JSON) gets an HTTP error, which the API server
// treats as the webhook's failure; a review gets a review back.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.malformed(w, http.StatusMethodNotAllowed, "POST an AdmissionReview")
		return
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		h.malformed(w, http.StatusUnsupportedMediaType, "the body must be an AdmissionReview in application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.malformed(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the AdmissionReview is larger than %d bytes", h.cfg.MaxBodyBytes))
			return
		}
		h.malformed(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	review, err := DecodeReview(body)
	if err != nil {
		h.malformed(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout(r))
	defer cancel()
	resp, result := h.admit(ctx, review.Request)
	resp.UID = review.Request.UID
	h.admissions.WithLabelValues(result).Inc()
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	b, err := json.Marshal(out)
	if err != nil {
		http.Error(w, "encoding the response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// lookupTimeout is the API server's timeout for this call (the ?timeout=
// it sends), less a margin to answer in, or DefaultLookupTimeout.
func lookupTimeout(r *http.Request) time.Duration {
	if d, err := time.ParseDuration(r.URL.Query().Get("timeout")); err == nil && d > time.Second {
		return d - 500*time.Millisecond
	}
	return DefaultLookupTimeout
}

func (h *Handler) malformed(w http.ResponseWriter, code int, msg string) {
	h.admissions.WithLabelValues(resultMalformed).Inc()
	h.log.Warn("not an AdmissionReview", "status", code, "why", msg)
	http.Error(w, "skiff-injector: "+msg, code)
}

// DecodeReview reads an AdmissionReview v1 that holds a request, or says
// what is wrong with it.
func DecodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("not an AdmissionReview: %w", err)
	}
	if gv := admissionv1.SchemeGroupVersion.String(); review.APIVersion != gv || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("apiVersion %q, kind %q: want %s AdmissionReview (admissionReviewVersions: [v1])", review.APIVersion, review.Kind, gv)
	}
	if review.Request == nil {
		return nil, errors.New("the AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("the AdmissionReview's request has no uid")
	}
	return &review, nil
}

var podResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}

// admit decides one request, returning the response (without its UID)
// and the result to count.
func (h *Handler) admit(ctx context.Context, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string) {
	log := h.log.With("uid", string(req.UID), "namespace", req.Namespace)
	if req.Resource != podResource || req.SubResource != "" || req.Operation != admissionv1.Create {
		log.Debug("not a pod creation: allowed unchanged", "resource", req.Resource.String(), "operation", req.Operation)
		return &admissionv1.AdmissionResponse{Allowed: true}, resultIgnored
	}
	deny := func(name string, err error) (*admissionv1.AdmissionResponse, string) {
		log.Warn("pod refused", "pod", name, "err", err)
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest,
			Message: fmt.Sprintf("skiff-injector: cannot inject pod %s in namespace %s: %v", name, req.Namespace, err),
		}}, resultDenied
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(req.Name, fmt.Errorf("its object is not a Pod: %w", err))
	}
	name := podName(pod, req.Name)
	in := inject.Pod{Namespace: req.Namespace, Meta: pod.ObjectMeta, Spec: pod.Spec}
	if _, own := pod.Annotations[kubemeta.InjectAnnotation]; !own && h.cfg.Namespaces != nil && !inject.NeverInjected(req.Namespace) {
		ann, err := h.cfg.Namespaces.NamespaceAnnotations(ctx, req.Namespace)
		if err != nil {
			return deny(name, fmt.Errorf("reading its namespace's %s annotation: %w", kubemeta.InjectAnnotation, err))
		}
		in.NamespaceAnnotations = ann
	}
	res, err := h.cfg.Inject.Inject(in, inject.Admission)
	if err != nil {
		return deny(name, err)
	}
	resp := &admissionv1.AdmissionResponse{Allowed: true}
	if res.Warning != "" {
		resp.Warnings = []string{"skiff-injector: " + res.Warning}
	}
	if res.Skipped != "" {
		log.Debug("pod left alone", "pod", name, "why", res.Skipped)
		return resp, resultSkipped
	}
	// The pod mounts the anchors ConfigMap from its namespace, injected
	// now or before (skiff inject's output): it must be there.
	if err := h.anchors(ctx, req, log, name); err != nil {
		return deny(name, err)
	}
	if !res.Changed() {
		log.Debug("pod already injected", "pod", name)
		return resp, resultUnchanged
	}
	patch, err := json.Marshal(res.Patch)
	if err != nil {
		return deny(name, err)
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	log.Info("pod injected", "pod", name, "service_account", cmp.Or(pod.Spec.ServiceAccountName, "default"))
	return resp, resultInjected
}

// anchors ensures the trust-anchor ConfigMap in the request's namespace,
// unless the request is a dry run (the webhook declares sideEffects:
// NoneOnDryRun). Only a ConfigMap that may be missing is an error: the
// pod could never start, so it is refused rather than half injected.
// Any other failure (an update of an existing copy) is logged, counted by
// the Anchors, and the pod injected: its copy is there, and is retried.
func (h *Handler) anchors(ctx context.Context, req *admissionv1.AdmissionRequest, log *slog.Logger, name string) error {
	if h.cfg.Anchors == nil || (req.DryRun != nil && *req.DryRun) {
		return nil
	}
	err := h.cfg.Anchors.Ensure(ctx, req.Namespace)
	if err == nil || errors.Is(err, ErrAnchorsMissing) {
		return err
	}
	log.Warn("trust anchors not updated; the pod is injected with the copy its namespace has", "pod", name, "err", err)
	return nil
}

// podName names a pod being created: its name, or its generateName
// prefix with a "*" (a ReplicaSet's pods have only that).
func podName(p corev1.Pod, reqName string) string {
	switch {
	case p.Name != "":
		return p.Name
	case reqName != "":
		return reqName
	case p.GenerateName != "":
		return p.GenerateName + "*"
	}
	return "(unnamed)"
}
