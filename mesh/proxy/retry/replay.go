package retry

import (
	"errors"
	"io"
	"sync"
)

// ErrDetached is what a request body attempt's Read returns once the body
// belongs to someone else: a later attempt took it over, the attempt's
// reader was closed, or the Replay was closed. A transport still sending
// an old attempt in the background stops there, and takes no byte the
// current attempt needs.
var ErrDetached = errors.New("retry: request body attempt detached: a later attempt or the owner took the body over")

// Replay is a request body that a retry can send again. It pulls bytes
// from the source only as the current attempt reads them, so the first
// attempt streams at once, and it keeps each byte pulled while the total
// stays within the bound, so that a later attempt reads the body again
// from its first byte.
//
// One attempt is current at a time: [Replay.Attempt] detaches the readers
// it gave before. Only the current attempt pulls from the source, so no
// byte is pulled twice, sent twice or lost (Linkerd #15649: a retry that
// starts before the body has fully arrived still sends all of it, once).
//
// Its methods and its readers' methods are safe for concurrent use. The
// zero value is not usable: make one with [NewReplay].
type Replay struct {
	// src is the incoming body. It is read outside mu (see pulling) and
	// closed once, by Close.
	src   io.ReadCloser
	bound int64

	// closeOnce makes Close close src once; closeErr is what that gave.
	closeOnce sync.Once
	closeErr  error

	mu sync.Mutex
	// wake is signalled, on mu, when a pull ends or the current attempt
	// changes, for a reader waiting for its turn to pull.
	wake sync.Cond
	// buf is the retained copy: bytes [0, len(buf)) of the body. While
	// the body is replayable len(buf) == pulled. Nil once released.
	buf []byte
	// pulled counts the bytes read from src so far.
	pulled int64
	// err is the sticky end of src: io.EOF, or the error that made the
	// body non-replayable.
	err error
	// over is set once more than bound bytes were pulled.
	over bool
	// pulling is set while a reader is in src.Read with mu released.
	pulling bool
	// closed is set by Close.
	closed bool
	// started is set by the first Attempt.
	started bool
	// cur is the current attempt's reader; nil before the first Attempt.
	cur *attempt
}

// NewReplay wraps src, an incoming request body, so that up to bound
// bytes of it can be sent again. A negative bound counts as zero: only an
// empty body is replayable then. Nothing is read until an attempt reads.
func NewReplay(src io.ReadCloser, bound int64) *Replay {
	r := &Replay{src: src, bound: max(bound, 0)}
	r.wake.L = &r.mu
	return r
}

// Attempt returns the body for a new attempt, from its first byte, and
// detaches every reader it returned before: their Reads fail with
// ErrDetached from then on. The first call always succeeds. A later one
// returns false when the body can no longer be replayed: more than the
// bound was pulled, the source failed, or the Replay was closed.
func (r *Replay) Attempt() (io.ReadCloser, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started && !r.replayable() {
		return nil, false
	}
	r.started = true
	a := &attempt{r: r}
	r.cur = a
	r.wake.Broadcast()
	return a, true
}

// Replayable says whether a retry's Attempt would succeed now.
func (r *Replay) Replayable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replayable()
}

// replayable is Replayable with mu held.
func (r *Replay) replayable() bool {
	return !r.closed && !r.over && (r.err == nil || errors.Is(r.err, io.EOF))
}

// Len is the number of bytes pulled from the source so far.
func (r *Replay) Len() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pulled
}

// Close closes the source, once: a second call returns what the first
// did. It detaches every attempt and frees the retained copy. The owner
// calls it after the last attempt; an attempt's own Close does not close
// the source.
func (r *Replay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.buf = nil
		r.wake.Broadcast()
		r.mu.Unlock()
		// Outside mu: closing src may wait for a Read in progress.
		r.closeErr = r.src.Close()
	})
	return r.closeErr
}

// dead says, with mu held, that no retry may come: the retained copy
// only serves the current attempt from now on.
func (r *Replay) dead() bool {
	return r.over || (r.err != nil && !errors.Is(r.err, io.EOF))
}

// release frees the retained copy, with mu held, once the body is dead
// and the current attempt needs no more of it. That is at once when the
// current attempt itself went over the bound; when a detached attempt's
// pull did, the current attempt is still behind and reads the copy to its
// end first.
func (r *Replay) release() {
	if r.buf == nil || !r.dead() {
		return
	}
	if c := r.cur; c == nil || c.closed || c.off >= int64(len(r.buf)) {
		r.buf = nil
	}
}

// attempt is the body as one attempt reads it.
type attempt struct {
	r *Replay
	// off is the next byte of the body this attempt reads. Guarded by
	// r.mu.
	off int64
	// closed is set by Close. Guarded by r.mu.
	closed bool
}

// detached says, with mu held, that a may no longer read.
func (a *attempt) detached() bool {
	return a.closed || a != a.r.cur || a.r.closed
}

// Read reads the retained bytes past the attempt's position, then pulls
// more from the source.
//
// The source is read with the mutex released, so a slow client blocks no
// one but the readers that need its next bytes. One reader pulls at a
// time (pulling); another that needs to pull waits for it. A reader that
// was detached while it pulled keeps nothing: the bytes it got go to the
// retained copy, for the current attempt, and it returns ErrDetached.
// Those bytes may take the copy over the bound by up to one Read's
// length; the copy is then freed when the current attempt has read it.
func (a *attempt) Read(p []byte) (int, error) {
	r := a.r
	r.mu.Lock()
	for {
		if a.detached() {
			r.mu.Unlock()
			return 0, ErrDetached
		}
		if a.off < int64(len(r.buf)) {
			n := copy(p, r.buf[a.off:])
			a.off += int64(n)
			r.release()
			r.mu.Unlock()
			return n, nil
		}
		// Here a.off == r.pulled: the copy holds all that was pulled, or
		// it was released once this attempt had read it all.
		if r.err != nil {
			err := r.err
			r.mu.Unlock()
			return 0, err
		}
		if len(p) == 0 {
			r.mu.Unlock()
			return 0, nil
		}
		if !r.pulling {
			break
		}
		r.wake.Wait()
	}
	r.pulling = true
	r.mu.Unlock()

	n, err := r.src.Read(p)
	if n < 0 || n > len(p) {
		n, err = 0, errors.New("retry: request body source returned an invalid count")
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	r.pulling = false
	r.wake.Broadcast()
	r.pulled += int64(n)
	current := !a.detached()
	switch {
	case r.closed:
		// Close freed the copy; nobody reads it again.
	case r.over:
		// Over the bound already: only the current attempt pulls, and
		// the copy is gone.
	case r.pulled <= r.bound || !current:
		// Within the bound, or a detached pull whose bytes the current
		// attempt still needs.
		r.buf = append(r.buf, p[:n]...)
		r.over = r.pulled > r.bound
	default:
		r.over = true
	}
	if err != nil {
		r.err = err
	}
	if current {
		a.off += int64(n)
	}
	r.release()
	if !current {
		return 0, ErrDetached
	}
	return n, err
}

// Close detaches the reader and leaves the source open for a retry:
// net/http's transports close a request body when an attempt fails.
func (a *attempt) Close() error {
	r := a.r
	r.mu.Lock()
	defer r.mu.Unlock()
	a.closed = true
	r.release()
	r.wake.Broadcast()
	return nil
}
