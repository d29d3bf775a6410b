package scenarios

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSeries(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Series
		err  string
	}{
		{in: "tcp_open_total", want: Series{Name: "tcp_open_total"}},
		{in: `protocol_detect_total{direction="outbound",protocol="tls"}`, want: Series{Name: "protocol_detect_total", Labels: []Label{{"direction", "outbound"}, {"protocol", "tls"}}}},
		{in: `m{a="x\"y\\z\n",}`, want: Series{Name: "m", Labels: []Label{{"a", "x\"y\\z\n"}}}},
		{in: `m{}`, want: Series{Name: "m"}},
		{in: "", err: "not a metric name"},
		{in: "9lives", err: "not a metric name"},
		{in: `m{a=x}`, err: "not double-quoted"},
		{in: `m{a="x"`, err: "not closed"},
		{in: `m{a="x}`, err: "quote is not closed"},
		{in: `m{a="x"}z`, err: "after the closing brace"},
		{in: `m{a="x",a="y"}`, err: "matched twice"},
		{in: `m{="x"}`, err: "label name"},
		{in: `m{a="\t"}`, err: "unknown escape"},
	} {
		got, err := ParseSeries(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseSeries(%q) = %+v, %v; want an error about %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseSeries(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestSeriesMatch(t *testing.T) {
	tls, _ := ParseSeries(`protocol_detect_total{protocol="tls"}`)
	all, _ := ParseSeries("protocol_detect_total")
	for _, c := range []struct {
		s     Series
		line  string
		value float64
		ok    bool
	}{
		{tls, `protocol_detect_total{direction="outbound",protocol="tls"} 12`, 12, true},
		{tls, `protocol_detect_total{direction="outbound",protocol="http1"} 12`, 0, false},
		{tls, `protocol_detect_total 12`, 0, false},
		{all, `protocol_detect_total{direction="outbound",protocol="http1"} 7 1700000000`, 7, true},
		{all, `protocol_detect_total 3.5e2`, 350, true},
		{all, `protocol_detect_total_extra 1`, 0, false},
		{all, `# TYPE protocol_detect_total counter`, 0, false},
		{all, `protocol_detect_total{protocol="tls"}`, 0, false},
		{all, `protocol_detect_total{protocol="tls} 1`, 0, false},
		{all, `protocol_detect_total x`, 0, false},
		{Series{}, ` 1`, 0, false},
	} {
		v, ok := c.s.Match(c.line)
		if v != c.value || ok != c.ok {
			t.Errorf("%s.Match(%q) = %v, %v; want %v, %v", c.s, c.line, v, ok, c.value, c.ok)
		}
	}
}

// FuzzSeries: a series that parses writes back to itself; a sample line
// written from it matches it with its value; and no line, however broken,
// makes Match panic (it reads a sidecar's /metrics from the network).
func FuzzSeries(f *testing.F) {
	for _, s := range []string{"tcp_open_total", `protocol_detect_total{direction="outbound",protocol="tls"}`, `m{a="\"\\\n"}`, `m{a="x",}`, "m{"} {
		f.Add(s, `protocol_detect_total{direction="outbound",protocol="tls"} 3`)
	}
	f.Fuzz(func(t *testing.T, sel, line string) {
		s, err := ParseSeries(sel)
		s.Match(line)
		if err != nil {
			return
		}
		back, err := ParseSeries(s.String())
		if err != nil || !reflect.DeepEqual(back, s) {
			t.Fatalf("%q parsed as %+v, written %q, read back %+v, %v", sel, s, s.String(), back, err)
		}
		if v, ok := s.Match(s.String() + " 42"); !ok || v != 42 {
			t.Fatalf("%q does not match its own sample line: %v, %v", s.String(), v, ok)
		}
	})
}
