package retry

import "testing"

func TestRetryable(t *testing.T) {
	p := Policy{Attempts: 2, Codes: []int{503}, GRPCCodes: []int{14}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		method string
		n      int
		o      Outcome
		want   bool
	}{
		{"503 on GET", "GET", 1, Outcome{Status: 503}, true},
		{"500 is not listed", "GET", 1, Outcome{Status: 500}, false},
		{"beyond the attempts", "GET", 3, Outcome{Status: 503}, false},
		{"503 on POST", "POST", 1, Outcome{Status: 503}, false},
		{"connection refused on POST", "POST", 1, Outcome{ConnectFailed: true}, true},
		{"UNAVAILABLE on gRPC (POST)", "POST", 1, Outcome{Status: 200, GRPCCode: 14}, false},
		{"a success", "GET", 1, Outcome{Status: 200}, false},
	} {
		if got := p.Retryable(tc.method, tc.n, tc.o); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// gRPC is POST: the route must say non-idempotent calls may be retried.
	p.NonIdempotent = true
	if !p.Retryable("POST", 1, Outcome{Status: 200, GRPCCode: 14}) || p.Retryable("POST", 1, Outcome{Status: 200, GRPCCode: 13}) {
		t.Error("gRPC codes with NonIdempotent")
	}
	if (Policy{}).Retryable("GET", 1, Outcome{ConnectFailed: true}) {
		t.Error("the zero policy has no attempts")
	}
	if (Policy{}).BodyBound() != DefaultMaxBodyBytes || (Policy{MaxBodyBytes: 10}).BodyBound() != 10 {
		t.Error("body bound")
	}
	for _, bad := range []Policy{{Attempts: -1}, {Codes: []int{200}}, {Codes: []int{600}}, {GRPCCodes: []int{0}}, {GRPCCodes: []int{17}}, {Backoff: -1}, {MaxBodyBytes: -1}} {
		if bad.Validate() == nil {
			t.Errorf("%+v valid", bad)
		}
	}
}
