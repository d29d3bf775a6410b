package control

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// Default reconnection backoff of a [DestinationSource].
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// DestinationSource is an [endpoint.Source] over the control plane's
// Destination.Watch: one stream per watched authority, whose snapshot and
// add/remove/no-endpoints deltas it turns into full snapshots.
//
// When a stream breaks (or cannot be opened) it reconnects with
// exponential backoff and jitter, from MinBackoff to MaxBackoff, and the
// watcher keeps the last state it was given: an unreachable control plane
// never empties a watcher's endpoints. The first message of each new
// stream is a full snapshot that replaces the state. If the control plane
// cannot be reached at all, nothing is delivered (the proxy's discovery
// wait times out) and the source keeps trying.
//
// Set the exported fields before the first Watch and do not copy a
// DestinationSource after that. Conn is required; every other zero field
// takes the default stated on it.
type DestinationSource struct {
	// Conn is the control plane's connection. Required.
	Conn *Conn
	// Proxy identifies this proxy in every WatchRequest; the zero value
	// sends none.
	Proxy ProxyContext
	// MinBackoff is the wait before the first reconnection after a
	// failure. Zero means [DefaultMinBackoff].
	MinBackoff time.Duration
	// MaxBackoff caps the wait, which doubles with every failed attempt
	// and is uniform in [wait/2, wait]. Zero means [DefaultMaxBackoff].
	MaxBackoff time.Duration
	// Log receives reconnections and protocol problems; nil discards them.
	Log *slog.Logger

	// Test seams; nil means the real thing.
	sleep  func(ctx context.Context, d time.Duration) error
	random func() float64

	connects, disconnects, failures, updates atomic.Uint64
}

var _ endpoint.Source = (*DestinationSource)(nil)

// Connects is the number of Watch streams the control plane accepted.
func (s *DestinationSource) Connects() uint64 { return s.connects.Load() }

// Disconnects is the number of accepted streams that ended other than by
// their watcher's context: a server shutdown, a broken connection, an
// error status or a malformed message.
func (s *DestinationSource) Disconnects() uint64 { return s.disconnects.Load() }

// ConnectFailures is the number of attempts to open a stream that failed.
func (s *DestinationSource) ConnectFailures() uint64 { return s.failures.Load() }

// Updates is the number of Update messages received, on all streams.
func (s *DestinationSource) Updates() uint64 { return s.updates.Load() }

// Watch implements [endpoint.Source]: it blocks until ctx is done, calling
// fn on the first snapshot and on every change after it. Snapshots hold
// endpoints sorted by address in a new slice each time; Labels maps are
// shared between snapshots and must not be modified. A zone or pod the
// control plane reports is added to Labels as "zone" and "pod" unless the
// labels already have those keys.
func (s *DestinationSource) Watch(ctx context.Context, authority string, fn func(endpoint.Snapshot)) {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("authority", authority)
	w := watch{src: s, log: log, fn: fn, set: make(map[string]endpoint.Endpoint)}
	req := appendWatchRequest(nil, authority, s.Proxy)
	reconnecting(ctx, s, log, "destination watch interrupted; keeping the last endpoints and reconnecting",
		func() (bool, error) { return w.stream(ctx, req) },
		func(err error) bool {
			if StatusCode(err) != CodeInvalidArgument {
				return false
			}
			// The controller will never serve this authority (it is not
			// one: "a..b", a name too long): no such service, at once,
			// rather than a first request waiting out discovery and a
			// watch retrying for ever.
			log.Debug("destination refused the authority; taking it as unknown", "err", err)
			clear(w.set)
			w.exists = false
			w.deliver()
			return true
		})
}

// schedule is how a watch source waits between reconnections.
type schedule interface {
	backoff(attempt int) time.Duration
	wait(ctx context.Context, d time.Duration) error
}

// reconnecting runs stream until ctx ends: again after each interruption,
// after the source's backoff (which starts over once a stream received a
// message), with a warning, unless final says the error ends the watch.
func reconnecting(ctx context.Context, s schedule, log *slog.Logger, interrupted string, stream func() (bool, error), final func(error) bool) {
	attempt := 0
	for {
		received, err := stream()
		if ctx.Err() != nil || final(err) {
			return
		}
		if received {
			attempt = 0
		}
		d := s.backoff(attempt)
		attempt++
		log.Warn(interrupted, "err", err, "after", d, "attempt", attempt)
		if err := s.wait(ctx, d); err != nil {
			return
		}
	}
}

func (s *DestinationSource) backoff(attempt int) time.Duration {
	return reconnectBackoff(s.MinBackoff, s.MaxBackoff, attempt, s.random)
}

func (s *DestinationSource) wait(ctx context.Context, d time.Duration) error {
	return waitFor(ctx, d, s.sleep)
}

// reconnectBackoff is the wait of a watch after attempt consecutive
// failures (0-based): lo·2^attempt capped at hi, then uniform in
// [wait/2, wait]; zero bounds take the defaults. random, when set,
// replaces the source of jitter (a test seam).
func reconnectBackoff(lo, hi time.Duration, attempt int, random func() float64) time.Duration {
	lo, hi = cmp.Or(lo, DefaultMinBackoff), cmp.Or(hi, DefaultMaxBackoff)
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	r := rand.Float64
	if random != nil {
		r = random
	}
	return d/2 + time.Duration(r()*float64(d/2))
}

