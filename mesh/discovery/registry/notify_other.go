//go:build !linux

package registry

import (
	"context"
	"errors"

	"github.com/skiff-mesh/skiff/mesh/discovery/internal/coalesce"
)

// notifyChanges has no implementation outside Linux: WatchFile polls.
func notifyChanges(ctx context.Context, path string, sig coalesce.Signal, done func(error)) error {
	return errors.New("file change notification is implemented for Linux (inotify) only")
}
