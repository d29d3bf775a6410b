package chaos

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

// chunk is what one Read returned, with when.
type chunk struct {
	buf *[]byte
	n   int
	at  time.Time
}

// pipe forwards one stream of c from src to dst through the stream's
// toxics, until the stream ends or the connection closes. A reader
// goroutine reads ahead (bounded by chunkQueue) so that waits in the
// writer delay bytes without throttling them.
func (c *conn) pipe(s Stream, src, dst *net.TCPConn) {
	l := c.l
	in := make(chan chunk, chunkQueue)
	var readErr error
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(in) // after readErr is set: the close publishes it
		var tail []byte // the end of the previous chunk, for markers split across reads
		for {
			bp := l.getBuf()
			n, err := src.Read(*bp)
			if n > 0 && len(l.cfg.Marker) > 0 {
				tail = l.scan(tail, (*bp)[:n])
			}
			if n > 0 {
				select {
				case in <- chunk{buf: bp, n: n, at: time.Now()}:
				case <-c.ctx.Done():
					l.putBuf(bp)
					return
				}
			} else {
				l.putBuf(bp)
			}
			if err != nil {
				readErr = err
				return
			}
		}
	}()

	salt := uint64(1)
	if s == Upstream {
		salt = 2
	}
	w := &writer{
		c: c, stream: s, dst: dst,
		rng:   rand.New(rand.NewPCG(mix(l.cfg.Seed^c.seq), salt)),
		timer: time.NewTimer(time.Hour),
	}
	w.timer.Stop()
	defer w.timer.Stop()
	for {
		var ch chunk
		var ok bool
		select {
		case ch, ok = <-in:
		case <-c.ctx.Done():
			return
		}
		if !ok {
			w.end(readErr)
			return
		}
		more := w.deliver(ch)
		l.putBuf(ch.buf)
		if !more {
			return
		}
	}
}

// writer applies the toxics of one stream of one connection. Its state is
// its goroutine's alone.
type writer struct {
	c      *conn
	stream Stream
	dst    *net.TCPConn
	rng    *rand.Rand
	timer  *time.Timer

	active  []*toxic // scratch: the toxics affecting this stream now
	lastSet *toxicSet
	resetAt map[*toxic]time.Time // reset_peer deadlines, from the first bytes
	sent    map[*toxic]int64     // bytes through each limit_data
	next    time.Time            // bandwidth pacing: earliest next write
}

type waitResult int

const (
	waitDone waitResult = iota
	waitCancelled
	waitChanged
)

// waitUntil sleeps until t, or until the connection ends, or until changed
// is closed (nil: never).
func (w *writer) waitUntil(t time.Time, changed <-chan struct{}) waitResult {
	d := time.Until(t)
	if d <= 0 {
		if w.c.ctx.Err() != nil {
			return waitCancelled
		}
		return waitDone
	}
	w.timer.Reset(d)
	select {
	case <-w.timer.C:
		return waitDone
	case <-w.c.ctx.Done():
		w.timer.Stop()
		return waitCancelled
	case <-changed:
		w.timer.Stop()
		return waitChanged
	}
}

// load refreshes w.active from the current snapshot and drops the state of
// toxics that are gone.
func (w *writer) load() *toxicSet {
	set := w.c.l.set.Load()
	w.active = w.active[:0]
	for _, t := range set.toxics {
		if t.stream == w.stream && w.c.l.affects(t, w.c.seq) {
			w.active = append(w.active, t)
		}
	}
	if set != w.lastSet {
		w.lastSet = set
		for t := range w.resetAt {
			if !w.c.l.has(t) {
				delete(w.resetAt, t)
			}
		}
		for t := range w.sent {
			if !w.c.l.has(t) {
				delete(w.sent, t)
			}
		}
	}
	return set
}

