package loadgen

import (
	"context"
	"sync/atomic"
)

// mixClient sends the requests of a mix that is not only gRPC calls to
// one address (Options.mixed): each share has a client of its own, and
// the cycle of the shares' weights says whose each request is.
type mixClient struct {
	subs  []client
	cycle []int // share indexes, one turn of the mix
	next  atomic.Uint64
}

var _ client = (*mixClient)(nil)

func newMixClient(o *Options) (*mixClient, error) {
	c := &mixClient{cycle: weightedCycle(o.Mix)}
	for i := range o.Mix {
		so := o.shareOptions(i)
		if err := so.Normalize(); err != nil {
			c.close()
			return nil, err
		}
		sub, err := newClient(&so)
		if err != nil {
			c.close()
			return nil, err
		}
		c.subs = append(c.subs, sub)
	}
	return c, nil
}

func (c *mixClient) call(ctx context.Context) outcome {
	n := c.next.Add(1) - 1
	return c.subs[c.cycle[n%uint64(len(c.cycle))]].call(ctx)
}

func (c *mixClient) close() {
	for _, s := range c.subs {
		s.close()
	}
}
