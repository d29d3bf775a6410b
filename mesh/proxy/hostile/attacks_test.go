package hostile

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/skiff-mesh/skiff/internal/testwait"
)

// h2conn is a raw HTTP/2 client connection: the frames an attacker
// writes, not what a well-behaved client library would.
type h2conn struct {
	net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	mu   sync.Mutex
}

func dialH2(addr string) (*h2conn, error) {
	c, err := dialFrom(attackerIP, addr)
	if err != nil {
		return nil, err
	}
	h := &h2conn{Conn: c, fr: http2.NewFramer(c, c)}
	h.enc = hpack.NewEncoder(&h.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		c.Close()
		return nil, err
	}
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}); err != nil {
		c.Close()
		return nil, err
	}
	// Drain whatever the server sends (SETTINGS, responses, RST_STREAM,
	// GOAWAY) so that its writes never block.
	go func() {
		for {
			f, err := h.fr.ReadFrame()
			if err != nil {
				return
			}
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				h.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		}
	}()
	return h, nil
}

// headers encodes a request's header block.
func (h *h2conn) headers(method, authority, path string, extra ...string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hbuf.Reset()
	h.enc.WriteField(hpack.HeaderField{Name: ":method", Value: method})
	h.enc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
	h.enc.WriteField(hpack.HeaderField{Name: ":authority", Value: authority})
	h.enc.WriteField(hpack.HeaderField{Name: ":path", Value: path})
	for i := 0; i+1 < len(extra); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return bytes.Clone(h.hbuf.Bytes())
}

func (h *h2conn) write(f func(*http2.Framer) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return f(h.fr)
}

// TestRapidReset: HEADERS then RST_STREAM, thousands of times, on a few
// connections (CVE-2023-44487). Each reset must free its request at once.
func TestRapidReset(t *testing.T) {
	tg := start(t)
	n := size(2000, 5000)
	underAttack(t, tg, tg.inbound, func(stop <-chan struct{}) {
		repeat(stop, func() {
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() {
					h, err := dialH2(tg.inbound)
					if err != nil {
						return
					}
					defer h.Close()
					for i := range n / 2 {
						id := uint32(2*i + 1)
						block := h.headers("GET", service, "/?delay=50ms")
						if h.write(func(fr *http2.Framer) error {
							if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
								return err
							}
							return fr.WriteRSTStream(id, http2.ErrCodeCancel)
						}) != nil {
							return // the server may end an abusive connection
						}
					}
				})
			}
			wg.Wait()
		})
	})
}

// TestStalledH2Bodies: streams that announce a body and never send it,
// 1,000 per connection, held open. They used to take every request slot.
func TestStalledH2Bodies(t *testing.T) {
	tg := start(t)
	underAttack(t, tg, tg.inbound, func(stop <-chan struct{}) {
		for range 2 {
			h, err := dialH2(tg.inbound)
			if err != nil {
				t.Error(err)
				return
			}
			defer h.Close()
			for i := range 1000 {
				block := h.headers("POST", service, "/echo", "content-length", "100")
				if h.write(func(fr *http2.Framer) error {
					return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: block, EndHeaders: true})
				}) != nil {
					break
				}
			}
		}
		<-stop
	})
	t.Logf("requests refused by the shares: connection %.0f, client %.0f",
		tg.metric(t, `request_rejected_total{direction="inbound",reason="connection_share"}`),
		tg.metric(t, `request_rejected_total{direction="inbound",reason="client_share"}`))
}

// TestStalledH1Bodies: connections that send 3 of 100 announced body
// bytes and stop, 2,100 of them. They used to take every request slot and
// drive RSS from 12 to 66 MB.
func TestStalledH1Bodies(t *testing.T) {
	tg := start(t)
	n := size(1000, 2100)
	underAttack(t, tg, tg.inbound, func(stop <-chan struct{}) {
		opened, release := hold(n, tg.inbound, func(c net.Conn) error {
			_, err := fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\nabc", service)
			return err
		})
		defer release()
		t.Logf("stalled connections opened: %d of %d", opened, n)
		<-stop
	})
}

// TestSlowloris: connections that send their headers a byte at a time
// and never finish. Each used to cost about 17 KB for up to 30 s.
func TestSlowloris(t *testing.T) {
	tg := start(t)
	n := size(2000, 5000)
	underAttack(t, tg, tg.inbound, func(stop <-chan struct{}) {
		opened, release := hold(n, tg.inbound, func(c net.Conn) error {
			_, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nX-Slow: a", service)
			return err
		})
		defer release()
		t.Logf("slow connections opened: %d of %d", opened, n)
		<-stop
	})
}

