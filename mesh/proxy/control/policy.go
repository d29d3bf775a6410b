package control

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/route"
)

// PolicySource streams the route of outbound authorities from the control
// plane's Policy.WatchOutbound: one stream per watched authority, each
// message a complete policy that the source turns into a [route.Route].
//
// It reconnects as [DestinationSource] does, with the same backoff and
// jitter from MinBackoff to MaxBackoff, and the watcher keeps the last
// route it was given while the control plane is away or sends a policy
// the proxy cannot use.
//
// Set the exported fields before the first Watch and do not copy a
// PolicySource after that. Conn is required; every other zero field takes
// the default stated on it.
type PolicySource struct {
	// Conn is the control plane's connection. Required.
	Conn *Conn
	// Proxy identifies this proxy in every WatchOutboundRequest; the zero
	// value sends none.
	Proxy ProxyContext
	// MinBackoff is the wait before the first reconnection after a
	// failure. Zero means [DefaultMinBackoff].
	MinBackoff time.Duration
	// MaxBackoff caps the wait, which doubles with every failed attempt
	// and is uniform in [wait/2, wait]. Zero means [DefaultMaxBackoff].
	MaxBackoff time.Duration
	// Log receives reconnections, refused policies (Warn) and the parts of
	// policies the proxy ignores (Debug); nil discards them.
	Log *slog.Logger

	// Test seams; nil means the real thing.
	sleep  func(ctx context.Context, d time.Duration) error
	random func() float64

	connects, disconnects, failures, updates, rejected atomic.Uint64
	// unimplemented is set once the control plane has answered that it
	// has no Policy API, which is logged once.
	unimplemented atomic.Bool
}

// Connects is the number of WatchOutbound streams the control plane
// accepted.
func (s *PolicySource) Connects() uint64 { return s.connects.Load() }

// Disconnects is the number of accepted streams that ended other than by
// their watcher's context: a server shutdown, a broken connection or an
// error status.
func (s *PolicySource) Disconnects() uint64 { return s.disconnects.Load() }

// ConnectFailures is the number of attempts to open a stream that failed.
func (s *PolicySource) ConnectFailures() uint64 { return s.failures.Load() }

// Updates is the number of OutboundPolicy messages received, on all
// streams, whether applied or rejected.
func (s *PolicySource) Updates() uint64 { return s.updates.Load() }

// Rejected is the number of OutboundPolicy messages not applied because
// they were malformed or asked for what the proxy cannot do.
func (s *PolicySource) Rejected() uint64 { return s.rejected.Load() }

// Watch blocks until ctx is done. It calls fn with the route each valid
// OutboundPolicy for authority gives: a *route.Route, or nil when the
// policy asks for nothing the route package holds (the control plane's
// synthesized default: no retry, timeouts or breaker). fn is called from
// Watch's goroutine, once per valid policy, with a new Route each time;
// Route.Name is empty for the control plane's default route (metadata
// kind "default").
//
// The proxy applies one rule per authority: routes[0].rules[0], which
// must match every request, have no filter or fault and send to the
// watched authority alone. A message it cannot use (malformed, or asking
// for what the proxy cannot do) is not applied: fn is not called, the
// last valid policy stays, Rejected counts it, and a warning says what was
// wrong and where, as a field path such as
// "routes[0].rules[0].retry.http_statuses[1]: min 700 is not 100..599".
// The balancer, idle timeouts, failover lists and retry conditions this
// proxy does not know are ignored (logged at Debug, once per Watch), as
// are top-level backends, backend weights and jitters.
//
// A broken stream reconnects with backoff; fn keeps the last policy
// meanwhile. Watch returns without calling fn again when the control
// plane refuses the authority (InvalidArgument), and at once when it has
// no Policy API (Unimplemented, an older controller; logged at Info once
// per PolicySource): the proxy then runs without routes from the control
// plane for that authority.
func (s *PolicySource) Watch(ctx context.Context, authority string, fn func(*route.Route)) {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("authority", authority)
	w := policyWatch{src: s, log: log, authority: authority, fn: fn}
	req := appendWatchOutboundRequest(nil, authority, s.Proxy)
	reconnecting(ctx, s, log, "policy watch interrupted; keeping the last policy and reconnecting",
		func() (bool, error) { return w.stream(ctx, req) },
		func(err error) bool {
			switch StatusCode(err) {
			case CodeInvalidArgument:
				// The controller will never serve it (not an authority):
				// no policy, and no retry.
				log.Debug("policy refused the authority; it gets no route from the control plane", "err", err)
				return true
			case CodeUnimplemented:
				if s.unimplemented.CompareAndSwap(false, true) {
					log.Info("the control plane has no Policy API (an older controller); running without its routes", "err", err)
				} else {
					log.Debug("the control plane has no Policy API", "err", err)
				}
				return true
			}
			return false
		})
}

// backoff and wait follow the schedule DestinationSource's do.
func (s *PolicySource) backoff(attempt int) time.Duration {
	return reconnectBackoff(s.MinBackoff, s.MaxBackoff, attempt, s.random)
}

func (s *PolicySource) wait(ctx context.Context, d time.Duration) error {
	return waitFor(ctx, d, s.sleep)
}

// policyWatch is the state of one Watch call, kept across its streams.
type policyWatch struct {
	src       *PolicySource
	log       *slog.Logger
	authority string
	fn        func(*route.Route)
	logged    ignored // the ignored parts already logged
}

// stream runs one WatchOutbound stream until it ends, applying its
// policies. It reports whether any message arrived.
func (w *policyWatch) stream(ctx context.Context, req []byte) (bool, error) {
	st, err := w.src.Conn.NewStream(ctx, methodWatchOutbound, req)
	if err != nil {
		if ctx.Err() == nil {
			w.src.failures.Add(1)
		}
		return false, err
	}
	defer st.Close()
	w.src.connects.Add(1)
	w.log.Debug("policy watch connected")
	received := false
	for {
		msg, err := st.Recv()
		if err != nil {
			if ctx.Err() == nil {
				w.src.disconnects.Add(1)
			}
			return received, err
		}
		received = true
		w.src.updates.Add(1)
		rt, ign, err := decodePolicy(w.authority, msg)
		if err != nil {
			w.src.rejected.Add(1)
			w.log.Warn("policy refused; keeping the last one", "err", err)
			continue
		}
		w.note(ign)
		w.fn(rt)
	}
}

// note logs the ignored parts of a policy not logged before.
func (w *policyWatch) note(ign ignored) {
	if ign&^w.logged == 0 {
		return
	}
	for _, n := range ignoredNotes {
		if ign&n.bit != 0 && w.logged&n.bit == 0 {
			w.log.Debug(n.msg)
		}
	}
	w.logged |= ign
}
