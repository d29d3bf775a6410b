package local

import (
	"errors"
	"fmt"
	"strings"

	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
)

// SetEndpoints publishes authorities that no pod of the topology backs —
// synthetic endpoints, for measuring the control plane at a scale no
// topology of real processes reaches — in one atomic rewrite of the
// endpoints file (FileRegistry.SetAll), then to Config.Registry when set.
// Each authority of table gets exactly its endpoints (an empty list: known,
// with no ready endpoint); the others are left alone. Nothing checks that
// the addresses answer: pick them in Subnet, where nothing else listens.
//
// It may be called before Up, so that the controller starts with the
// table, and at any time after; the authorities of the topology's services
// are the Env's own and are refused. When it returns, the file holds the
// change: a reader of the file (the controller) can see it from then on.
func (e *Env) SetEndpoints(table map[string][]endpoint.Endpoint) error {
	e.mu.Lock()
	for auth := range table {
		for _, s := range e.services {
			if strings.EqualFold(auth, s.authority) {
				e.mu.Unlock()
				return fmt.Errorf("local: set endpoints: %s is the authority of service %q, whose pods the environment publishes", auth, s.spec.Name)
			}
		}
	}
	e.mu.Unlock()
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	if e.pubDone || e.closed.Load() {
		return errors.New("local: set endpoints: the environment is closed")
	}
	if err := e.file.SetAll(table); err != nil {
		return fmt.Errorf("local: set endpoints: %w", err)
	}
	if e.cfg.Registry != nil {
		for auth, eps := range table {
			if err := e.cfg.Registry.Set(auth, eps); err != nil {
				return fmt.Errorf("local: set endpoints: Config.Registry: %w", err)
			}
		}
	}
	return nil
}