// TestHeaderFlood: connections sending header blocks at the limit over
// HTTP/1.1, and endless CONTINUATION sequences over HTTP/2.
func TestHeaderFlood(t *testing.T) {
	tg := start(t)
	big := strings.Repeat("x", 60<<10)
	underAttack(t, tg, tg.inbound, func(stop <-chan struct{}) {
		repeat(stop, func() {
			var wg sync.WaitGroup
			for range size(50, 200) {
				wg.Go(func() {
					c, err := dialFrom(attackerIP, tg.inbound)
					if err != nil {
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(testwait.Timeout))
					br := bufio.NewReader(c)
					for range 5 {
						if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n", service, big); err != nil {
							return
						}
						resp, err := http.ReadResponse(br, nil)
						if err != nil {
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				})
			}
			for range 4 {
				wg.Go(func() {
					h, err := dialH2(tg.inbound)
					if err != nil {
						return
					}
					defer h.Close()
					block := h.headers("GET", service, "/", "x-big", strings.Repeat("y", 16<<10))
					h.write(func(fr *http2.Framer) error {
						if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:1]}); err != nil {
							return err
						}
						for range 2000 {
							if err := fr.WriteContinuation(1, false, block[1:]); err != nil {
								return err
							}
						}
						return nil
					})
				})
			}
			wg.Wait()
		})
	})
}

// TestOverload: 3,000 concurrent requests against a 300 ms backend. The
// ones beyond the proxy's bounds must be refused at once, not queued
// (503s used to take 0.5-1.6 s to come back, with VmHWM at 121 MB), and
// a client on another address keeps being served.
func TestOverload(t *testing.T) {
	tg := start(t)
	n := size(1500, 3000)
	var mu sync.Mutex
	var refused, served []time.Duration
	codes := map[string]int{}
	tr := &http.Transport{
		DialContext:         func(_ context.Context, _, a string) (net.Conn, error) { return dialFrom(attackerIP, a) },
		MaxIdleConnsPerHost: n,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: testwait.Timeout}
	underAttack(t, tg, tg.inbound, func(stop <-chan struct{}) {
		repeat(stop, func() {
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					req, _ := http.NewRequest("GET", "http://"+tg.inbound+"/?delay=300ms", nil)
					req.Host = service
					begin := time.Now()
					resp, err := c.Do(req)
					took := time.Since(begin)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil: // a connection refused at the cap
						codes["error"]++
						refused = append(refused, took)
						return
					case resp.StatusCode == http.StatusServiceUnavailable:
						refused = append(refused, took)
					case resp.StatusCode == http.StatusOK:
						served = append(served, took)
					}
					codes[fmt.Sprint(resp.StatusCode)]++
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				})
			}
			wg.Wait()
		})
	})
	t.Logf("outcomes %v; refused p50 %v p90 %v; served p50 %v", codes, percentile(refused, 0.5), percentile(refused, 0.9), percentile(served, 0.5))
	// Refusals must not wait for the backend: compared with the served
	// requests of the same run, each of which waited 300 ms for it.
	if len(refused) > 0 && len(served) > 0 && percentile(refused, 0.5) >= percentile(served, 0.5) {
		t.Errorf("refusals were queued: median %v, no faster than the served requests' %v", percentile(refused, 0.5), percentile(served, 0.5))
	}
}

// TestAuthorityFlood: tens of thousands of distinct Host values, as fast
// as an HTTP/2 client with 32 requests in flight sends them. The proxy
// used to keep an entry and a discovery watcher for each: after 10,000,
// every new authority failed with 502 and the watchers never ended.
func TestAuthorityFlood(t *testing.T) {
	tg := start(t)
	n := size(12000, 20000)
	tr := &http.Transport{
		Protocols:   new(http.Protocols),
		DialContext: func(_ context.Context, _, addr string) (net.Conn, error) { return dialFrom(attackerIP, addr) },
	}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: testwait.Timeout}
	var round int
	underAttack(t, tg, tg.outbound, func(stop <-chan struct{}) {
		repeat(stop, func() {
			round++
			next := make(chan int)
			var wg sync.WaitGroup
			for range 32 {
				wg.Go(func() {
					for i := range next {
						req, _ := http.NewRequest("GET", "http://"+tg.outbound+"/", nil)
						req.Host = fmt.Sprintf("random-%d-%d.example", round, i)
						if resp, err := c.Do(req); err == nil {
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
						}
					}
				})
			}
			for i := range n { // a whole round, past the old 10,000 cap
				next <- i
			}
			close(next)
			wg.Wait()
		})
	})
	if got := tg.metric(t, "outbound_authorities "); got > 1 {
		t.Errorf("%.0f authorities are still watched after the flood; only the well-behaved client's service should be", got)
	}
	// A service asked for the first time after the flood is served.
	req, _ := http.NewRequest("GET", "http://"+tg.outbound+"/", nil)
	req.Host = lateService
	resp, err := (&http.Client{Timeout: testwait.Timeout}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a known service asked for after the flood: %d %s", resp.StatusCode, resp.Header.Get("Skiff-Error"))
	}
}
