package proxy

import (
	"io"
	"net/http"
)

// This file holds the admin server's endpoints: liveness, readiness,
// metrics and the balancer's view of each authority.

func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "live\n")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !p.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		p.metrics.WriteTo(w)
	})
	mux.HandleFunc("GET /debug/balancer", p.writeBalancers)
	if p.cfg.Pprof {
		registerPprof(mux)
	}
	return mux
}
