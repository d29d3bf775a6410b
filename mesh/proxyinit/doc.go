// Package proxyinit renders and applies the iptables rules of a meshed
// pod: inbound TCP is redirected to the proxy's inbound port, outbound TCP
// to its outbound port, except the proxy's own traffic, loopback, and the
// ports and CIDRs the Options skip. It is the init step of a pod, run by
// `skiff-proxy init` in the netns environment and, later, in the
// Kubernetes init container (docs/proxy-init.md).
//
// The rules live in Skiff's own chains of the nat table (SKIFF_INBOUND,
// SKIFF_INBOUND_REDIRECT, SKIFF_OUTPUT, SKIFF_OUTBOUND_REDIRECT), with one
// jump to them from PREROUTING and one from OUTPUT. [Render] writes them as
// iptables-restore input; an [Installer] reads the table with
// iptables-save, applies what is missing with iptables-restore --noflush
// (so the rest of the table is untouched, and a second apply changes
// nothing), removes them, or checks them. It runs every command through a
// [Runner]: [ExecRunner] runs processes, optionally behind a prefix such
// as `ip netns exec NS`.
package proxyinit
