package runner

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/skiff-mesh/skiff/loadgen"
	"github.com/skiff-mesh/skiff/results/assert"
	"github.com/skiff-mesh/skiff/scenarios"
	"github.com/skiff-mesh/skiff/scenarios/spec"
)

// This file holds what the runner reads from the sidecars for
// sidecar(POD:SERIES) assertions, and the entries of the loads whose
// every request is a connection of its own (tcp, tls, banner).

// sidecarFamily is the metric family of assertions on a sidecar's
// counters: sidecar(POD:SERIES).
const sidecarFamily = "sidecar("

// sidecarKeys lists the sidecar(POD:SERIES) metrics the scenario's
// assertions (and their ceilings) name, by their canonical key.
func sidecarKeys(sc *spec.Scenario) []string {
	var keys []string
	for _, a := range sc.Assertions {
		for _, expr := range []string{a.Expr, a.Ceiling} {
			if e, err := assert.Parse(expr); err == nil && strings.HasPrefix(e.Metric, sidecarFamily) {
				keys = append(keys, e.Metric)
			}
		}
	}
	return keys
}

// sidecarCounters reads each sidecar(POD:SERIES) metric at the end of the
// load: the sum of the series over POD's sidecar (the client's, a pod's,
// or every pod's of a service). A pod that is not ready then (killed,
// paused) is left out and logged; a ready one that cannot be read is an
// error, as a measurement that did not happen.
func (r *run) sidecarCounters(ctx context.Context, keys []string) (map[string]float64, error) {
	out := make(map[string]float64, len(keys))
	for _, key := range keys {
		arg := strings.TrimSuffix(strings.TrimPrefix(key, sidecarFamily), ")")
		target, series, _ := strings.Cut(arg, ":")
		var pods []scenarios.Pod
		switch {
		case target == "client":
			pods = []scenarios.Pod{r.env.Client()}
		case len(r.env.Pods(target)) > 0:
			pods = r.env.Pods(target)
		default:
			p, err := r.env.Pod(target)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			pods = []scenarios.Pod{p}
		}
		var sum float64
		for _, p := range pods {
			if !p.Ready() {
				r.log.Warn("a sidecar not ready at the end of the load is left out of a sidecar() metric", "pod", p.Name(), "metric", key)
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			v, err := p.Sums(rctx, series)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("%s: reading %s's sidecar: %w", key, p.Name(), err)
			}
			sum += v[0]
		}
		out[key] = sum
	}
	return out, nil
}

// rawEntry is where a request of protocol p goes when each is a
// connection of its own: the client sidecar's TCP route (a tcp
// service's; its workload for the direct path), or the first replica's
// TLS echo or banner through the client's sidecar; "" for other
// protocols, or where the environment offers no such path.
func rawEntry(e scenarios.Entry, p string, direct bool) string {
	switch p {
	case loadgen.ProtocolTCP:
		if direct {
			return e.Addr
		}
		return e.TCPAddr
	case loadgen.ProtocolTLS:
		return e.TLSAddr
	case loadgen.ProtocolBanner:
		return e.BannerAddr
	}
	return ""
}

// checkEntries refuses a load that needs a path the environment does not
// offer (tls and banner need transparent interception, so the client's
// sidecar sees an application's own connections): the run would fail
// every such request and say nothing about the mesh.
func (r *run) checkEntries() error {
	l := r.sc.Load
	kinds := []string{l.Protocol}
	if len(l.Mix) > 0 {
		kinds = kinds[:0]
		for _, m := range l.Mix {
			kinds = append(kinds, m.Protocol)
		}
	}
	for _, direct := range []bool{false, true} {
		if direct && !l.CompareDirect {
			continue
		}
		e := r.env.Entry(l.Target, direct)
		for _, k := range kinds {
			if k != loadgen.ProtocolTCP && k != loadgen.ProtocolTLS && k != loadgen.ProtocolBanner {
				continue
			}
			if rawEntry(e, k, direct) == "" {
				path := "meshed"
				if direct {
					path = "direct"
				}
				return fmt.Errorf("scenario %s sends %s requests, and environment %s offers no %s path for them to service %s (tls and banner need transparent interception: --env netns)",
					r.sc.Name, k, r.env.Name(), path, l.Target)
			}
		}
	}
	return nil
}
