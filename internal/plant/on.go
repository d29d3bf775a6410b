//go:build plant

package plant

import "os"

// Built reports whether this build has planted defects.
const Built = true

// active is the defect this process runs with, from SKIFF_PLANT.
var active = Defect(os.Getenv(EnvVar))

// EnvVar names the environment variable that turns a defect on.
const EnvVar = "SKIFF_PLANT"

// On reports whether defect d is planted in this process.
func On(d Defect) bool { return active == d }

// Active returns the planted defect, or "".
func Active() Defect { return active }

// Catalogue lists every defect with what it breaks.
var Catalogue = []Info{
	{SlowHop, "the proxy waits 1 ms before forwarding each request"},
	{FailSome, "the proxy answers one request in twenty with 502"},
	{EWMAOff, "the balancer ignores latency (round robin)"},
	{FailoverOff, "the proxy ignores its failover rules"},
	{MTLSOff, "proxies talk plaintext to each other, and accept it"},
	{UpdatesIgnored, "the proxy keeps the first endpoints of each authority and ignores later changes"},
	{RenewalOff, "the proxy never renews its workload certificate"},
	{BundleNotReloaded, "the proxy ignores changes of its trust anchors file"},
	{SlowFanout, "the controller waits 150 ms before sending each Destination update"},
	{RetriesOff, "the proxy retries nothing its routes say to retry"},
	{TimeoutsIgnored, "the proxy ignores its routes' timeouts and the clients' grpc-timeout"},
	{BudgetIgnored, "the proxy sends every retry its routes allow, whatever the budget"},
	{BreakerOff, "the proxy's circuit breakers never open"},
	{PolicyUpdatesIgnored, "the proxy keeps the first policy of each authority"},
	{SheddingOff, "the proxy queues requests beyond its in-flight bound"},
	{FailureBiasOff, "the balancer judges endpoints by latency alone"},
	{DetectNoTimeout, "protocol detection never falls back to opaque TCP: a server-speaks-first protocol stalls"},
	{TCPNoFailover, "the proxy gives up on an opaque TCP connection when its first endpoint fails"},
	{ConnLeak, "the proxy keeps a goroutine and 4 KiB for every client connection it closes"},
}
