package retry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// source is a request body for the tests: it counts the bytes and Reads
// it gives and its Closes, and can signal when a Read starts.
type source struct {
	r       io.Reader
	pulled  atomic.Int64
	reads   atomic.Int64
	closes  atomic.Int64
	closeEr error
	// entered, when not nil, receives a value as each Read starts, as
	// long as it has room.
	entered chan struct{}
}

func (s *source) Read(p []byte) (int, error) {
	s.reads.Add(1)
	select {
	case s.entered <- struct{}{}:
	default: // nil, or nobody is counting any more
	}
	n, err := s.r.Read(p)
	s.pulled.Add(int64(n))
	return n, err
}

func (s *source) Close() error {
	s.closes.Add(1)
	return s.closeEr
}

// body is n bytes that differ from one position to the next, so that a
// byte out of place shows.
func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// readChunks reads rd to its end in reads of at most size bytes.
func readChunks(rd io.Reader, size int) ([]byte, error) {
	var out []byte
	p := make([]byte, size)
	for {
		n, err := rd.Read(p)
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// mustAttempt gets a new attempt's body from r or fails the test.
func mustAttempt(t testing.TB, r *Replay) io.ReadCloser {
	t.Helper()
	rd, ok := r.Attempt()
	if !ok {
		t.Fatal("Attempt: not replayable")
	}
	return rd
}

// A body within the bound comes out whole on every attempt, whatever the
// sizes of the source's and the reader's reads.
func TestReplayWhole(t *testing.T) {
	const bound = 64
	wraps := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"plain", func(r io.Reader) io.Reader { return r }},
		{"one-byte", iotest.OneByteReader},
		{"half", iotest.HalfReader},
		{"data-with-EOF", iotest.DataErrReader},
	}
	for _, size := range []int{0, 1, bound - 1, bound} {
		for _, w := range wraps {
			for _, chunk := range []int{1, 7, 512} {
				t.Run(fmt.Sprintf("%d/%s/%d", size, w.name, chunk), func(t *testing.T) {
					want := body(size)
					src := &source{r: w.wrap(bytes.NewReader(want))}
					r := NewReplay(src, bound)
					var first io.ReadCloser
					for i := range 3 {
						rd := mustAttempt(t, r)
						if i == 0 {
							first = rd
						}
						got, err := readChunks(rd, chunk)
						if err != nil || !bytes.Equal(got, want) {
							t.Fatalf("attempt %d: %d bytes, %v; want the %d-byte body", i+1, len(got), err, size)
						}
						// io.EOF is sticky.
						if n, err := rd.Read(make([]byte, 8)); n != 0 || err != io.EOF {
							t.Errorf("attempt %d: read after the end: %d, %v", i+1, n, err)
						}
						if err := rd.Close(); err != nil {
							t.Errorf("attempt %d: Close: %v", i+1, err)
						}
					}
					if n, err := first.Read(make([]byte, 8)); n != 0 || err != ErrDetached {
						t.Errorf("the first attempt after a retry: %d, %v; want ErrDetached", n, err)
					}
					if r.Len() != int64(size) || src.pulled.Load() != int64(size) {
						t.Errorf("Len %d, source gave %d; want %d", r.Len(), src.pulled.Load(), size)
					}
					if !r.Replayable() {
						t.Error("not replayable after three attempts")
					}
					if src.closes.Load() != 0 {
						t.Error("an attempt closed the source")
					}
				})
			}
		}
	}
}

