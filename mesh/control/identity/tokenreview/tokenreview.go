package tokenreview

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-mesh/skiff/mesh/control/identity/ca"
	"github.com/skiff-mesh/skiff/mesh/proxy/identity/spiffe"
)

const (
	// DefaultAudience is the audience workload tokens must be issued for
	// when Config.Audiences is empty: the audience of the projected token
	// volume the proxy reads (see the package documentation for why it is
	// not the API server's).
	DefaultAudience = "identity.skiff.dev"
	// DefaultTrustDomain is the trust domain of the IDs returned when
	// Config.TrustDomain is empty.
	DefaultTrustDomain = "cluster.local"
	// DefaultTimeout bounds one TokenReview call when Config.Timeout is
	// zero.
	DefaultTimeout = 5 * time.Second
	// MaxTokenSize is the longest token sent to the API server, in bytes.
	// A projected ServiceAccount token is 1-2 KB; anything far larger is
	// refused before it costs an API call.
	MaxTokenSize = 16 << 10
)

// Keys and prefixes of the user a ServiceAccount token authenticates as.
const (
	saUserPrefix   = "system:serviceaccount:"
	nodeUserPrefix = "system:node:"
	// podNameExtra is set by the API server for tokens bound to a pod.
	podNameExtra = "authentication.kubernetes.io/pod-name"
)

// Config configures a [Verifier]. Only Client is required; the zero value
// of every other field means its default.
type Config struct {
	// Client creates the TokenReviews. The controller's ServiceAccount
	// needs the RBAC rule: create on authentication.k8s.io tokenreviews.
	Client kubernetes.Interface
	// TrustDomain is the trust domain of the SPIFFE IDs returned; ""
	// means DefaultTrustDomain.
	TrustDomain string
	// Audiences are the audiences a token may be issued for: the API
	// server must confirm at least one. Empty means [DefaultAudience].
	Audiences []string
	// Timeout bounds each TokenReview call (within the caller's context);
	// zero means DefaultTimeout.
	Timeout time.Duration
}

// Verifier is the TokenReview [ca.TokenVerifier]. Make it with [New]; it
// is safe for concurrent use.
type Verifier struct {
	client      kubernetes.Interface
	trustDomain string
	audiences   []string
	timeout     time.Duration
}

var _ ca.TokenVerifier = (*Verifier)(nil)

// New returns a verifier for cfg, or an error naming the field that is
// wrong.
func New(cfg Config) (*Verifier, error) {
	if cfg.Client == nil {
		return nil, errors.New("tokenreview: Config.Client is required")
	}
	v := &Verifier{client: cfg.Client, trustDomain: cfg.TrustDomain, audiences: slices.Clone(cfg.Audiences), timeout: cfg.Timeout}
	if v.trustDomain == "" {
		v.trustDomain = DefaultTrustDomain
	}
	if err := spiffe.ValidateTrustDomain(v.trustDomain); err != nil {
		return nil, fmt.Errorf("tokenreview: %w", err)
	}
	if len(v.audiences) == 0 {
		v.audiences = []string{DefaultAudience}
	}
	for _, a := range v.audiences {
		if strings.TrimSpace(a) == "" {
			return nil, fmt.Errorf("tokenreview: audiences %q: an audience must not be empty", v.audiences)
		}
	}
	if v.timeout < 0 {
		return nil, fmt.Errorf("tokenreview: timeout %s: must not be negative", v.timeout)
	}
	if v.timeout == 0 {
		v.timeout = DefaultTimeout
	}
	return v, nil
}

// Verify asks the API server to review token and returns the SPIFFE ID of
// the ServiceAccount it authenticates. Errors wrap [ca.ErrInvalidToken],
// [ca.ErrVerifierUnavailable] or ctx's error, as the package documentation
// lists; none of them contains the token.
func (v *Verifier) Verify(ctx context.Context, token string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("TokenReview: %w", err)
	}
	if token == "" {
		return "", fmt.Errorf("%w: no token; the proxy must send its pod's projected ServiceAccount token", ca.ErrInvalidToken)
	}
	if len(token) > MaxTokenSize {
		return "", fmt.Errorf("%w: token is %d bytes, the limit is %d", ca.ErrInvalidToken, len(token), MaxTokenSize)
	}
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: v.audiences}}
	callCtx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	got, err := v.client.AuthenticationV1().TokenReviews().Create(callCtx, review, metav1.CreateOptions{})
	if err != nil {
		return "", v.callError(ctx, callCtx, err)
	}
	return v.judge(&got.Status)
}

