package gatewayapi

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// durationFormat is GEP-2257's Duration, the pattern the Gateway API CRDs
// put on every gatewayv1.Duration: one to four groups of up to five digits
// and a unit h, m, s or ms. (The module's own parser, pkg/utils, is a
// main package and cannot be imported.)
var durationFormat = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)

// parseDuration reads a Gateway API duration such as "300ms", "10s" or
// "1m30s", refusing what the CRDs refuse: negative values, fractions,
// other units and more than four groups.
func parseDuration(d gatewayv1.Duration) (time.Duration, error) {
	s := string(d)
	if !durationFormat.MatchString(s) {
		if strings.HasPrefix(s, "-") {
			return 0, fmt.Errorf("duration %q is negative", s)
		}
		return 0, fmt.Errorf("%q is not a Gateway API duration: want up to four groups of 1 to 5 digits and a unit h, m, s or ms, such as \"300ms\", \"10s\" or \"1m30s\"", truncate(s))
	}
	v, err := time.ParseDuration(s)
	if err != nil { // cannot happen for the pattern above; kept for the message
		return 0, fmt.Errorf("duration %q: %w", s, err)
	}
	return v, nil
}

// truncate shortens a hostile value before it is quoted in a message.
func truncate(s string) string {
	const n = 64
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
