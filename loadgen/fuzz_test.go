package loadgen_test

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/skiff-mesh/skiff/loadgen"
)

// sampleResult is a small Result as a run writes it, histograms included.
func sampleResult(tb testing.TB) *loadgen.Result {
	tb.Helper()
	enc := func(values ...int64) string {
		h := hdrhistogram.New(1, 60_000_000, 3)
		for _, v := range values {
			if err := h.RecordValue(v); err != nil {
				tb.Fatal(err)
			}
		}
		b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
		if err != nil {
			tb.Fatal(err)
		}
		return string(b)
	}
	return &loadgen.Result{
		Protocol: "http1", Target: "http://127.0.0.1:8080/", Method: "GET",
		Connections: 4, MaxInFlight: 100, Pacer: "Constant{10 hits/1s}",
		Started:   time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		DurationS: 2, WarmUpS: 0, TimeoutS: 5, ElapsedS: 2.01,
		Requests: 20, Success: 19, SuccessRate: 0.95, Dropped: 1, ScheduledRate: 10, AchievedRate: 9.5,
		Latency:     loadgen.Latency{Count: 19, Min: 800, Mean: 1000.5, StdDev: 100, P50: 1000, P90: 1100, P99: 1500, P999: 1500, Max: 1500, HDR: enc(800, 1000, 1500)},
		SendLag:     loadgen.Latency{Count: 19, Min: 1, Mean: 2, P50: 2, P90: 3, P99: 5, P999: 5, Max: 5, HDR: enc(1, 2, 5)},
		StatusCodes: map[string]int64{"200": 18, "503": 1, "none": 1},
		Errors:      map[string]int64{"503 Service Unavailable": 1, "dropped": 1},
		Series: []loadgen.Second{
			{Second: 0, Requests: 10, Success: 10, P50US: 1000, P99US: 1500, MaxUS: 1500, HDR: enc(1000, 1500)},
			{Second: 1, Requests: 10, Success: 9, Errors: 1, Dropped: 1},
		},
	}
}

// FuzzDecodeResult feeds arbitrary JSON to DecodeResult (a result file
// handed to skiff or another tool). An error says it is about decoding a
// result. A decoded Result encodes and decodes to an equal one, its
// histograms decode or say why not, and what prints them does not fail on
// it.
func FuzzDecodeResult(f *testing.F) {
	var buf bytes.Buffer
	if err := sampleResult(f).EncodeJSON(&buf); err != nil {
		f.Fatal(err)
	}
	good := buf.String()
	for _, s := range []string{
		good,
		strings.Replace(good, `"protocol"`, `"protocol_name"`, 1),      // unknown field
		strings.Replace(good, `"requests": 20`, `"requests": "20"`, 1), // wrong type
		strings.Replace(good, `"hdr": "`, `"hdr": "HISTFAAAA`, 1),      // corrupt histogram
		strings.Replace(good, `"started": "2026-03-01T12:00:00Z"`, `"started": "2026-03-01T13:00:00+01:00"`, 1),
		good[:len(good)/2],
		good + "trailing",
		`{}`, `null`, `[]`, `{"series": [{"second": -1, "hdr": ""}]}`, `{"status_codes": {"200": 1e3}}`,
		`{"latency_us": {"count": 9223372036854775807}}`, `{"success_rate": 1e309}`, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := loadgen.DecodeResult(strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "loadgen: decoding result: ") {
				t.Fatalf("error %q does not say it is about decoding a result", err)
			}
			return
		}
		var out bytes.Buffer
		if err := r.EncodeJSON(&out); err != nil {
			t.Fatalf("a decoded result does not encode: %v", err)
		}
		back, err := loadgen.DecodeResult(&out)
		if err != nil {
			t.Fatalf("encoded result does not decode: %v\n%s", err, out.String())
		}
		if !reflect.DeepEqual(r, back) {
			t.Fatalf("encode then decode changed the result:\n%+v\n%+v", r, back)
		}
		hists := []func() (*hdrhistogram.Histogram, error){r.Latency.Histogram, r.SendLag.Histogram}
		for _, s := range r.Series {
			hists = append(hists, s.Histogram)
		}
		for _, hist := range hists {
			h, err := hist()
			if err != nil {
				if !strings.HasPrefix(err.Error(), "loadgen: decoding HDR histogram: ") {
					t.Fatalf("histogram error %q does not say what it is about", err)
				}
				continue
			}
			if h != nil {
				if err := loadgen.WritePercentiles(io.Discard, h); err != nil {
					t.Fatalf("WritePercentiles: %v", err)
				}
			}
		}
		if err := r.WriteHistogramLog(io.Discard); err != nil {
			t.Fatalf("WriteHistogramLog: %v", err)
		}
	})
}
