package registry

import (
	"context"
	"time"
)

// Entries is how many authorities r holds (known or watched).
func (r *Registry) Entries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// WatchFilePoll is WatchFile without change notification: the poll alone.
func WatchFilePoll(ctx context.Context, path string, interval time.Duration) (*Registry, error) {
	return watchFile(ctx, path, interval, nil, false)
}
