package httpfault

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseFaults(t *testing.T) {
	cases := []struct {
		query string
		want  Faults
	}{
		{"", Faults{}},
		{"other=1&n=3", Faults{}},
		{"status=503", Faults{Status: []StatusShare{{503, 100}}}},
		{"status=503:10,429:5", Faults{Status: []StatusShare{{503, 10}, {429, 5}}}},
		{"status=503:10&status=429:2.5", Faults{Status: []StatusShare{{503, 10}, {429, 2.5}}}},
		{"status=+503+:+10+", Faults{Status: []StatusShare{{503, 10}}}},
		{"delay=2ms:5,150us:10", Faults{Delay: Delays{{2 * time.Millisecond, 5}, {150 * time.Microsecond, 10}}}},
		{"delay=1s", Faults{Delay: Delays{{time.Second, 100}}}},
		{"size=0", Faults{SizeSet: true}},
		{"size=1024", Faults{Size: 1024, SizeSet: true}},
		{"close=5", Faults{ClosePercent: 5}},
		{"close=0.25", Faults{ClosePercent: 0.25}},
		{"close=true", Faults{ClosePercent: 100}},
		{"close=false", Faults{}},
		{"status=", Faults{}},
		{"status=500:33.3,502:33.3,503:33.4", Faults{Status: []StatusShare{{500, 33.3}, {502, 33.3}, {503, 33.4}}}},
	}
	for _, tc := range cases {
		q, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseFaults(q)
		if err != nil {
			t.Errorf("%q: %v", tc.query, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %+v, want %+v", tc.query, got, tc.want)
		}
	}
}

func TestParseFaultsErrors(t *testing.T) {
	cases := []struct{ query, param string }{
		{"status=abc", "status"},
		{"status=503:", "status"},
		{"status=503:NaN", "status"},
		{"status=503:-1", "status"},
		{"status=503:Inf", "status"},
		{"status=600", "status"},
		{"status=503,,429", "status"},
		{"status=503:60,429:41", "status"},
		{"status=" + strings.Repeat("503:1,", 65) + "503:1", "status"},
		{"delay=5", "delay"},
		{"delay=2h", "delay"},
		{"delay=1ms:x", "delay"},
		{"size=1.5", "size"},
		{"size=999999999999", "size"},
		{"close=-3", "close"},
		{"close=NaN", "close"},
	}
	for _, tc := range cases {
		q, _ := url.ParseQuery(tc.query)
		_, err := ParseFaults(q)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != tc.param || !strings.Contains(err.Error(), tc.param+"=") {
			t.Errorf("%q: err %v, want a ParamError for %s", tc.query, err, tc.param)
		}
	}
}

func TestPickShares(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	d := Delays{{time.Millisecond, 10}, {time.Second, 25.5}}
	shares := []StatusShare{{503, 10}, {429, 0.5}}
	const n = 200000
	delays := map[time.Duration]int{}
	codes := map[int]int{}
	for range n {
		delays[d.Pick(r)]++
		c, _ := PickStatus(shares, r)
		codes[c]++
	}
	within(t, "1ms", delays[time.Millisecond], n, 0.10)
	within(t, "1s", delays[time.Second], n, 0.255)
	within(t, "no delay", delays[0], n, 0.645)
	within(t, "503", codes[503], n, 0.10)
	within(t, "429", codes[429], n, 0.005)
	if Delays(nil).Pick(r) != 0 {
		t.Error("nil Delays delayed")
	}
}

func TestDelaysText(t *testing.T) {
	for in, want := range map[string]string{
		"":              "0s",
		"0s":            "0s",
		"2ms":           "2ms",
		"1ms:50,10ms:1": "1ms:50,10ms:1",
		"1500us:12.5":   "1.5ms:12.5",
		"0s:50,0s:50":   "0s",
	} {
		var d Delays
		if err := d.UnmarshalText([]byte(in)); err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := d.String(); got != want {
			t.Errorf("%q: String() = %q, want %q", in, got, want)
		}
	}
	var d Delays
	if err := d.UnmarshalText([]byte("1ms:50,2ms:60")); err == nil {
		t.Error("shares over 100 % accepted")
	}
}

func TestBehaviourJSON(t *testing.T) {
	var b Behaviour
	in := `{"latency":"10ms","latency_jitter":"2ms","error_rate":0.3,"error_status":503,"reset_rate":0.1,"max_concurrent":4}`
	if err := json.Unmarshal([]byte(in), &b); err != nil {
		t.Fatal(err)
	}
	want := Behaviour{Latency: Delays{{10 * time.Millisecond, 100}}, LatencyJitter: 2 * time.Millisecond,
		ErrorRate: 0.3, ErrorStatus: 503, ResetRate: 0.1, MaxConcurrent: 4}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("got %+v, want %+v", b, want)
	}
	out, err := json.Marshal(b)
	if err != nil || string(out) != in {
		t.Errorf("Marshal = %s, %v; want %s", out, err, in)
	}
	// Absent fields keep their value (PATCH semantics).
	if err := json.Unmarshal([]byte(`{"error_rate":0}`), &b); err != nil || b.ErrorRate != 0 || b.ResetRate != 0.1 {
		t.Errorf("merge: %+v, %v", b, err)
	}
	if err := json.Unmarshal([]byte(`{"error_rate":0,"typo":1}`), &b); err == nil || !strings.Contains(err.Error(), "typo") {
		t.Errorf("unknown field: %v", err)
	}
	if err := (Behaviour{ErrorRate: math.NaN()}).Validate(); err == nil {
		t.Error("NaN error_rate accepted")
	}
	if err := json.Unmarshal([]byte(`{"max_concurrent":-1}`), &b); err == nil || !strings.Contains(err.Error(), "max_concurrent") {
		t.Errorf("negative max_concurrent: %v", err)
	}
}

