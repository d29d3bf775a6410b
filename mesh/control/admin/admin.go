// Package admin is the control plane's admin HTTP handler: /live, /ready
// and /metrics (Prometheus text format from a per-instance registry).
package admin

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the admin endpoints:
//
//	/live     200 "ok" while the process runs
//	/ready    200 "ready" once SetReady(true), 503 "not ready" before and after SetReady(false)
//	/metrics  the Gatherer's metrics
//
// Make it with New. Safe for concurrent use.
type Handler struct {
	ready atomic.Bool
	mux   *http.ServeMux
}

// New returns a Handler, not ready, exposing g's metrics; nil g exposes
// an empty set.
func New(g prometheus.Gatherer) *Handler {
	if g == nil {
		g = prometheus.NewRegistry()
	}
	h := &Handler{mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	h.mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !h.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	h.mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return h
}

// SetReady sets what /ready answers.
func (h *Handler) SetReady(ready bool) { h.ready.Store(ready) }

// Ready reports what /ready answers.
func (h *Handler) Ready() bool { return h.ready.Load() }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }
