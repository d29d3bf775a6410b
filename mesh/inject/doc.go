// Package inject adds Skiff's sidecar to pods, and takes it away again:
// the one implementation behind `skiff inject`, `skiff uninject` and the
// skiff-controller inject webhook (mesh/control/injector).
//
// Config.Inject turns a Pod (a pod's or a pod template's metadata and
// spec) into a Result: the JSON patch (RFC 6902) that adds
//
//   - skiff-init, an init container running `skiff-proxy init`
//     (mesh/proxyinit) with NET_ADMIN and NET_RAW only, which redirects
//     the pod's TCP to the proxy;
//   - skiff-proxy, the proxy as a native sidecar (an init container with
//     restartPolicy Always, Kubernetes 1.29 and later) right after it, so
//     that it starts before the pod's own init containers and outlives
//     its containers, and a Job still completes;
//   - their volumes: a projected ServiceAccount token for the identity
//     audience, the trust anchors of the skiff-config ConfigMap, and the
//     init step's iptables lock;
//   - the skiff.dev/proxy-version annotation, which marks the pod as
//     injected by Skiff;
//
// and the pod it gives. Uninject gives the patch back to the pod Inject
// was given. Both are idempotent, and change nothing they do not own.
// Manifests applies either to a YAML or JSON stream of workloads.
//
// docs/injection.md says why each field is what it is.
package inject
