package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	h := New(reg)
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/live"); code != 200 {
		t.Errorf("/live = %d", code)
	}
	if code, _ := get("/ready"); code != 503 {
		t.Errorf("/ready before SetReady = %d, want 503", code)
	}
	h.SetReady(true)
	if code, _ := get("/ready"); code != 200 {
		t.Errorf("/ready = %d, want 200", code)
	}
	h.SetReady(false)
	if code, _ := get("/ready"); code != 503 {
		t.Errorf("/ready after SetReady(false) = %d, want 503", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "skiff_test_total 1") {
		t.Errorf("/metrics = %d %q", code, body)
	}
}