// deliver writes one chunk through the toxics; false means the connection
// is over.
func (w *writer) deliver(ch chunk) bool {
	data := (*ch.buf)[:ch.n]
again:
	set := w.load()

	// reset_peer holds the bytes, then resets; if it is removed meanwhile
	// the bytes go on as usual.
	for _, t := range w.active {
		k, ok := t.Kind.(ResetPeer)
		if !ok {
			continue
		}
		if w.resetAt == nil {
			w.resetAt = make(map[*toxic]time.Time)
		}
		at, ok := w.resetAt[t]
		if !ok {
			at = time.Now().Add(k.Timeout)
			w.resetAt[t] = at
		}
		switch w.waitUntil(at, set.changed) {
		case waitDone:
			w.c.l.log.Debug("reset_peer toxic resets the connection", "conn", w.c.seq, "toxic", t.Name)
			w.c.reset(w.dst)
			return false
		case waitCancelled:
			return false
		case waitChanged:
			goto again
		}
	}

	var (
		delay      time.Duration
		rate       int64 // bytes per millisecond (= KB/s); 0: unlimited
		slicer     *Slicer
		closeAfter bool
	)
	for _, t := range w.active {
		switch k := t.Kind.(type) {
		case Timeout:
			return true // blackholed: dropped
		case LimitData:
			if left := k.Bytes - w.sent[t]; int64(len(data)) > left {
				data = data[:max(left, 0)]
			}
		case Latency:
			delay += k.Latency
			if k.Jitter > 0 {
				delay += time.Duration(w.rng.Int64N(2*int64(k.Jitter)+1)) - k.Jitter
			}
		case Bandwidth:
			if rate == 0 || k.Rate < rate {
				rate = k.Rate
			}
		case Slicer:
			if slicer == nil {
				slicer = &k
			}
		}
	}
	// Count what passes each limit only once the final size is known.
	for _, t := range w.active {
		if k, ok := t.Kind.(LimitData); ok {
			if w.sent == nil {
				w.sent = make(map[*toxic]int64)
			}
			w.sent[t] += int64(len(data))
			if w.sent[t] >= k.Bytes {
				closeAfter = true
			}
		}
	}

	if delay > 0 && w.waitUntil(ch.at.Add(delay), nil) != waitDone {
		return false
	}
	for len(data) > 0 {
		n := len(data)
		if slicer != nil {
			size := slicer.AverageSize
			if v := slicer.SizeVariation; v > 0 {
				size += w.rng.IntN(2*v+1) - v
			}
			n = min(n, max(size, 1))
		}
		if rate > 0 {
			n = min(n, int(min(rate*100, bufSize))) // at most 100 ms worth
			now := time.Now()
			if w.next.Before(now) {
				w.next = now
			}
			w.next = w.next.Add(clamp(float64(n) / float64(rate) * float64(time.Millisecond)))
			if w.waitUntil(w.next, nil) != waitDone {
				return false
			}
		}
		if _, err := w.dst.Write(data[:n]); err != nil {
			w.c.close()
			return false
		}
		data = data[n:]
		if slicer != nil && slicer.Delay > 0 && len(data) > 0 {
			if w.waitUntil(time.Now().Add(slicer.Delay), nil) != waitDone {
				return false
			}
		}
	}
	if closeAfter {
		w.c.l.log.Debug("limit_data toxic closes the connection", "conn", w.c.seq, "stream", w.stream)
		w.dst.CloseWrite()
		w.c.close()
		return false
	}
	return true
}

// end finishes the stream after its source ended: a clean end of stream is
// passed on as a half-close (after any slow_close delay), an error ends
// the whole connection.
func (w *writer) end(readErr error) {
	if readErr != nil && !errors.Is(readErr, io.EOF) {
		w.c.close()
		return
	}
	w.load()
	var delay time.Duration
	for _, t := range w.active {
		if k, ok := t.Kind.(SlowClose); ok {
			delay = max(delay, k.Delay)
		}
	}
	if delay > 0 && w.waitUntil(time.Now().Add(delay), nil) != waitDone {
		return
	}
	w.dst.CloseWrite()
}

// scan counts the markers in tail+b and returns the bytes to keep for the
// next chunk (a marker may straddle two reads).
func (l *Link) scan(tail, b []byte) []byte {
	m := l.cfg.Marker
	buf := append(tail, b...)
	l.hits.Add(uint64(bytes.Count(buf, m)))
	keep := len(m) - 1
	if keep > len(buf) {
		keep = len(buf)
	}
	// Keep the tail unless it ends a marker already counted.
	rest := buf[len(buf)-keep:]
	if bytes.HasSuffix(buf, m) {
		rest = nil
	}
	return append(tail[:0], rest...)
}
