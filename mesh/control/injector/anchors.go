package injector

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/skiff-mesh/skiff/mesh/inject"
	"github.com/skiff-mesh/skiff/mesh/kubemeta"
)

// DefaultAnchorsInterval is how often Anchors re-reads its file when
// AnchorsConfig.Interval is zero (the controller's
// --identity-reload-interval default).
const DefaultAnchorsInterval = time.Second

// DefaultEnsureTimeout bounds one Ensure when AnchorsConfig.Timeout is
// zero: well inside the webhook's 10 s, with the namespace lookup.
const DefaultEnsureTimeout = 3 * time.Second

// ErrAnchorsMissing says the trust-anchor ConfigMap is not in a namespace
// (or could not be read there) and could not be created: a pod mounting
// it would wait in ContainerCreating for ever, so the webhook refuses it.
var ErrAnchorsMissing = errors.New("the trust-anchor ConfigMap " + kubemeta.ConfigMap +
	" is not in the namespace and the injector could not put it there; an injected pod could never start without it")

// AnchorsPublisher puts the trust anchors in a namespace before a pod
// there is injected. An error wrapping ErrAnchorsMissing refuses the pod;
// any other is logged and the pod injected (its ConfigMap is there, only
// possibly stale, and the publisher retries).
type AnchorsPublisher interface {
	Ensure(ctx context.Context, namespace string) error
}

// EnabledNamespaces lists the namespaces annotated skiff.dev/inject:
// enabled (KubeNamespaces does, from its informer's cache).
type EnabledNamespaces interface {
	EnabledNamespaces() ([]string, error)
}

// AnchorsConfig configures Anchors. Client and File are required.
type AnchorsConfig struct {
	// Client writes the copies: get, create and update of ConfigMaps
	// named kubemeta.ConfigMap, nothing else (no list, no watch).
	Client kubernetes.Interface
	// File is the trust-anchor bundle (PEM certificates), as the
	// injector's container mounts it from the install's ConfigMap.
	File string
	// Namespaces lists the enabled namespaces, whose copies are ensured
	// at start and kept current; nil keeps only the namespaces Ensure
	// was called for.
	Namespaces EnabledNamespaces
	// Interval is the pause between two reads of File; zero means
	// DefaultAnchorsInterval.
	Interval time.Duration
	// Timeout bounds one Ensure; zero means DefaultEnsureTimeout.
	Timeout time.Duration
	// Log receives the copies' creations, updates and failures; nil
	// discards them.
	Log *slog.Logger
	// Registerer receives skiff_injector_anchors_copies_total; nil
	// leaves it unregistered.
	Registerer prometheus.Registerer
}

// Anchors keeps a copy of the trust-anchor ConfigMap (kubemeta.ConfigMap,
// key kubemeta.TrustAnchorsKey) in every namespace whose pods the
// injector injects, as Istio keeps istio-ca-root-cert: a pod can mount
// only ConfigMaps of its own namespace, and skiff install creates the
// original in kubemeta.Namespace only.
//
// Ensure is called by the webhook before it answers with a patch; Run
// ensures every enabled namespace at start, then re-reads File every
// Interval and, when it changed (an anchor rotation), updates the copy in
// every namespace ensured so far and every enabled one. Namespaces whose
// last Ensure failed are retried at each read. Copies are found by name,
// never listed, so the ClusterRole needs no list or watch of ConfigMaps.
// A copy is created with the part-of label and ManagedByLabel=Injector;
// an existing one (a hand-made copy too) only has its TrustAnchorsKey
// replaced, its other keys and labels are left alone. Make it with
// NewAnchors; it is safe for concurrent use.
type Anchors struct {
	cfg    AnchorsConfig
	log    *slog.Logger
	copies *prometheus.CounterVec

	check   sync.Mutex // serializes Check
	lastErr string     // the read error last logged, "" when the file was read

	mu      sync.Mutex
	current string          // the file's anchors
	ensured map[string]bool // namespaces Ensure ran for: true when the last one failed
}

var _ AnchorsPublisher = (*Anchors)(nil)

// Results counted by skiff_injector_anchors_copies_total{result}.
const (
	copyCreated = "created"
	copyUpdated = "updated"
	copyFailed  = "failed"
)

// NewAnchors checks cfg, reads cfg.File and returns an Anchors. Its
// counter, registered on cfg.Registerer, is
//
//	skiff_injector_anchors_copies_total{result="created|updated|failed"}
func NewAnchors(cfg AnchorsConfig) (*Anchors, error) {
	if cfg.Client == nil || cfg.File == "" {
		return nil, errors.New("trust-anchor copies: AnchorsConfig needs a Client and a File")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultAnchorsInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultEnsureTimeout
	}
	b, err := readAnchors(cfg.File)
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Anchors{
		cfg: cfg,
		log: log.With("component", "injector-anchors"),
		copies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_injector_anchors_copies_total",
			Help: "Writes of the trust-anchor ConfigMap " + kubemeta.ConfigMap + " into the namespaces of injected pods: created, updated (the anchors changed), failed.",
		}, []string{"result"}),
		current: string(b),
		ensured: map[string]bool{},
	}
	for _, r := range []string{copyCreated, copyUpdated, copyFailed} {
		a.copies.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(a.copies); err != nil {
			return nil, fmt.Errorf("trust-anchor copies: metrics: %w", err)
		}
	}
	return a, nil
}

// readAnchors reads a trust-anchor file: one or more PEM certificates and
// nothing else (a half-written or wrong file is not copied anywhere).
func readAnchors(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	rest, n := b, 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("trust anchors %s: a %s block: want certificates only", name, block.Type)
		}
		n++
	}
	if n == 0 || len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("trust anchors %s: want PEM certificates and nothing else", name)
	}
	return b, nil
}

