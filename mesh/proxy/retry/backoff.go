package retry

import (
	"math/rand/v2"
	"time"
)

// DefaultMaxBackoff caps [Backoff] when the caller gives no cap.
const DefaultMaxBackoff = 10 * time.Second

// Backoff is the wait before retry attempt n (1 for the first retry):
// base doubled for each attempt after the first, capped at limit (zero
// means DefaultMaxBackoff), plus up to half of that again drawn from rnd,
// so that clients that failed together do not retry together. It is never
// below base (the Gateway API's backoff is the least wait between
// attempts) and never above limit unless base is. A zero base waits
// nothing.
func Backoff(base, limit time.Duration, n int, rnd *rand.Rand) time.Duration {
	if base <= 0 {
		return 0
	}
	if limit <= 0 {
		limit = DefaultMaxBackoff
	}
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	if half := int64(d / 2); half > 0 {
		d += time.Duration(rnd.Int64N(half + 1))
	}
	return max(min(d, limit), base)
}
