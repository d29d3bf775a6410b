// Package destination serves the Destination API (skiff.destination.v1):
// it tells every proxy the endpoints of the authorities it sends to, read
// from a discovery.Source it never looks behind (Kubernetes or the
// simulator's registry).
//
// # Stream
//
// A Watch stream starts with a Snapshot (the complete state; exists false
// for an authority discovery does not know). After it the server sends
// deltas computed against what this stream last sent:
//
//   - the set became empty: NoEndpoints{exists} (exists false: the
//     authority is gone);
//   - otherwise Add (new or changed endpoints, by address) then Remove
//     (addresses gone), Add first so the client's set is never empty in
//     between;
//   - or one Snapshot instead of Add and Remove when the delta would list
//     more endpoints than the new state holds (a full swap, or a slow
//     client that skipped many states): the cheaper of the two.
//
// # Fan-out
//
// All watchers of one authority share ONE subscription to the source,
// opened by the first and closed when the last leaves. The source's
// callback only stores the latest state and wakes each watcher through a
// one-slot signal; it never blocks on a watcher. Each watcher's stream
// goroutine then diffs the latest state against what it last sent, so a
// slow client (one whose HTTP/2 flow-control window is full) blocks only
// its own goroutine and skips the states it was too slow to see: memory
// per watcher is bounded by one state, shared with the other watchers.
package destination

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiff-mesh/skiff/internal/plant"
	destinationv1 "github.com/skiff-mesh/skiff/mesh/api/destination/v1"
	"github.com/skiff-mesh/skiff/mesh/discovery"
)

// Config configures a Server. Source is required; the zero value of every
// other field means its default.
type Config struct {
	// Source is where endpoints come from.
	Source discovery.Source
	// Log receives the server's events; nil discards them.
	Log *slog.Logger
	// Registerer receives the server's metrics (see NewServer); nil leaves
	// them unregistered (they are still kept).
	Registerer prometheus.Registerer
}

// Server implements destinationv1.DestinationServer over a
// discovery.Source. Make it with NewServer; stop its streams with Close.
// Safe for concurrent use.
type Server struct {
	destinationv1.UnimplementedDestinationServer

	src     discovery.Source
	log     *slog.Logger
	metrics *metrics

	closeOnce sync.Once
	closed    chan struct{}

	mu   sync.Mutex
	subs map[string]*subscription // by normalised authority
}

var _ destinationv1.DestinationServer = (*Server)(nil)

// NewServer returns a Server reading cfg.Source. Its metrics, registered
// on cfg.Registerer, are:
//
//	skiff_destination_watchers                  gauge: open Watch streams
//	skiff_destination_subscriptions             gauge: source subscriptions (one per watched authority)
//	skiff_destination_updates_sent_total{kind}  counter: messages sent (snapshot, add, remove, no_endpoints)
//	skiff_destination_propagation_seconds       histogram: from the source's callback to the update sent to one watcher
func NewServer(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errors.New("destination: Config.Source is nil; pass a discovery source (mesh/discovery/registry or kube)")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Server{
		src:     cfg.Source,
		log:     log.With("component", "destination"),
		metrics: m,
		closed:  make(chan struct{}),
		subs:    make(map[string]*subscription),
	}, nil
}

// Close ends every Watch stream with UNAVAILABLE (the proxies reconnect
// elsewhere or later) and refuses new ones the same way; call it before
// grpc.Server.GracefulStop, which otherwise waits for streams that never
// end. Close does not wait for the streams to return. Calling it again
// does nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

var errClosed = status.Error(codes.Unavailable, "destination: the server is shutting down; reconnect with backoff")

// Watch implements destinationv1.DestinationServer: see the package
// documentation for what the stream carries.
func (s *Server) Watch(req *destinationv1.WatchRequest, stream destinationv1.Destination_WatchServer) error {
	if req.GetAuthority() == "" {
		return status.Error(codes.InvalidArgument, "destination: authority is required: want host:port, e.g. web.shop.svc.cluster.local:8080")
	}
	auth, err := discovery.NormalizeAuthority(req.GetAuthority())
	if err != nil {
		return status.Error(codes.InvalidArgument, "destination: "+err.Error())
	}
	select {
	case <-s.closed:
		return errClosed
	default:
	}
	ctx := stream.Context()
	log := s.log.With("authority", auth)
	if p := req.GetProxy(); p != nil {
		log = log.With("proxy_id", p.GetProxyId(), "pod", p.GetPod(), "namespace", p.GetNamespace())
	}
	log.Debug("watch started")
	defer log.Debug("watch ended")

	s.metrics.watchers.Inc()
	defer s.metrics.watchers.Dec()
	w := &watcher{wake: make(chan struct{}, 1)}
	sub := s.subscribe(auth, w)
	defer s.unsubscribe(sub, w)

	var sent *state // what this stream last sent; nil before the snapshot
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.closed:
			return errClosed
		case <-sub.done:
			return sub.err
		case <-w.wake:
		}
		st := sub.latest()
		if st == nil || st == sent {
			continue
		}
		msgs := updates(sent, st)
		if plant.On(plant.SlowFanout) && sent != nil {
			select {
			case <-time.After(150 * time.Millisecond):
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		for _, u := range msgs {
			if err := stream.Send(u); err != nil {
				return err
			}
			s.metrics.sent.WithLabelValues(kindOf(u)).Inc()
		}
		if len(msgs) > 0 {
			s.metrics.latency.Observe(time.Since(st.at).Seconds())
		}
		sent = st
	}
}

