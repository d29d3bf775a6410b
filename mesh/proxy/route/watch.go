package route

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// LoadFile reads the routes file at path into t. An error, which names the
// file and what is wrong in it, leaves t as it was.
func LoadFile(path string, t *Table) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("routes file: %w", err)
	}
	defer f.Close()
	routes, err := Parse(f)
	if err != nil {
		t.rejected.Add(1)
	} else {
		err = t.Replace(routes)
	}
	if err != nil {
		return fmt.Errorf("routes file %s: %w", path, err)
	}
	return nil
}

// WatchFile loads the routes file at path into t, then checks it every
// interval until ctx ends and loads it again when it changed. A first load
// that fails is the error returned; a later one is logged and counted
// (Table.Rejected) and t keeps the last routes that were valid.
func WatchFile(ctx context.Context, path string, interval time.Duration, t *Table, log *slog.Logger) error {
	if err := LoadFile(path, t); err != nil {
		return err
	}
	if interval <= 0 {
		interval = 2 * time.Second
	}
	fi, _ := os.Stat(path)
	go func() {
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			nfi, err := os.Stat(path)
			if err != nil || fi != nil && nfi.ModTime().Equal(fi.ModTime()) && nfi.Size() == fi.Size() {
				continue
			}
			fi = nfi
			if err := LoadFile(path, t); err != nil {
				log.Warn("routes file refused; keeping the previous routes", "err", err, "version", t.Version())
				continue
			}
			log.Info("routes file reloaded", "path", path, "routes", t.Len(), "version", t.Version())
		}
	}()
	return nil
}
