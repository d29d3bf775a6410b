// Package scenarios holds the contract between the scenario runner and the
// environments a scenario runs on (ARCHITECTURE.md, contract 7): local
// processes on loopback, pods in network namespaces, and later kind or any
// cluster. A scenario names roles — a service, a pod, the client — never
// addresses; the environment supplies them through [Environment], and the
// runner and the timeline's faults speak only to it.
//
// The catalogue, the spec and the runner live in the sub-packages; this one
// holds only types, so that every environment can implement it without
// depending on the runner.
package scenarios

import (
	"context"
	"net"

	"github.com/skiff-mesh/skiff/faultinject"
	"github.com/skiff-mesh/skiff/faultinject/httpfault"
)

// Environment is where a scenario's topology runs.
//
// Up, then any of the role and resource methods, then Close. The methods
// are safe for concurrent use.
type Environment interface {
	// Name is the environment's name as results record it: "local",
	// "netns", "kind", "kube".
	Name() string
	// Up brings the topology up: every service's pods with their
	// sidecars, the client pod and the control plane when the scenario
	// has one. It returns when every pod is ready.
	Up(ctx context.Context, services []Service) error
	// Close tears down everything Up made (processes, addresses, rules,
	// files), also after a failed or cancelled Up. Calls after the first
	// return its result.
	Close() error

	// Services returns the topology as Up normalised it.
	Services() []Service
	// Pods returns a service's pods in replica order; nil for an unknown
	// service.
	Pods(service string) []Pod
	// Pod returns a pod by name ("<service>-<i>", or the client's).
	Pod(name string) (Pod, error)
	// Client is the client pod, where the load enters the mesh.
	Client() Pod
	// Entry says how the load reaches a service: through the client's
	// sidecar (meshed) or straight to replica 0's workload (direct, the
	// unmeshed baseline of added-latency gates).
	Entry(service string, direct bool) Entry

	// Processes lists every running process, for resource sampling. A
	// killed process is not listed; a paused one is.
	Processes() []Process
	// LogPath is the log file of a pod's process of a role.
	LogPath(pod, role string) string
}

// Pod is one pod of an environment: what the timeline's faults act on
// (faultinject.Pod: kill, restart, pause, resume, the workload's
// behaviour) and what the runner reads from it. An environment's pods may
// offer more of faultinject's optional interfaces (chaos, drain, resources,
// identity rotation, network faults); a fault that needs one it lacks
// fails with an error that names it.
type Pod interface {
	faultinject.Pod
	// Service is the pod's service, "" for the client and the controller.
	Service() string
	// Ready reports whether the pod passes its readiness checks now.
	Ready() bool
	// Requests is how many workload requests the pod's application has
	// served since it started.
	Requests(ctx context.Context) (int64, error)
	// Sums returns, for each metric name, the sum over its series of the
	// pod's sidecar's counter or gauge (zero for an absent name). A name
	// may carry label matchers, as ParseSeries reads them
	// (`protocol_detect_total{protocol="tls"}`): only the series whose
	// labels include them all are summed. A name that does not parse is an
	// error.
	Sums(ctx context.Context, names ...string) ([]float64, error)
}

// Entry is where a load generator connects to reach a service.
type Entry struct {
	// Addr is the host:port to connect to.
	Addr string
	// Authority is the Host (or :authority) to send: the service's name,
	// which the client's sidecar routes by. Empty for a direct entry.
	Authority string
	// TCPAddr is where the client's sidecar takes opaque TCP for a tcp
	// service; empty otherwise.
	TCPAddr string
	// TLSAddr and BannerAddr are where the load reaches the TLS echo and
	// the server-speaks-first banner of the service's first replica
	// through the client's sidecar, which must detect the protocol of
	// each connection (an application's TLS; a client that waits for the
	// server) and pass it through untouched. Empty when the environment
	// offers no such path (without transparent interception a sidecar
	// sees only what is sent to it explicitly).
	TLSAddr, BannerAddr string
	// Dial, when not nil, opens the load's connections (for example from
	// inside the client pod's network namespace, where its sidecar's
	// interception rules apply). Nil means the harness's own network.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Service describes one service of a topology.
type Service struct {
	// Name is a DNS label (lowercase letters, digits, '-'); pods are
	// named "<Name>-<i>" from 0.
	Name string
	// Port is the service port in the authority; zero means the workload
	// port the protocol uses.
	Port int
	// Replicas is the number of pods; zero gives a service that is known
	// but never has an endpoint.
	Replicas int
	// Meshed gives every pod a sidecar.
	Meshed bool
	// Protocol is http1 (the default), h2c, grpc or tcp: the endpoints'
	// protocol hint; a tcp service is reached as opaque TCP.
	Protocol string
	// Behaviour is the workload behaviour of each replica at start (and
	// after ResetBehaviour); it may be shorter than Replicas, the rest are
	// healthy.
	Behaviour []httpfault.Behaviour
	// Failover names other services to use, in order, when this one has
	// no endpoint that accepts a connection (skiff-proxy --failover).
	Failover []string
	// Chaos puts a TCP chaos link (faultinject/chaos) in front of every
	// pod of the service, for the chaos faults.
	Chaos bool
}

// Process is one running process of a pod.
type Process struct {
	Pod  string // pod name
	Name string // "<pod>-<role>" ("controller" for the controller pod)
	Role string // RoleApp, RoleProxy or RoleController
	PID  int
}

// Process roles.
const (
	RoleApp        = "app"
	RoleProxy      = "proxy"
	RoleController = "controller"
)
