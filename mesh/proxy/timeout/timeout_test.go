package timeout

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func TestParseGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"1S", time.Second, ""},
		{"300m", 300 * time.Millisecond, ""},
		{"99999999n", 99999999 * time.Nanosecond, ""},
		{"2H", 2 * time.Hour, ""},
		{"99999999H", MaxGRPCTimeout, ""},
		{"0m", 0, ""},
		{"", 0, "want 1 to 8 digits and a unit"},
		{"S", 0, "want 1 to 8 digits and a unit"},
		{"123456789S", 0, "want 1 to 8 digits and a unit"},
		{"1s", 0, `unit 's' is not H, M, S, m, u or n`},
		{"-1S", 0, `'-' is not a digit`},
		{"1.5S", 0, `'.' is not a digit`},
		{strings.Repeat("9", 100) + "S", 0, "…"},
	} {
		got, err := ParseGRPCTimeout(tc.in)
		if tc.err == "" && (err != nil || got != tc.want) {
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrGRPCTimeout)) {
			t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.err)
		}
	}
}

func FuzzParseGRPCTimeout(f *testing.F) {
	for _, s := range []string{"1S", "300m", "99999999H", "", "1s", "-1S", "00000000n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, err := ParseGRPCTimeout(v)
		if err != nil {
			if d != 0 || !errors.Is(err, ErrGRPCTimeout) || len(err.Error()) > 200 {
				t.Fatalf("%q: %v, %v", v, d, err)
			}
			return
		}
		if d < 0 || d > MaxGRPCTimeout {
			t.Fatalf("%q: %v out of [0, %v]", v, d, MaxGRPCTimeout)
		}
	})
}

// The request's deadline is the earlier of the route's and the client's;
// an attempt ends at its own timeout or the deadline, whichever is first,
// and none starts after the deadline.
func TestDeadlineAndAttempt(t *testing.T) {
	r := Route{Request: 300 * time.Millisecond, BackendRequest: 100 * time.Millisecond}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := r.Deadline(t0, 0); !d.Equal(t0.Add(300 * time.Millisecond)) {
		t.Errorf("route deadline %v", d)
	}
	if d := r.Deadline(t0, 50*time.Millisecond); !d.Equal(t0.Add(50 * time.Millisecond)) {
		t.Errorf("the client's shorter deadline: %v", d)
	}
	if d := r.Deadline(t0, time.Second); !d.Equal(t0.Add(300 * time.Millisecond)) {
		t.Errorf("the client's longer deadline: %v", d)
	}
	if d := (Route{}).Deadline(t0, 0); !d.IsZero() {
		t.Errorf("no timeout at all: %v", d)
	}
	dl := r.Deadline(t0, 0)
	if end, ok := r.Attempt(t0, dl); !ok || !end.Equal(t0.Add(100*time.Millisecond)) {
		t.Errorf("first attempt ends %v %v", end, ok)
	}
	if end, ok := r.Attempt(t0.Add(250*time.Millisecond), dl); !ok || !end.Equal(dl) {
		t.Errorf("a late attempt ends at the deadline: %v %v", end, ok)
	}
	if _, ok := r.Attempt(dl, dl); ok {
		t.Error("an attempt may not start at the deadline")
	}
	if end, ok := (Route{}).Attempt(t0, time.Time{}); !ok || !end.IsZero() {
		t.Errorf("no bound: %v %v", end, ok)
	}
	for _, bad := range []Route{{Request: -1}, {BackendRequest: -1}, {Request: time.Second, BackendRequest: 2 * time.Second}} {
		if bad.Validate() == nil {
			t.Errorf("%+v valid", bad)
		}
	}
}
