package route

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/retry"
	"github.com/skiff-mesh/skiff/mesh/proxy/timeout"
)

const example = `{"routes": [{
  "authority": "echo.default.svc:8080", "name": "echo",
  "timeouts": {"request": "300ms", "backendRequest": "100ms"},
  "retry": {"attempts": 2, "codes": [503], "grpcCodes": [14],
            "backoff": "25ms", "maxBackoff": "250ms", "maxBodyBytes": 65536},
  "retryConstraint": {"budget": {"percent": 20, "interval": "10s"},
                      "minRetryRate": {"count": 10, "interval": "1s"}},
  "breaker": {"consecutiveFailures": 5, "baseEjection": "1s", "maxEjection": "1m"}}]}`

func TestParseExample(t *testing.T) {
	routes, err := Parse(strings.NewReader(example))
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 {
		t.Fatalf("%d routes, want 1", len(routes))
	}
	r := routes[0]
	if r.Authority != "echo.default.svc:8080" || r.Name != "echo" ||
		r.Timeouts.Request != 300*time.Millisecond || r.Timeouts.BackendRequest != 100*time.Millisecond ||
		r.Retry.Attempts != 2 || len(r.Retry.Codes) != 1 || r.Retry.Codes[0] != 503 || r.Retry.Backoff != 25*time.Millisecond ||
		r.MaxBackoff != 250*time.Millisecond || *r.Budget.Percent != 20 || r.Budget.Interval != 10*time.Second ||
		*r.Budget.MinRetries != 10 || r.Budget.MinInterval != time.Second ||
		r.Breaker == nil || r.Breaker.ConsecutiveFailures != 5 {
		t.Fatalf("parsed %+v", r)
	}
}

// TestParseErrors: each bad file is refused with a message that says what
// and where.
func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"empty", ``, "routes file is empty"},
		{"syntax", "{\"routes\": [{\"authority\": \"a:1\",\n  \"retry\": {\"attempts\": 2,}}]}", "line 2, column"},
		{"unknown field", "{\"routes\": [{\"authority\": \"a:1\",\n  \"retri\": {}}]}", `line 2, column 17: json: unknown field "retri"`},
		{"wrong type", "{\"routes\": [{\"authority\": \"a:1\",\n  \"retry\": {\"attempts\": \"2\"}}]}", "line 2, column 28: field routes.retry.attempts"},
		{"bad duration", "{\"routes\": [{\"authority\": \"a:1\",\n  \"timeouts\": {\"request\": \"3x\"}}]}", `line 2, column 35: duration "3x"`},
		{"negative duration", `{"routes": [{"authority": "a:1", "timeouts": {"request": "-1s"}}]}`, `duration "-1s" is negative`},
		{"attempt over request", `{"routes": [{"authority": "a:1", "timeouts": {"request": "1s", "backendRequest": "2s"}}]}`, `routes[0] ("a:1"): timeouts: backendRequest 2s is longer than request 1s`},
		{"no authority", `{"routes": [{"name": "x"}]}`, `routes[0] (""): authority is empty`},
		{"bad code", `{"routes": [{"authority": "a:1", "retry": {"attempts": 1, "codes": [200]}}]}`, "retry.codes[0]: 200 is not an HTTP error status"},
		{"bad percent", `{"routes": [{"authority": "a:1", "retryConstraint": {"budget": {"percent": 101}}}]}`, "percent 101 is outside 0..100"},
		{"trailing", `{"routes": []} {}`, "more after the routes object"},
		{"huge", `{"routes": [` + strings.Repeat(" ", MaxFileBytes) + `]}`, "routes file over 4 MiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestReplaceKeepsLastValid: a set with one bad route is refused whole and
// the table keeps serving the previous set.
func TestReplaceKeepsLastValid(t *testing.T) {
	var tb Table
	if err := tb.Replace([]Route{{Authority: "a:1", Retry: retryN(2)}}); err != nil {
		t.Fatal(err)
	}
	before := tb.Lookup("a:1")
	err := tb.Replace([]Route{{Authority: "a:1"}, {Authority: "b:1", Retry: retryN(-1)}})
	if err == nil || !strings.Contains(err.Error(), `route 1 ("b:1")`) {
		t.Fatalf("error %v, want one naming route 1", err)
	}
	if tb.Lookup("a:1") != before || tb.Version() != 1 {
		t.Fatal("a refused set replaced the table")
	}
	if err := tb.Replace([]Route{{Authority: "a:1"}, {Authority: "a:1"}}); err == nil || !strings.Contains(err.Error(), "already has route 0") {
		t.Fatalf("duplicate authority: error %v", err)
	}
}

// TestReplaceKeepsBudget: a new set does not reset a route's spent budget
// unless the budget itself changed.
func TestReplaceKeepsBudget(t *testing.T) {
	var tb Table
	rs := []Route{{Authority: "a:1", Retry: retryN(1), Timeouts: tmo(time.Second)}}
	if err := tb.Replace(rs); err != nil {
		t.Fatal(err)
	}
	b := tb.Lookup("a:1").Budget()
	rs[0].Timeouts = tmo(2 * time.Second)
	if err := tb.Replace(rs); err != nil {
		t.Fatal(err)
	}
	if tb.Lookup("a:1").Budget() != b {
		t.Fatal("an unchanged budget was replaced")
	}
	pct := 50
	rs[0].Budget.Percent = &pct
	if err := tb.Replace(rs); err != nil {
		t.Fatal(err)
	}
	if tb.Lookup("a:1").Budget() == b {
		t.Fatal("a changed budget was kept")
	}
}

func TestBackoffSeeded(t *testing.T) {
	draw := func() []time.Duration {
		var tb Table
		tb.Seed(7)
		r := Route{Authority: "a:1", Retry: retryN(3)}
		r.Retry.Backoff = 10 * time.Millisecond
		if err := tb.Replace([]Route{r}); err != nil {
			t.Fatal(err)
		}
		c := tb.Lookup("a:1")
		var out []time.Duration
		for n := 1; n <= 5; n++ {
			d := c.Backoff(n)
			if d < 10*time.Millisecond || d > 100*time.Millisecond {
				t.Fatalf("backoff %d = %v, outside [base, 10×base]", n, d)
			}
			out = append(out, d)
		}
		return out
	}
	a, b := draw(), draw()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different waits: %v and %v", a, b)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(example)
	f.Add(`{"routes": [{"authority": "a:1", "timeouts": {"request": "1s"}}]}`)
	f.Fuzz(func(t *testing.T, in string) {
		routes, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		var tb Table
		// Parse checks what Replace checks, except duplicates.
		if err := tb.Replace(routes); err != nil && !strings.Contains(err.Error(), "already has route") {
			t.Fatalf("Parse accepted what Replace refuses: %v", err)
		}
	})
}

func retryN(n int) retry.Policy { return retry.Policy{Attempts: n} }

func tmo(d time.Duration) timeout.Route { return timeout.Route{Request: d} }

// TestMarshalRoundTrip: what Marshal writes, Parse reads back the same.
func TestMarshalRoundTrip(t *testing.T) {
	routes, err := Parse(strings.NewReader(example))
	if err != nil {
		t.Fatal(err)
	}
	routes = append(routes, Route{Authority: "bare:80", Name: "bare:80"})
	data, err := Marshal(routes)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !reflect.DeepEqual(back, routes) {
		t.Fatalf("round trip changed the routes:\n%+v\n%+v\n%s", routes, back, data)
	}
}
