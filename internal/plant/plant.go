// Package plant holds the planted defects: switches, compiled only into
// test builds (-tags plant), that each break one feature of the proxy or
// the controller, so that the harness can show every scenario fails when
// the feature it claims to prove is broken.
//
// A release build has none of it: On is a constant false there, every
// planted branch is dead code the compiler drops, and a test checks that
// the release binaries hold no symbol of this package. In a test build the
// defect named by the SKIFF_PLANT environment variable is on; `skiff
// scenario run NAME --plant DEFECT` sets it for the processes it starts.
package plant

// Defect names one planted defect.
type Defect string

// The defects. Each breaks exactly the feature its name says.
const (
	// SlowHop makes the proxy wait 1 ms before forwarding each request.
	SlowHop Defect = "slow-hop"
	// FailSome makes the proxy answer one request in twenty with 502.
	FailSome Defect = "fail-some"
	// EWMAOff makes the balancer ignore latency (round robin).
	EWMAOff Defect = "ewma-off"
	// FailoverOff makes the proxy ignore its failover rules.
	FailoverOff Defect = "failover-off"
	// MTLSOff makes proxies talk plaintext to each other, and accept it,
	// whatever their identity and strict mode.
	MTLSOff Defect = "mtls-off"
	// UpdatesIgnored makes the proxy keep the first endpoints it learns of
	// each authority and ignore every later change.
	UpdatesIgnored Defect = "updates-ignored"
	// RenewalOff makes the proxy never renew its workload certificate.
	RenewalOff Defect = "renewal-off"
	// BundleNotReloaded makes the proxy ignore changes of its trust
	// anchors file.
	BundleNotReloaded Defect = "bundle-not-reloaded"
	// SlowFanout makes the controller's Destination API wait 150 ms before
	// sending each update.
	SlowFanout Defect = "slow-fanout"
	// RetriesOff makes the proxy retry nothing its routes say to retry
	// (connection failures before a byte was sent are still retried, as
	// without a route).
	RetriesOff Defect = "retries-off"
	// TimeoutsIgnored makes the proxy ignore its routes' timeouts and the
	// clients' grpc-timeout.
	TimeoutsIgnored Defect = "timeouts-ignored"
	// BudgetIgnored makes the proxy send every retry its routes allow,
	// whatever the retry budget says.
	BudgetIgnored Defect = "budget-ignored"
	// BreakerOff makes the proxy's circuit breakers never open.
	BreakerOff Defect = "breaker-off"
	// PolicyUpdatesIgnored makes the proxy keep the first policy the
	// control plane sends for each authority and ignore every later one.
	PolicyUpdatesIgnored Defect = "policy-updates-ignored"
	// SheddingOff makes the proxy queue requests beyond its in-flight
	// bound instead of answering them 503 at once.
	SheddingOff Defect = "shedding-off"
	// FailureBiasOff makes the balancer judge endpoints by latency alone,
	// so that one failing fast attracts traffic.
	FailureBiasOff Defect = "failure-bias-off"
	// DetectNoTimeout makes protocol detection wait for a client's first
	// bytes for as long as the client waits: no fallback to opaque TCP,
	// so a server-speaks-first protocol stalls.
	DetectNoTimeout Defect = "detect-no-timeout"
	// TCPNoFailover makes the proxy dial the endpoint its balancer picks
	// for an opaque TCP connection and give up when that fails, instead of
	// trying another endpoint.
	TCPNoFailover Defect = "tcp-no-failover"
	// ConnLeak makes the proxy keep a goroutine and 4 KiB for every client
	// connection it closes: a slow leak only a long run shows.
	ConnLeak Defect = "conn-leak"
)

// Info is a defect with what it breaks, for listings.
type Info struct {
	Defect Defect
	Breaks string
}
