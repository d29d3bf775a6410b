// Package local is the "local" environment of the Skiff harness: a
// topology of pods run as real processes on loopback addresses, with no
// root and no setup beyond Go (see BuildBinaries).
//
// # Pods and addresses
//
// A pod is a workload (skiff-demo) and, when its service is meshed, its
// sidecar (skiff-proxy); the client pod is a sidecar alone, through which
// load generators send meshed traffic. Each Env claims one subnet
// 127.X.0.0/16 for itself, X from 10 to 250: an exclusive flock on
// os.TempDir()/skiff-local-127.X.lock (dropped by the kernel if the
// process dies) plus a check that nothing listens on 127.X.0.1, so two
// runs on one machine never collide; when every X is taken, New fails and
// says why. Addresses inside it:
//
//	client pod               127.X.0.1
//	service k, replica i     127.X.(k+1).(i+1)   (k, i from 0, in spec order)
//
// Every pod uses the same ports (Config.Ports): workload 8080 (HTTP/1.1,
// h2c, gRPC), 9000 (TCP echo), 8443 (TLS echo) and 2525 (a
// server-speaks-first banner), sidecar inbound 4143, outbound 4140,
// admin 4191; the client sidecar's TCP routes listen on 15000, 15001, …,
// one per tcp service. Pods are named "<service>-<i>"; authorities are
// "<service>.default.svc:<port>". Apps reach their sidecar explicitly (no
// iptables redirect: that is the netns environment).
//
// # Registry and readiness
//
// The Env owns services → pods and publishes each service's ready pods
// through a Registry: today FileRegistry, the --endpoints-file every
// sidecar polls (Config.EndpointsPoll, 100 ms), rewritten atomically on
// every change; a control plane's Destination API replaces it later.
// Meshed pods are listed by their sidecar's inbound address with
// ";meshed", others by their workload's address.
//
// A pod is ready when all its processes run and answer their health
// checks (skiff-demo GET /healthz, skiff-proxy GET /ready). After Up, a
// prober per pod checks every 100 ms (each check times out after 250 ms);
// two failures in a row take the pod out of the registry, one success puts
// it back, like a Kubernetes readiness probe. So a paused pod (SIGSTOP)
// leaves the registry within about a second and returns after Resume.
// Kill takes the pod out at once; a process that exits on its own is
// noticed at once too.
//
// Failover (ServiceSpec.Failover) is a routing rule of the proxy: every
// sidecar gets --failover PRIMARY=FALLBACK,..., and moves a request to a
// fallback service when no endpoint of the primary accepts it. The
// registry lists each service's own ready pods.
//
// # Lifecycle
//
// Children run in their own process groups, so a Ctrl-C reaches the
// harness only; on Linux they also die with the harness. Close (or the
// end of the context given to Up, or a failed Up) sends SIGTERM, then
// SIGKILL after Config.StopTimeout, and waits until every process is
// gone. Each process logs (JSON) to RunDir/logs/<pod>-<app|proxy>.log.
//
// The package needs Linux for its loopback addresses (elsewhere, only
// 127.0.0.1 answers without aliases) and a Unix for process groups.
package local
