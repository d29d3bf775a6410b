package tokenreview_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/skiff-mesh/skiff/internal/kubetest"
	"github.com/skiff-mesh/skiff/internal/testwait"
	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/control/identity/tokenreview"
)

// TestAPIServerTokenReview verifies real projected ServiceAccount tokens,
// made by the API server's TokenRequest API, with the API server's
// TokenReview: the token with the identity audience proves its
// ServiceAccount, a token for any other audience does not, nor does the
// token of a pod that has been deleted; and a controller without the RBAC
// rule the package documents gets an error naming it. It runs as an
// e2e-framework feature through the control plane's kubeconfig.
func TestAPIServerTokenReview(t *testing.T) {
	cp := kubetest.Start(t)
	const ns, sa, podName = "shop", "web", "web-0"
	var (
		client   kubernetes.Interface
		verifier *tokenreview.Verifier
		podToken string
	)
	token := func(ctx context.Context, t *testing.T, ns, sa string, audiences []string, pod *corev1.Pod) string {
		t.Helper()
		req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences:         audiences,
			ExpirationSeconds: new(int64(600)), // the shortest the API allows
		}}
		if pod != nil {
			req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
		}
		got, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, req, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenRequest for %s/%s, audiences %q: %v", ns, sa, audiences, err)
		}
		return got.Status.Token
	}

	feature := features.New("TokenReview identity").
		Setup(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			var err error
			if client, err = kubernetes.NewForConfig(cfg.Client().RESTConfig()); err != nil {
				t.Fatal(err)
			}
			if verifier, err = tokenreview.New(tokenreview.Config{Client: client}); err != nil {
				t.Fatal(err)
			}
			cp.Node(t, "node-1", nil)
			cp.Namespace(t, ns)
			if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			pod, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns},
				Spec: corev1.PodSpec{
					NodeName: "node-1", ServiceAccountName: sa,
					Containers: []corev1.Container{{Name: "web", Image: "skiff-demo"}},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// The token the kubelet would project into the proxy's volume.
			podToken = token(ctx, t, ns, sa, []string{tokenreview.DefaultAudience}, pod)
			return ctx
		}).
		Assess("the identity audience's token proves its ServiceAccount", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			id, err := verifier.Verify(ctx, podToken)
			if err != nil || id != "spiffe://cluster.local/ns/shop/sa/web" {
				t.Errorf("Verify: %q, %v; want spiffe://cluster.local/ns/shop/sa/web", id, err)
			}
			return ctx
		}).
		Assess("a token for another audience is refused", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			for _, aud := range [][]string{nil /* the API server's own */, {"vault.example"}} {
				_, err := verifier.Verify(ctx, token(ctx, t, ns, sa, aud, nil))
				if !errors.Is(err, ca.ErrInvalidToken) {
					t.Errorf("audiences %q: Verify: %v; want ErrInvalidToken", aud, err)
				}
			}
			return ctx
		}).
		Assess("a controller without the RBAC rule is told which it lacks", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			const ctrlNS, ctrlSA = "skiff", "skiff-controller"
			cp.Namespace(t, ctrlNS)
			if _, err := client.CoreV1().ServiceAccounts(ctrlNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: ctrlSA}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			// The controller authenticates with its own token, for the API
			// server's audience.
			ctrlCfg := rest.AnonymousClientConfig(cfg.Client().RESTConfig())
			ctrlCfg.BearerToken = token(ctx, t, ctrlNS, ctrlSA, nil, nil)
			ctrlClient, err := kubernetes.NewForConfig(ctrlCfg)
			if err != nil {
				t.Fatal(err)
			}
			ctrl, err := tokenreview.New(tokenreview.Config{Client: ctrlClient})
			if err != nil {
				t.Fatal(err)
			}
			_, err = ctrl.Verify(ctx, podToken)
			if !errors.Is(err, ca.ErrVerifierUnavailable) || !strings.Contains(err.Error(), "tokenreviews") {
				t.Errorf("Verify without the RBAC rule: %v; want ErrVerifierUnavailable naming the tokenreviews rule", err)
			}
			// The binding the message suggests.
			_, err = client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "skiff-controller-auth-delegator"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ctrlNS, Name: ctrlSA}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			testwait.For(t, "the controller's Verify to succeed once bound to system:auth-delegator", func() (bool, error) {
				id, err := ctrl.Verify(ctx, podToken)
				return err == nil && id == "spiffe://cluster.local/ns/shop/sa/web", err
			})
			return ctx
		}).
		Assess("the token of a deleted pod is refused", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
			if err := client.CoreV1().Pods(ns).Delete(ctx, podName, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
				t.Fatal(err)
			}
			// The API server learns of the deletion through its own cache.
			testwait.For(t, "Verify to refuse the token of the deleted pod", func() (bool, error) {
				_, err := verifier.Verify(ctx, podToken)
				return errors.Is(err, ca.ErrInvalidToken), err
			})
			return ctx
		}).
		Feature()

	testenv, err := env.NewWithContext(t.Context(), envconf.NewWithKubeConfig(cp.Kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Test(t, feature)
}