// waitFor waits d or until ctx ends; sleep, when set, waits instead (a
// test seam).
func waitFor(ctx context.Context, d time.Duration, sleep func(context.Context, time.Duration) error) error {
	if sleep != nil {
		return sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// watch is the state of one Watch call, kept across its streams.
type watch struct {
	src *DestinationSource
	log *slog.Logger
	fn  func(endpoint.Snapshot)

	set       map[string]endpoint.Endpoint
	exists    bool
	delivered bool
	last      endpoint.Snapshot
}

// stream runs one Watch stream until it ends, applying its updates. It
// reports whether any message arrived.
func (w *watch) stream(ctx context.Context, req []byte) (bool, error) {
	st, err := w.src.Conn.NewStream(ctx, methodWatch, req)
	if err != nil {
		if ctx.Err() == nil {
			w.src.failures.Add(1)
		}
		return false, err
	}
	defer st.Close()
	w.src.connects.Add(1)
	w.log.Debug("destination watch connected")
	first := true
	for {
		msg, err := st.Recv()
		if err != nil {
			if ctx.Err() == nil {
				w.src.disconnects.Add(1)
			}
			return !first, err
		}
		w.src.updates.Add(1)
		u, err := decodeUpdate(msg)
		if err != nil {
			if ctx.Err() == nil {
				w.src.disconnects.Add(1)
			}
			return !first, statusf(CodeInternal, "destination: %v", err)
		}
		if first && u.kind != kindSnapshot && u.kind != kindNoEndpoints {
			// The contract says a stream starts with a snapshot. Applying
			// a delta to what the previous stream left is the best we can do.
			w.log.Warn("destination stream did not start with a snapshot; applying the update to the previous state")
		}
		first = false
		if w.apply(u) {
			w.deliver()
		}
	}
}

// apply applies u to the set and reports whether it is one the watcher
// should hear about (any member of the oneof this client knows).
func (w *watch) apply(u update) bool {
	switch u.kind {
	case kindSnapshot:
		clear(w.set)
		w.add(u.endpoints)
		w.exists = u.exists || len(w.set) > 0
	case kindAdd:
		w.add(u.endpoints)
		w.exists = w.exists || len(w.set) > 0
	case kindRemove:
		for _, a := range u.addresses {
			delete(w.set, a)
		}
	case kindNoEndpoints:
		clear(w.set)
		w.exists = u.exists
	default:
		return false // a kind from a newer control plane
	}
	return true
}

func (w *watch) add(eps []wireEndpoint) {
	for _, e := range eps {
		if e.address == "" {
			w.log.Warn("destination sent an endpoint without an address; ignoring it")
			continue
		}
		w.set[e.address] = toEndpoint(e)
	}
}

// deliver calls fn with the current state unless it equals what fn last
// got (a reconnection that finds nothing changed).
func (w *watch) deliver() {
	snap := endpoint.Snapshot{Exists: w.exists, Endpoints: slices.SortedFunc(maps.Values(w.set), func(a, b endpoint.Endpoint) int {
		return cmp.Compare(a.Addr, b.Addr)
	})}
	if w.delivered && equalSnapshot(snap, w.last) {
		return
	}
	w.delivered, w.last = true, snap
	w.fn(snap)
}

func equalSnapshot(a, b endpoint.Snapshot) bool {
	return a.Exists == b.Exists && slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y endpoint.Endpoint) bool {
		return x.Addr == y.Addr && x.Weight == y.Weight && x.Meshed == y.Meshed &&
			x.Identity == y.Identity && x.Protocol == y.Protocol && maps.Equal(x.Labels, y.Labels)
	})
}

func toEndpoint(e wireEndpoint) endpoint.Endpoint {
	labels := e.labels
	for _, kv := range [...][2]string{{"zone", e.zone}, {"pod", e.pod}} {
		if kv[1] == "" {
			continue
		}
		if _, ok := labels[kv[0]]; ok {
			continue
		}
		if labels == nil {
			labels = make(map[string]string, 2)
		}
		labels[kv[0]] = kv[1]
	}
	return endpoint.Endpoint{
		Addr:     e.address,
		Weight:   e.weight,
		Meshed:   e.meshed,
		Identity: e.identity,
		Protocol: toProtocol(e.protocol),
		Labels:   labels,
	}
}

// toProtocol maps a hint to the proxy's protocols; gRPC is HTTP/2 with
// prior knowledge as far as the proxy's connection handling goes. A hint
// this client does not know means "detect".
func toProtocol(h protocolHint) endpoint.Protocol {
	switch h {
	case hintHTTP1:
		return endpoint.ProtocolHTTP1
	case hintH2C, hintGRPC:
		return endpoint.ProtocolH2C
	case hintOpaque:
		return endpoint.ProtocolOpaque
	}
	return endpoint.ProtocolUnknown
}