func TestLatencyJitter(t *testing.T) {
	b := Behaviour{Latency: Delays{{10 * time.Millisecond, 100}}, LatencyJitter: 2 * time.Millisecond}
	r := rand.New(rand.NewPCG(5, 6))
	lo, hi := time.Hour, time.Duration(0)
	for range 10000 {
		d := b.PickLatency(r)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 8*time.Millisecond || hi > 12*time.Millisecond || hi-lo < 3*time.Millisecond {
		t.Errorf("jittered latency spans [%s, %s], want within [8ms, 12ms] and spread", lo, hi)
	}
	b.Latency = Delays{{time.Microsecond, 100}}
	for range 1000 {
		if d := b.PickLatency(r); d < 0 {
			t.Fatalf("negative latency %s", d)
		}
	}
}

// FuzzParseFaults feeds raw query strings to the parser: it must never
// panic, errors must be ParamErrors naming a parameter, and what it accepts
// must respect the documented bounds.
func FuzzParseFaults(f *testing.F) {
	for _, s := range []string{
		"status=503:10,429:5", "delay=2ms:5,150us:10", "size=100&close=5", "close=true",
		"status=503:1e2", "delay=1h:100", "status=503:99.99999999999999,429:0.00000000000001",
		"status=,,", "delay=-0s", "size=+1", "close=0x10", "status=503:1e-400",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		got, err := ParseFaults(q)
		if err != nil {
			var pe *ParamError
			if !errors.As(err, &pe) || pe.Param == "" || !strings.Contains(err.Error(), pe.Param) {
				t.Fatalf("%q: error %v is not a ParamError naming the parameter", raw, err)
			}
			return
		}
		sum := 0.0
		for _, s := range got.Status {
			if s.Code < 200 || s.Code > 599 || !(s.Percent >= 0 && s.Percent <= 100) {
				t.Fatalf("%q: bad status share %+v", raw, s)
			}
			sum += s.Percent
		}
		if sum > 100+1e-9 {
			t.Fatalf("%q: status shares add up to %g", raw, sum)
		}
		sum = 0
		for _, d := range got.Delay {
			if d.Delay < 0 || d.Delay > MaxDelay || !(d.Percent >= 0 && d.Percent <= 100) {
				t.Fatalf("%q: bad delay share %+v", raw, d)
			}
			sum += d.Percent
		}
		if sum > 100+1e-9 {
			t.Fatalf("%q: delay shares add up to %g", raw, sum)
		}
		if got.Size < 0 || got.Size > MaxSize || !(got.ClosePercent >= 0 && got.ClosePercent <= 100) {
			t.Fatalf("%q: bad size or close in %+v", raw, got)
		}
		// The text form of accepted delays parses back to the same list.
		if len(got.Delay) > 0 {
			var back Delays
			if err := back.UnmarshalText([]byte(got.Delay.String())); err != nil {
				t.Fatalf("%q: %q does not parse back: %v", raw, got.Delay.String(), err)
			}
			if back.String() != nonZero(got.Delay).String() {
				t.Fatalf("%q: round trip %q -> %q", raw, got.Delay, back)
			}
		}
		r := rand.New(rand.NewPCG(1, 1))
		_ = got.Delay.Pick(r)
		_, _ = PickStatus(got.Status, r)
	})
}

// nonZero returns nil for a list of zero delays, as UnmarshalText does.
func nonZero(d Delays) Delays {
	for _, s := range d {
		if s.Delay != 0 {
			return d
		}
	}
	return nil
}

// within checks that got is within k binomial standard deviations of
// n·p. With a fixed seed the outcome is repeatable; k=5 keeps the test
// meaningful without making it brittle if the draw order changes.
func within(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(got)-mean) > 5*sd+1 {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f", what, got, n, mean, 5*sd+1)
	} else {
		t.Logf("%s: %d of %d (expected %.0f)", what, got, n, mean)
	}
}
