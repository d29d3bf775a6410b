package tokenreview_test

import (
	"context"
	"errors"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/control/identity/tokenreview"
)

// The controller gives the verifier to the CA (ca.Config.Tokens). A fake
// clientset stands in for the API server here: it authenticates one
// token, bound to a pod of ServiceAccount shop/web.
func Example() {
	client := fake.NewClientset()
	client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		review := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if review.Spec.Token == "token-of-web-0" {
			review.Status = authenticationv1.TokenReviewStatus{
				Authenticated: true,
				User:          authenticationv1.UserInfo{Username: "system:serviceaccount:shop:web"},
				Audiences:     review.Spec.Audiences,
			}
		} else {
			review.Status.Error = "[invalid bearer token, service account token has expired]"
		}
		return true, review, nil
	})
	var verifier ca.TokenVerifier
	verifier, err := tokenreview.New(tokenreview.Config{Client: client, TrustDomain: "cluster.local"})
	if err != nil {
		fmt.Println(err)
		return
	}

	id, err := verifier.Verify(context.Background(), "token-of-web-0")
	fmt.Println(id, err)
	_, err = verifier.Verify(context.Background(), "an old token")
	fmt.Println(errors.Is(err, ca.ErrInvalidToken))
	// Output:
	// spiffe://cluster.local/ns/shop/sa/web <nil>
	// true
}