// The source is not read again once it gave io.EOF.
func TestReplayEOFSticky(t *testing.T) {
	src := &source{r: bytes.NewReader(body(10))}
	r := NewReplay(src, 10)
	for range 3 {
		if _, err := io.ReadAll(mustAttempt(t, r)); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.reads.Load(); n != 2 { // the body, then io.EOF
		t.Errorf("the source was read %d times, want 2", n)
	}
}

// A body over the bound streams through whole on the first attempt;
// Attempt fails from the byte that went over, and the copy is freed.
func TestReplayOverBound(t *testing.T) {
	for _, tc := range []struct {
		bound int64
		size  int
		chunk int
	}{
		{0, 1, 1},
		{16, 17, 1},
		{16, 17, 4},
		{16, 1000, 3},
		{16, 1000, 4096},
		{1024, 100_000, 333},
	} {
		t.Run(fmt.Sprintf("%d/%d/%d", tc.bound, tc.size, tc.chunk), func(t *testing.T) {
			want := body(tc.size)
			src := &source{r: bytes.NewReader(want)}
			r := NewReplay(src, tc.bound)
			rd := mustAttempt(t, r)
			var got []byte
			p := make([]byte, tc.chunk)
			for {
				n, err := rd.Read(p)
				got = append(got, p[:n]...)
				if over := int64(len(got)) > tc.bound; over == r.Replayable() {
					t.Fatalf("after %d bytes: Replayable %v", len(got), !over)
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(got), err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("the first attempt got %d bytes, not the %d-byte body", len(got), tc.size)
			}
			if _, ok := r.Attempt(); ok {
				t.Error("a retry granted for a body over the bound")
			}
			r.mu.Lock()
			retained := r.buf
			r.mu.Unlock()
			if retained != nil {
				t.Errorf("%d bytes still retained", len(retained))
			}
			if r.Len() != int64(tc.size) {
				t.Errorf("Len %d, want %d", r.Len(), tc.size)
			}
		})
	}
}

// Linkerd #15649: a retry starts while the first attempt's transport is
// blocked reading a body that has not fully arrived. The retry sends all
// of it, once; the first attempt gets ErrDetached.
func TestReplayRetryMidBody(t *testing.T) {
	want := body(5000)
	const head = 1200
	pr, pw := io.Pipe()
	src := &source{r: pr, entered: make(chan struct{}, 1)}
	r := NewReplay(src, int64(len(want)))
	first := mustAttempt(t, r)

	retried := make(chan struct{})
	go func() {
		pw.Write(want[:head])
		// The rest trickles in once the retry has started.
		<-retried
		for i := head; i < len(want); i += 300 {
			time.Sleep(time.Millisecond)
			pw.Write(want[i:min(i+300, len(want))])
		}
		pw.Close()
	}()

	if _, err := io.ReadFull(first, make([]byte, head)); err != nil {
		t.Fatal(err)
	}
	waitEntered(src)
	// The first attempt's transport reads on in the background and
	// blocks in the source.
	firstErr := make(chan error, 1)
	go func() {
		_, err := first.Read(make([]byte, 4096))
		firstErr <- err
	}()
	<-src.entered
	second := mustAttempt(t, r)
	close(retried)
	got, err := readChunks(second, 1000)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the retry got %d bytes, %v; want the %d-byte body", len(got), err, len(want))
	}
	if err := <-firstErr; err != ErrDetached {
		t.Errorf("the blocked first attempt: %v, want ErrDetached", err)
	}
	if n, err := first.Read(make([]byte, 10)); n != 0 || err != ErrDetached {
		t.Errorf("the first attempt read on: %d, %v; want ErrDetached", n, err)
	}
	if n := src.pulled.Load(); n != int64(len(want)) {
		t.Errorf("%d bytes pulled from the source, want %d", n, len(want))
	}
	third := mustAttempt(t, r)
	if got, _ := io.ReadAll(third); !bytes.Equal(got, want) {
		t.Errorf("a third attempt got %d bytes", len(got))
	}
}

// waitEntered empties src.entered, so that its next value means a new
// Read started.
func waitEntered(src *source) {
	for {
		select {
		case <-src.entered:
		default:
			return
		}
	}
}

// A detached attempt's pull takes the body over the bound while the
// retry is behind it: the retry still gets the whole body, no further
// retry is granted, and the copy is freed once the retry has read it.
func TestReplayDetachedPullOverBound(t *testing.T) {
	want := body(12)
	pr, pw := io.Pipe()
	src := &source{r: pr, entered: make(chan struct{}, 1)}
	r := NewReplay(src, 8)
	first := mustAttempt(t, r)
	retried := make(chan struct{})
	go func() {
		pw.Write(want[:4])
		<-retried
		pw.Write(want[4:])
		pw.Close()
	}()
	if _, err := io.ReadFull(first, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	waitEntered(src)
	firstErr := make(chan error, 1)
	go func() {
		_, err := first.Read(make([]byte, 64))
		firstErr <- err
	}()
	<-src.entered // the first attempt waits in the source
	second := mustAttempt(t, r)
	close(retried)
	if err := <-firstErr; err != ErrDetached {
		t.Fatalf("the detached attempt: %v, want ErrDetached", err)
	}
	if r.Replayable() || r.Len() != 12 {
		t.Errorf("Replayable %v with %d pulled and a bound of 8", r.Replayable(), r.Len())
	}
	got, err := readChunks(second, 5)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the retry got %q, %v; want %q", got, err, want)
	}
	r.mu.Lock()
	retained := r.buf
	r.mu.Unlock()
	if retained != nil {
		t.Errorf("%d bytes retained after the retry read them", len(retained))
	}
	if _, ok := r.Attempt(); ok {
		t.Error("a retry granted after the body went over the bound")
	}
}

// Old attempts read on, concurrently, while new ones start: the last one
// gets exactly the source's bytes. Run with -race.
func TestReplayConcurrent(t *testing.T) {
	for trial := range 50 {
		want := body(3000 + trial*37)
		pr, pw := io.Pipe()
		src := &source{r: pr}
		r := NewReplay(src, int64(len(want)))
		go func() {
			for i := 0; i < len(want); i += 97 {
				pw.Write(want[i:min(i+97, len(want))])
			}
			pw.Close()
		}()
		var wg sync.WaitGroup
		var readers []io.ReadCloser
		for a := range 4 {
			rd := mustAttempt(t, r)
			readers = append(readers, rd)
			wg.Go(func() {
				p := make([]byte, 50+a*31)
				for {
					if _, err := rd.Read(p); err != nil {
						if err != ErrDetached && err != io.EOF {
							t.Errorf("an old attempt: %v", err)
						}
						if a%2 == 0 {
							rd.Close() // as a transport does
						}
						return
					}
				}
			})
			time.Sleep(time.Duration(trial%3) * 100 * time.Microsecond)
		}
		last := mustAttempt(t, r)
		got, err := readChunks(last, 211)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("trial %d: the last attempt got %d bytes, %v; want the %d-byte body", trial, len(got), err, len(want))
		}
		wg.Wait()
		for i, rd := range readers {
			if _, err := rd.Read(make([]byte, 1)); err != ErrDetached {
				t.Errorf("trial %d: old attempt %d: %v, want ErrDetached", trial, i, err)
			}
		}
		if n := src.pulled.Load(); n != int64(len(want)) {
			t.Errorf("trial %d: %d bytes pulled, want %d", trial, n, len(want))
		}
		r.Close()
	}
}