func (a *Anchors) anchors() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}

// Ensure makes the copy in namespace ns hold the current anchors:
// created when missing, its TrustAnchorsKey updated when different,
// untouched (no write) when equal. It returns an error naming ns; one
// that wraps ErrAnchorsMissing when the ConfigMap could not be read or
// created, so that it may not be there. kube-system and the control
// plane's namespace (which holds the original) are never written.
func (a *Anchors) Ensure(ctx context.Context, ns string) error {
	if inject.NeverInjected(ns) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	for {
		want := a.anchors()
		err := a.ensure(ctx, ns, want)
		a.mu.Lock()
		a.ensured[ns] = err != nil
		again := err == nil && a.current != want // rotated meanwhile: our write may be the older
		a.mu.Unlock()
		if err != nil {
			a.copies.WithLabelValues(copyFailed).Inc()
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
		if !again {
			return nil
		}
	}
}

func (a *Anchors) ensure(ctx context.Context, ns, want string) error {
	cms := a.cfg.Client.CoreV1().ConfigMaps(ns)
	var result string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		result = ""
		cm, err := cms.Get(ctx, kubemeta.ConfigMap, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = cms.Create(ctx, a.copyFor(ns, want), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) { // another injector replica, just now
				return apierrors.NewConflict(corev1.Resource("configmaps"), kubemeta.ConfigMap, err)
			}
			if err != nil {
				return fmt.Errorf("%w: creating it: %w", ErrAnchorsMissing, err)
			}
			result = copyCreated
			return nil
		case err != nil:
			return fmt.Errorf("%w: reading it: %w", ErrAnchorsMissing, err)
		case cm.Data[kubemeta.TrustAnchorsKey] == want:
			return nil
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[kubemeta.TrustAnchorsKey] = want
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsConflict(err) {
				return err
			}
			return fmt.Errorf("updating ConfigMap %s: %w", kubemeta.ConfigMap, err)
		}
		result = copyUpdated
		return nil
	})
	if err != nil {
		return err
	}
	if result != "" {
		a.copies.WithLabelValues(result).Inc()
		a.log.Info("trust anchors copied", "namespace", ns, "configmap", kubemeta.ConfigMap, "result", result)
	}
	return nil
}

// copyFor is a new copy of the anchors ConfigMap for namespace ns.
func (a *Anchors) copyFor(ns, anchors string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      kubemeta.ConfigMap,
			Namespace: ns,
			Labels:    map[string]string{kubemeta.PartOfLabel: kubemeta.PartOf, kubemeta.ManagedByLabel: kubemeta.Injector},
		},
		Data: map[string]string{kubemeta.TrustAnchorsKey: anchors},
	}
}

// namespaces are those ensured so far (only those whose last Ensure
// failed, when failedOnly) and, unless failedOnly, the enabled ones.
func (a *Anchors) namespaces(failedOnly bool) ([]string, error) {
	a.mu.Lock()
	set := map[string]bool{}
	for ns, failed := range a.ensured {
		if failed || !failedOnly {
			set[ns] = true
		}
	}
	a.mu.Unlock()
	var err error
	if !failedOnly && a.cfg.Namespaces != nil {
		var enabled []string
		if enabled, err = a.cfg.Namespaces.EnabledNamespaces(); err != nil {
			err = fmt.Errorf("listing the enabled namespaces: %w", err)
		}
		for _, ns := range enabled {
			set[ns] = true
		}
	}
	return slices.Sorted(maps.Keys(set)), err
}

// ensureAll ensures each of the namespaces, logging each failure.
func (a *Anchors) ensureAll(ctx context.Context, failedOnly bool) error {
	nss, err := a.namespaces(failedOnly)
	errs := []error{err}
	for _, ns := range nss {
		if ctx.Err() != nil {
			break
		}
		if err := a.Ensure(ctx, ns); err != nil {
			a.log.Warn("trust anchors not copied; retried at the next read", "namespace", ns, "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// EnsureAll ensures the copy in every enabled namespace and every one
// ensured before (Run does at start, once the namespaces are listed).
func (a *Anchors) EnsureAll(ctx context.Context) error { return a.ensureAll(ctx, false) }

// Check reads File once. When it changed, every copy (EnsureAll's
// namespaces) is brought up to date; otherwise only the namespaces whose
// last Ensure failed are tried again. It returns whether the file
// changed, and what failed. A file that does not read as PEM
// certificates is logged once and the last anchors kept.
func (a *Anchors) Check(ctx context.Context) (bool, error) {
	a.check.Lock()
	defer a.check.Unlock()
	b, err := readAnchors(a.cfg.File)
	if err != nil {
		if msg := err.Error(); msg != a.lastErr {
			a.lastErr = msg
			a.log.Warn("trust anchors not re-read; the copies keep the last ones", "err", err)
		}
		return false, err
	}
	a.lastErr = ""
	a.mu.Lock()
	changed := a.current != string(b)
	a.current = string(b)
	a.mu.Unlock()
	if changed {
		a.log.Info("trust anchors changed; updating the copies", "file", a.cfg.File)
	}
	return changed, a.ensureAll(ctx, !changed)
}

// Run ensures every enabled namespace, then calls Check every Interval
// until ctx ends, and returns nil then. Call it once the namespace
// informer has synced.
func (a *Anchors) Run(ctx context.Context) error {
	a.EnsureAll(ctx)
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		a.Check(ctx)
	}
}