// callError classifies a failed TokenReview call: the caller's context
// error, or the API server's answer saying whose fault it is.
func (v *Verifier) callError(ctx, callCtx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("TokenReview: %w", ctxErr)
	}
	switch {
	case callCtx.Err() != nil:
		// Our own deadline, not the caller's: the cause is quoted, not
		// wrapped, so that it does not match the caller's
		// context.DeadlineExceeded.
		return fmt.Errorf("%w: the Kubernetes API did not answer the TokenReview within %s: %s", ca.ErrVerifierUnavailable, v.timeout, err.Error())
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w: the controller may not create TokenReviews; grant its ServiceAccount the RBAC rule "+
			`{apiGroups: ["authentication.k8s.io"], resources: ["tokenreviews"], verbs: ["create"]} `+
			"(a ClusterRole and ClusterRoleBinding, or bind the built-in ClusterRole system:auth-delegator): %w", ca.ErrVerifierUnavailable, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w: the Kubernetes API refused the controller's own credentials (check --kubeconfig or the controller's ServiceAccount token): %w", ca.ErrVerifierUnavailable, err)
	case apierrors.IsBadRequest(err), apierrors.IsInvalid(err), apierrors.IsRequestEntityTooLargeError(err):
		// The token is the only part of the review that varies.
		return fmt.Errorf("%w: the Kubernetes API refused to review the token: %w", ca.ErrInvalidToken, err)
	case transient(err):
		return fmt.Errorf("%w: TokenReview failed; retry later: %w", ca.ErrVerifierUnavailable, err)
	}
	return fmt.Errorf("%w: TokenReview failed: %w", ca.ErrVerifierUnavailable, err)
}

// transient reports whether err is a failure that goes away on its own: a
// server overloaded, timing out or restarting, or a broken connection.
func transient(err error) bool {
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err) ||
		utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) ||
		utilnet.IsHTTP2ConnectionLost(err) || utilnet.IsTimeout(err)
}

// judge turns the API server's verdict into the SPIFFE ID it proves.
func (v *Verifier) judge(st *authenticationv1.TokenReviewStatus) (string, error) {
	if !st.Authenticated {
		// The API server puts the authenticator's reason in Error:
		// "[invalid bearer token, service account token has expired]", a
		// bad signature, a bound pod that no longer exists, an audience
		// that is not ours.
		reason := "the Kubernetes API did not authenticate the token"
		if st.Error != "" {
			reason += ": " + st.Error
		}
		if strings.Contains(st.Error, "expired") {
			reason += " (the proxy re-reads its token file at each renewal: check that the kubelet refreshes the projected token)"
		}
		return "", fmt.Errorf("%w: %s", ca.ErrInvalidToken, reason)
	}
	who := describe(&st.User)
	if st.Error != "" {
		// Authenticated with an error is not a state the API server
		// produces; do not trust half an answer.
		return "", fmt.Errorf("%w: the TokenReview for %s is authenticated but reports an error: %s", ca.ErrVerifierUnavailable, who, st.Error)
	}
	if !slices.ContainsFunc(st.Audiences, func(a string) bool { return slices.Contains(v.audiences, a) }) {
		return "", fmt.Errorf("%w: the token of %s is not confirmed for audience %s (the API server confirmed %q); "+
			"the proxy must send a projected ServiceAccount token with that audience, not its API server token",
			ca.ErrInvalidToken, who, strings.Join(v.audiences, " or "), st.Audiences)
	}
	name := st.User.Username
	rest, ok := strings.CutPrefix(name, saUserPrefix)
	if !ok {
		if strings.HasPrefix(name, nodeUserPrefix) {
			return "", fmt.Errorf("%w: the token authenticates node %q, not a ServiceAccount; the proxy must send its pod's ServiceAccount token",
				ca.ErrInvalidToken, strings.TrimPrefix(name, nodeUserPrefix))
		}
		return "", fmt.Errorf("%w: the token authenticates user %q, not a ServiceAccount (%s<namespace>:<name>); the proxy must send its pod's ServiceAccount token",
			ca.ErrInvalidToken, name, saUserPrefix)
	}
	ns, sa, ok := strings.Cut(rest, ":")
	if !ok || strings.Contains(sa, ":") {
		return "", fmt.Errorf("%w: ServiceAccount user %q is not %s<namespace>:<name>", ca.ErrInvalidToken, name, saUserPrefix)
	}
	id, err := spiffe.New(v.trustDomain, ns, sa)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ca.ErrInvalidToken, who, err)
	}
	return id.String(), nil
}

// describe names the user of a review for messages: its username and, for
// a token bound to a pod, the pod.
func describe(u *authenticationv1.UserInfo) string {
	who := fmt.Sprintf("user %q", u.Username)
	if u.Username == "" {
		who = "an unnamed user"
	}
	if pod := u.Extra[podNameExtra]; len(pod) > 0 {
		who += fmt.Sprintf(" (pod %s)", pod[0])
	}
	return who
}
