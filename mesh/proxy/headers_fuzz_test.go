package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// headerMesh is the two-hop path (outbound, inbound, application) that
// FuzzProxyHeaders sends through: started once per fuzzing process, since
// every input is a request, not a configuration.
var headerMesh struct {
	once  sync.Once
	entry string
	err   error
}

// seenRequest is what the application reports of a request it received.
type seenRequest struct {
	Proto  string
	Header http.Header
}

func startHeaderMesh(t testing.TB) string {
	headerMesh.once.Do(func() {
		// The application speaks what its clients do: HTTP/1.1 and h2c.
		app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			json.NewEncoder(w).Encode(seenRequest{Proto: r.Proto, Header: r.Header})
		}))
		app.Config.Protocols = new(http.Protocols)
		app.Config.Protocols.SetHTTP1(true)
		app.Config.Protocols.SetUnencryptedHTTP2(true)
		app.Start()
		in, err := New(Config{OutboundAddr: "-", InboundAddr: "127.0.0.1:0", AdminAddr: "-", InboundForward: app.Listener.Addr().String()})
		if err != nil {
			headerMesh.err = err
			return
		}
		src := endpoint.NewStatic(map[string][]endpoint.Endpoint{svcHTTP: {{Addr: in.Addr("inbound").String(), Meshed: true}}})
		out, err := New(Config{OutboundAddr: "127.0.0.1:0", InboundAddr: "-", AdminAddr: "-", Endpoints: src})
		if err != nil {
			headerMesh.err = err
			return
		}
		// They serve until the test process ends: each fuzz input is
		// its own test, and the first one's context ends with it.
		go in.Run(context.Background())
		go out.Run(context.Background())
		waitReady(t, in)
		waitReady(t, out)
		headerMesh.entry = "http://" + out.Addr("outbound").String()
	})
	if headerMesh.err != nil {
		t.Fatal(headerMesh.err)
	}
	return headerMesh.entry
}

// hopByHop are the fields a proxy must not forward (RFC 9110 §7.6.1),
// with what the client names in Connection.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// fuzzHeaders turns fuzz bytes into a header set a client library will
// send: names are tokens, values visible ASCII, a few names chosen from
// the ones a proxy treats specially.
func fuzzHeaders(data []byte) http.Header {
	special := []string{"Connection", "Keep-Alive", "Te", "Skiff-Orig-Proto", "Skiff-Client-Id", "Skiff-Error", "X-Forwarded-For", "Via", "Cookie", "X-A", "X-B"}
	h := http.Header{}
	for len(data) >= 3 && len(h) < 12 {
		ctl, n := data[0], int(data[1]%24)
		data = data[2:]
		n = min(n, len(data))
		raw := data[:n]
		data = data[n:]
		var name string
		if ctl%3 == 0 {
			name = special[int(ctl/3)%len(special)]
		} else {
			name = "X-" + token(raw[:len(raw)/2], "F")
		}
		value := visible(raw[len(raw)/2:])
		if name == "Connection" {
			// Name some fields, existing or not, as hop-by-hop.
			value = strings.Join([]string{"X-" + token(raw, "A"), "keep-alive", "X-B"}[:1+int(ctl)%3], ", ")
		}
		if name == "Te" {
			// The one value HTTP/2 allows, once (net/http's server
			// rejects anything else as malformed, rightly).
			h.Set(name, "trailers")
			continue
		}
		h.Add(name, value)
	}
	return h
}

func token(b []byte, fallback string) string {
	var s strings.Builder
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			s.WriteByte(c)
		}
	}
	if s.Len() == 0 {
		return fallback
	}
	return s.String()
}

func visible(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		if c > ' ' && c < 0x7f {
			s.WriteByte(c)
		}
	}
	return s.String()
}

// FuzzProxyHeaders sends requests with fuzzed headers over HTTP/1.1 and
// h2c through two proxies (HTTP/1.1 crosses the hop as HTTP/2 and is
// turned back) and checks what the application sees: its client's
// protocol; every end-to-end field intact; no hop-by-hop field, none the
// client named in Connection; and never Skiff-Orig-Proto or
// Skiff-Client-Id, whatever the client wrote.
func FuzzProxyHeaders(f *testing.F) {
	f.Add([]byte("\x00\x05abcde\x01\x04wxyz"), false)
	f.Add([]byte("\x0c\x08origproto\x0f\x06client"), true)
	f.Add([]byte("\x03\x02hi\x02\x06x-keep"), false)
	f.Fuzz(func(t *testing.T, data []byte, h2 bool) {
		entry := startHeaderMesh(t)
		hdr := fuzzHeaders(data)
		var c *http.Client
		if h2 {
			c = h2cClient(t)
		} else {
			c = h1Client(t)
		}
		req, _ := http.NewRequest("GET", entry+"/", nil)
		req.Host = svcHTTP
		for k, vs := range hdr {
			req.Header[k] = slices.Clone(vs)
		}
		resp, err := c.Do(req)
		if err != nil {
			return // the client library refused the request: nothing reached the proxy
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d %q for headers %q", resp.StatusCode, resp.Header.Get(ErrorHeader), hdr)
		}
		var seen seenRequest
		if err := json.NewDecoder(resp.Body).Decode(&seen); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]; seen.Proto != want {
			t.Errorf("the application saw %s, want the client's %s", seen.Proto, want)
		}
		named := map[string]bool{}
		for _, v := range hdr.Values("Connection") {
			for f := range strings.SplitSeq(v, ",") {
				named[textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(f))] = true
			}
		}
		for _, k := range []string{OrigProtoHeader, ClientIDHeader} {
			if v := seen.Header.Values(k); len(v) > 0 {
				t.Errorf("the application got %s: %q", k, v)
			}
		}
		for _, k := range hopByHop {
			if k == "Te" && seen.Header.Get("Te") == "trailers" {
				continue // the one Te value a proxy may pass on
			}
			if v := seen.Header.Values(k); len(v) > 0 && k != "Connection" || k == "Connection" && len(v) > 0 && v[0] != "close" {
				t.Errorf("hop-by-hop %s reached the application: %q", k, v)
			}
		}
		for k, vs := range hdr {
			k = textproto.CanonicalMIMEHeaderKey(k)
			if named[k] || slices.Contains(hopByHop, k) || k == OrigProtoHeader || k == ClientIDHeader {
				if named[k] && len(seen.Header.Values(k)) > 0 {
					t.Errorf("%s, named in Connection, reached the application", k)
				}
				continue
			}
			if k == "Cookie" {
				// HTTP/2 carries cookies as crumbs, joined again with
				// "; " for HTTP/1.1 (RFC 9113 §8.2.3): the same cookies,
				// and an empty Cookie has none.
				if got, want := crumbs(seen.Header.Values(k)), crumbs(vs); !slices.Equal(got, want) {
					t.Errorf("cookies: the application got %q, the client sent %q", got, want)
				}
				continue
			}
			if got := seen.Header.Values(k); !slices.Equal(got, vs) {
				t.Errorf("end-to-end %s: the application got %q, the client sent %q", k, got, vs)
			}
		}
	})
}

// crumbs splits cookie fields into their non-empty crumbs.
func crumbs(vs []string) []string {
	var out []string
	for _, v := range vs {
		for c := range strings.SplitSeq(v, ";") {
			if c = strings.TrimSpace(c); c != "" {
				out = append(out, c)
			}
		}
	}
	return out
}