// An attempt's Close leaves the source open for a retry; the Replay's
// closes it, once, and ends every attempt.
func TestReplayClose(t *testing.T) {
	want := body(100)
	src := &source{r: bytes.NewReader(want), closeEr: errors.New("closed")}
	r := NewReplay(src, 100)
	first := mustAttempt(t, r)
	if _, err := io.ReadFull(first, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if src.closes.Load() != 0 {
		t.Fatal("an attempt's Close closed the source")
	}
	if _, err := first.Read(make([]byte, 1)); err != ErrDetached {
		t.Errorf("read after Close: %v, want ErrDetached", err)
	}
	second := mustAttempt(t, r)
	if got, _ := io.ReadAll(second); !bytes.Equal(got, want) {
		t.Fatalf("the retry after a closed attempt got %d bytes", len(got))
	}
	for range 3 {
		if err := r.Close(); err != src.closeEr {
			t.Errorf("Close: %v, want the source's %v", err, src.closeEr)
		}
	}
	if n := src.closes.Load(); n != 1 {
		t.Errorf("the source was closed %d times, want once", n)
	}
	if _, err := second.Read(make([]byte, 1)); err != ErrDetached {
		t.Errorf("read after the Replay's Close: %v, want ErrDetached", err)
	}
	if _, ok := r.Attempt(); ok || r.Replayable() {
		t.Error("a closed body is still replayable")
	}
}

// A source that fails mid-body: the reader gets the bytes before the
// failure, then the error; no retry is granted.
func TestReplaySourceError(t *testing.T) {
	boom := errors.New("client reset")
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"error-after-data", io.MultiReader(bytes.NewReader([]byte("abcdef")), iotest.ErrReader(boom))},
		{"data-with-error", &dataErr{data: []byte("abcdef"), err: boom}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReplay(&source{r: tc.r}, 100)
			rd := mustAttempt(t, r)
			got, err := readChunks(rd, 4)
			if string(got) != "abcdef" || !errors.Is(err, boom) {
				t.Fatalf("got %q, %v; want abcdef then %v", got, err, boom)
			}
			if _, err := rd.Read(make([]byte, 4)); !errors.Is(err, boom) {
				t.Errorf("read again: %v, want %v", err, boom)
			}
			if _, ok := r.Attempt(); ok || r.Replayable() {
				t.Error("a retry granted after the source failed")
			}
		})
	}
}

// dataErr gives all its data and its error in one Read.
type dataErr struct {
	data []byte
	err  error
}

func (d *dataErr) Read(p []byte) (int, error) {
	n := copy(p, d.data)
	d.data = d.data[n:]
	if len(d.data) == 0 {
		return n, d.err
	}
	return n, nil
}