// watcher is one Watch stream's wake-up: a one-slot signal that folds any
// number of changes into one.
type watcher struct {
	wake chan struct{}
}

func (w *watcher) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// subscription is the one source watch of an authority, shared by all
// its watchers.
type subscription struct {
	auth   string
	cancel context.CancelFunc
	done   chan struct{} // closed when the source watch ended on its own
	err    error         // why, a gRPC status; set before done is closed

	mu       sync.Mutex
	st       *state // latest; nil until the source's first snapshot
	watchers map[*watcher]struct{}
	refs     int // guarded by Server.mu, not mu
}

// state is one snapshot of the source, converted once for every watcher.
// Never modified after it is published.
type state struct {
	snap discovery.Snapshot
	eps  []*destinationv1.Endpoint // snap.Endpoints in the same order
	at   time.Time                 // when the source delivered it
}

func (sub *subscription) latest() *state {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.st
}

// subscribe adds w to auth's subscription, opening it if it is the first
// watcher, and wakes w if a state is already there.
func (s *Server) subscribe(auth string, w *watcher) *subscription {
	s.mu.Lock()
	sub := s.subs[auth]
	if sub == nil {
		ctx, cancel := context.WithCancel(context.Background())
		sub = &subscription{auth: auth, cancel: cancel, done: make(chan struct{}), watchers: make(map[*watcher]struct{})}
		s.subs[auth] = sub
		s.metrics.subscriptions.Inc()
		go s.run(ctx, sub)
	}
	sub.refs++
	s.mu.Unlock()

	sub.mu.Lock()
	sub.watchers[w] = struct{}{}
	if sub.st != nil {
		w.poke()
	}
	sub.mu.Unlock()
	return sub
}

// unsubscribe removes w and closes the subscription when it was the last
// watcher.
func (s *Server) unsubscribe(sub *subscription, w *watcher) {
	sub.mu.Lock()
	delete(sub.watchers, w)
	sub.mu.Unlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	sub.refs--
	if sub.refs == 0 {
		s.drop(sub)
	}
}

// drop forgets sub and stops its source watch; s.mu is held.
func (s *Server) drop(sub *subscription) {
	if s.subs[sub.auth] == sub {
		delete(s.subs, sub.auth)
		s.metrics.subscriptions.Dec()
	}
	sub.cancel()
}

// run is the subscription's source watch. Its callback never blocks: it
// publishes the state and pokes the watchers.
func (s *Server) run(ctx context.Context, sub *subscription) {
	err := s.src.Watch(ctx, sub.auth, func(snap discovery.Snapshot) {
		st := &state{snap: snap, eps: toProto(snap.Endpoints), at: time.Now()}
		sub.mu.Lock()
		sub.st = st
		for w := range sub.watchers {
			w.poke()
		}
		sub.mu.Unlock()
	})
	if ctx.Err() != nil {
		return // the last watcher left
	}
	switch {
	case errors.Is(err, discovery.ErrInvalidAuthority):
		sub.err = status.Error(codes.InvalidArgument, "destination: "+err.Error())
	case err != nil:
		s.log.Warn("discovery watch failed", "authority", sub.auth, "err", err)
		sub.err = status.Errorf(codes.Unavailable, "destination: discovery watch of %s failed: %v; reconnect with backoff", sub.auth, err)
	default:
		s.log.Warn("discovery watch ended early", "authority", sub.auth)
		sub.err = status.Errorf(codes.Unavailable, "destination: discovery watch of %s ended; reconnect with backoff", sub.auth)
	}
	// Forget the subscription first, so a watcher that arrives now opens a
	// new one instead of joining this dead one.
	s.mu.Lock()
	s.drop(sub)
	s.mu.Unlock()
	close(sub.done)
}

