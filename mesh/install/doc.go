// Package install renders Skiff's installation as Kubernetes objects,
// for skiff install | kubectl apply -f -, and the list of what to delete
// for skiff uninstall.
//
// [Render] returns typed k8s.io/api objects (the CircuitBreaker CRD,
// rendered by mesh/control/gatewayapi, as unstructured) in apply order:
//
//	Namespace skiff                  labelled and annotated skiff.dev/inject: disabled
//	CustomResourceDefinition         circuitbreakers.policy.skiff.dev ([CRDs])
//	ServiceAccount, ClusterRole,     get/list/watch Pods, Services, EndpointSlices;
//	ClusterRoleBinding               create TokenReviews; nothing else
//	ConfigMap skiff-config           the trust anchors (ca-bundle.pem)
//	Secret skiff-identity-issuer     the issuer (kubernetes.io/tls)
//	Secret skiff-injector            the webhook's serving certificate and its CA (ca.crt)
//	Service skiff-controller         gRPC, 8086
//	Service skiff-injector           443 -> the injector's 8443
//	Deployment skiff-controller      skiff-controller all and skiff-controller inject
//	MutatingWebhookConfiguration     skiff-injector, the CA bundle of the serving Secret
//
// The trust anchor and issuer are generated ([GenerateIdentity], with
// mesh/control/identity/ca) or read from the user's files
// ([LoadIdentity]); the webhook's CA and serving certificate are always
// generated. The Gateway API CRDs the mesh reads come from the Gateway API
// release, not from here (docs/kubernetes.md).
//
// [Write] encodes objects as a YAML stream or a JSON v1 List, with sorted
// keys. Rendering reads the clock through [Config.Now] and randomness from
// crypto/rand, which tests fix with testing/cryptotest.SetGlobalRandom
// (Go 1.26's key generation ignores a caller's reader), so the golden
// files under testdata are byte-stable.
package install