// With net/http's transport: the first attempt's dial is refused and the
// transport closes the body; the retry sends the whole body.
func TestReplayHTTPTransport(t *testing.T) {
	want := body(20_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got, err := io.ReadAll(req.Body)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("the server got %d bytes, %v", len(got), err)
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	src := &source{r: iotest.HalfReader(bytes.NewReader(want))}
	r := NewReplay(src, int64(len(want)))
	for i, url := range []string{refused, srv.URL} {
		rd, ok := r.Attempt()
		if !ok {
			t.Fatalf("attempt %d not granted", i+1)
		}
		req, _ := http.NewRequest(http.MethodPost, url, rd)
		req.ContentLength = int64(len(want))
		resp, err := tr.RoundTrip(req)
		if i == 0 {
			if err == nil {
				resp.Body.Close()
				t.Fatal("a dial to a closed port succeeded")
			}
			if src.closes.Load() != 0 {
				t.Fatal("the failed attempt closed the source")
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d", resp.StatusCode)
		}
	}
	if err := r.Close(); err != nil || src.closes.Load() != 1 {
		t.Errorf("Close: %v, %d closes", err, src.closes.Load())
	}
}

// FuzzReplay checks the invariants: an attempt that is granted reads the
// exact body; the first attempt reads it whole even over the bound; no
// more than the body is pulled from the source, and a retry is granted
// exactly when the bytes pulled are within the bound.
func FuzzReplay(f *testing.F) {
	f.Add([]byte(""), int64(0), int64(0))
	f.Add([]byte("a"), int64(0), int64(1))
	f.Add([]byte("hello, world"), int64(12), int64(5))
	f.Add([]byte("hello, world"), int64(11), int64(11))
	f.Add(body(300), int64(64), int64(63))
	f.Fuzz(func(t *testing.T, data []byte, bound, cut int64) {
		n := int64(len(data))
		bound = abs(bound) % (2*n + 2)
		cut = abs(cut) % (n + 2)
		chunk := int(abs(cut+bound)%13 + 1)
		src := &source{r: iotest.HalfReader(bytes.NewReader(data))}
		r := NewReplay(src, bound)
		defer r.Close()

		// The first attempt reads cut bytes, then a retry is asked for.
		first := mustAttempt(t, r)
		head := make([]byte, cut)
		k, err := io.ReadFull(first, head)
		if k != int(min(cut, n)) || !bytes.Equal(head[:k], data[:k]) {
			t.Fatalf("the first attempt's %d bytes: %d, %v", cut, k, err)
		}
		pulled := r.Len()
		if pulled != src.pulled.Load() || pulled > n {
			t.Fatalf("Len %d, the source gave %d, the body is %d", pulled, src.pulled.Load(), n)
		}
		second, ok := r.Attempt()
		if ok != (pulled <= bound) {
			t.Fatalf("retry granted %v with %d pulled and a bound of %d", ok, pulled, bound)
		}
		if !ok {
			rest, err := readChunks(first, chunk)
			if err != nil || !bytes.Equal(append(head[:k], rest...), data) {
				t.Fatalf("over the bound, the first attempt got %d+%d bytes, %v", k, len(rest), err)
			}
			if _, ok := r.Attempt(); ok {
				t.Fatal("a retry granted after the first attempt's end")
			}
		} else {
			if _, err := first.Read(make([]byte, 1)); err != ErrDetached {
				t.Fatalf("the first attempt after a retry: %v", err)
			}
			got, err := readChunks(second, chunk)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("the retry got %d bytes, %v; want %d", len(got), err, n)
			}
			third, ok := r.Attempt()
			if ok != (n <= bound) {
				t.Fatalf("third attempt granted %v, body %d, bound %d", ok, n, bound)
			}
			if ok {
				if got, err := readChunks(third, chunk+1); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("the third attempt got %d bytes, %v", len(got), err)
				}
			}
		}
		if src.pulled.Load() != n || r.Len() != n {
			t.Fatalf("pulled %d (Len %d) of a %d-byte body", src.pulled.Load(), r.Len(), n)
		}
		r.mu.Lock()
		retained := len(r.buf)
		r.mu.Unlock()
		if n > bound && retained != 0 {
			t.Errorf("%d bytes retained over a bound of %d", retained, bound)
		}
	})
}

// abs is |v|, with the least int64 taken as the greatest.
func abs(v int64) int64 {
	if v < 0 {
		if v = -v; v < 0 {
			return 1<<63 - 1
		}
	}
	return v
}

// BenchmarkReplay4KiB is one attempt reading a 4 KiB body through.
func BenchmarkReplay4KiB(b *testing.B) {
	data := body(4 << 10)
	src := &source{r: bytes.NewReader(nil)}
	p := make([]byte, 32<<10)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		src.r.(*bytes.Reader).Reset(data)
		rd, _ := NewReplay(src, DefaultMaxBodyBytes).Attempt()
		for {
			if _, err := rd.Read(p); err != nil {
				break
			}
		}
	}
}