// updates returns the messages that take a client from prev (nil: nothing
// sent yet) to next.
func updates(prev, next *state) []*destinationv1.Update {
	if prev == nil {
		return []*destinationv1.Update{snapshotUpdate(next)}
	}
	if len(next.eps) == 0 {
		if len(prev.eps) == 0 && prev.snap.Exists == next.snap.Exists {
			return nil
		}
		return []*destinationv1.Update{{Kind: &destinationv1.Update_NoEndpoints{NoEndpoints: &destinationv1.NoEndpoints{Exists: next.snap.Exists}}}}
	}
	var add []*destinationv1.Endpoint
	var remove []string
	a, b := prev.snap.Endpoints, next.snap.Endpoints // both sorted by Addr
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i].Addr < b[j].Addr:
			remove = append(remove, a[i].Addr)
			i++
		case i == len(a) || b[j].Addr < a[i].Addr:
			add = append(add, next.eps[j])
			j++
		default:
			if !a[i].Equal(b[j]) {
				add = append(add, next.eps[j])
			}
			i++
			j++
		}
	}
	if len(add)+len(remove) > len(next.eps) {
		return []*destinationv1.Update{snapshotUpdate(next)}
	}
	var out []*destinationv1.Update
	if len(add) > 0 {
		out = append(out, &destinationv1.Update{Kind: &destinationv1.Update_Add{Add: &destinationv1.Add{Endpoints: add}}})
	}
	if len(remove) > 0 {
		out = append(out, &destinationv1.Update{Kind: &destinationv1.Update_Remove{Remove: &destinationv1.Remove{Addresses: remove}}})
	}
	return out
}

func snapshotUpdate(st *state) *destinationv1.Update {
	return &destinationv1.Update{Kind: &destinationv1.Update_Snapshot{Snapshot: &destinationv1.Snapshot{
		Endpoints: st.eps,
		Exists:    st.snap.Exists || len(st.eps) > 0,
	}}}
}

func kindOf(u *destinationv1.Update) string {
	switch u.GetKind().(type) {
	case *destinationv1.Update_Snapshot:
		return "snapshot"
	case *destinationv1.Update_Add:
		return "add"
	case *destinationv1.Update_Remove:
		return "remove"
	case *destinationv1.Update_NoEndpoints:
		return "no_endpoints"
	}
	return "unknown"
}

// toProto converts endpoints once per state; the messages are shared by
// every watcher's stream and never modified (concurrent marshalling of a
// message is safe).
func toProto(eps []discovery.Endpoint) []*destinationv1.Endpoint {
	out := make([]*destinationv1.Endpoint, len(eps))
	for i, e := range eps {
		out[i] = &destinationv1.Endpoint{
			Address:      e.Addr,
			Weight:       e.Weight,
			Identity:     e.Identity,
			ProtocolHint: hint(e.Protocol),
			Meshed:       e.Meshed,
			Zone:         e.Zone,
			Labels:       e.Labels, // read-only: shared with the source's snapshot
			Pod:          e.Pod,
		}
	}
	return out
}

// hint maps discovery's protocol to the API's; "grpc" is accepted in case
// a source reports it, although discovery names no such constant yet.
func hint(p discovery.Protocol) destinationv1.ProtocolHint {
	switch p {
	case discovery.ProtocolHTTP1:
		return destinationv1.ProtocolHint_PROTOCOL_HINT_HTTP1
	case discovery.ProtocolH2C:
		return destinationv1.ProtocolHint_PROTOCOL_HINT_H2C
	case "grpc":
		return destinationv1.ProtocolHint_PROTOCOL_HINT_GRPC
	case discovery.ProtocolOpaque:
		return destinationv1.ProtocolHint_PROTOCOL_HINT_OPAQUE
	}
	return destinationv1.ProtocolHint_PROTOCOL_HINT_UNSPECIFIED
}

type metrics struct {
	watchers      prometheus.Gauge
	subscriptions prometheus.Gauge
	sent          *prometheus.CounterVec
	latency       prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_destination_watchers",
			Help: "Open Destination.Watch streams.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skiff_destination_subscriptions",
			Help: "Discovery subscriptions: one per authority with at least one watcher.",
		}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_destination_updates_sent_total",
			Help: "Destination.Watch messages sent, by kind (snapshot, add, remove, no_endpoints).",
		}, []string{"kind"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "skiff_destination_propagation_seconds",
			Help:    "Time from discovery delivering a state to that state sent to one watcher.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12), // 100µs .. ~6s
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.watchers, m.subscriptions, m.sent, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("destination: register metrics: %w", err)
		}
	}
	return m, nil
}
