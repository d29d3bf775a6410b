// Package netns is the network of the harness's netns environment: each
// pod in a Linux network namespace of its own, with its own address on a
// bridge, reached through the kernel alone, and the network faults a
// scenario can apply to it (partitions, a link down, latency, jitter and
// loss). It builds the network only; running the pods' processes in it
// (Pod.Command) and the sidecar's redirect rules are the environment's.
//
// It needs Linux, root, iproute2 (ip) and iptables (Available says what
// is missing). It never changes the harness's own namespace: every link,
// address, route and rule it makes is inside namespaces it created, and
// the bridge itself sits in one, so a run can reach nothing but its own
// pods.
//
// # Topology
//
// One Net per run; its names carry the run's short id (ShortID of
// Config.RunID, here "r1"); its subnet is a /24 of 10.248.0.0/16 that no
// other live run on the machine holds (here 10.248.1.0/24):
//
//	 namespace skiffns-r1 (the switch)
//	┌──────────────────────────────────────────────────────────────┐
//	│ bridge skr1br, 10.248.1.1/24 (the gateway; forwards nothing) │
//	│      │                  │                      │             │
//	│   skr1v1             skr1v2        …        skr1vN           │
//	└──────┼──────────────────┼──────────────────────┼─────────────┘
//	       │ veth pairs       │                      │
//	┌──────┼──────────┐ ┌─────┼────────────┐ ┌───────┼───────────┐
//	│ eth0 10.248.1.2 │ │ eth0 10.248.1.3  │ │ eth0 10.248.1.N+1 │
//	│ lo              │ │ lo               │ │ lo                │
//	│ default via .1  │ │ default via .1   │ │ default via .1    │
//	└─────────────────┘ └──────────────────┘ └───────────────────┘
//	 skiffns-r1-web-0    skiffns-r1-web-1      skiffns-r1-<pod>
//
// A packet from one pod to another goes eth0 → veth → bridge → veth →
// eth0, all in the kernel; no user-space code touches it unless an
// impairment is in force on one of the two pods. The switch namespace has
// no other link and forwarding off, so a packet for an address outside the
// subnet goes no further than the gateway.
//
// The harness reaches the pods from its own process through Pod.Do,
// Pod.DialContext, Pod.Listen and Pod.ListenPacket, which create sockets
// on a thread that is inside the pod's namespace for the moment (and
// never let another goroutine run there), and runs programs in them with
// Pod.Command (ip netns exec, which keeps the program's PID).
//
// # Faults, at the packet level
//
//   - Net.Partition(a, b): a's namespace drops every packet from b, and b's
//     every packet from a (iptables filter table, chain PartitionChain,
//     hooked first in INPUT, loopback exempt; each rule commented with the
//     run and the pods). DROP, not REJECT, and on the receiving side: no
//     sender sees an error, new connections time out, established ones
//     stall and resume after the heal, as across a real partition.
//     Net.PartitionAddr cuts a pod from any prefix (a control plane's
//     address, all of a service's replicas).
//   - Net.LinkDown(p): p's eth0 administratively down; the kernel drops
//     p's routes through it, so p's own sends fail (network unreachable)
//     while its peers' packets to it vanish. Net.LinkUp (or the Undo)
//     brings it up and restores its address and default route.
//   - Net.Impair(p, Impairment): latency, jitter and loss in user space,
//     because tc netem is not available on every machine the harness runs
//     on. Rules in p's namespace (mangle table, chain ImpairChain, hooked
//     in PREROUTING for -i eth0 and POSTROUTING for -o eth0) send p's TCP
//     and UDP packets, both directions, to NFQUEUE Queue; one goroutine
//     reads them from a netlink socket opened in p's namespace (package
//     nfqueue: packet ids and the first 64 bytes, in batches), drops each
//     with probability Loss, else holds it for Latency ± Jitter in a heap
//     of release times and then accepts it (verdicts in batches). A flow's
//     packets keep their order; other flows are never held behind them.
//     Seeded: the same Seed gives the same draws. The kernel holds at most
//     Impairment.QueueLen packets; past that it drops (or, FailOpen,
//     passes) new ones. ImpairedLink.Clear removes the rules and releases
//     what is held.
//
// Each fault returns an Undo (Impair an *ImpairedLink with Clear), and
// Close undoes everything by deleting the namespaces.
//
// # Crash safety
//
// New and AddPod record what they are about to create in a state file,
// StateDir/<id>.json, before creating it, with the owner's PID and start
// time. Close deletes the namespaces (which takes their veths, the bridge,
// the rules and queues along), then the state file; it is idempotent and
// works after any partial failure or a cancelled context. If the harness
// is killed (SIGKILL, a crash), the next New, or Sweep, finds the state
// files whose owner is gone and removes what they name, kills processes
// left in those namespaces, and deletes any skiffns-* namespace that no
// state file names. Subnet locks are flocks, released by the kernel when
// a process dies. Leftovers lists what of a run still exists. Children
// started by Pod.Command die with the harness (parent-death signal).
//
// Every command (ip, iptables-restore) runs with a timeout
// (Config.CommandTimeout) and bounded output, and its errors name the
// command line and its stderr.
package netns
