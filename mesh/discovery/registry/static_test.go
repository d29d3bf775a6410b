package registry_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/skiff-mesh/skiff/internal/leakcheck"
	"github.com/skiff-mesh/skiff/mesh/discovery"
	"github.com/skiff-mesh/skiff/mesh/discovery/registry"
)

// renameInto writes text to a temporary file beside path with the given
// modification time and renames it over path: an atomic writer.
func renameInto(t *testing.T, path, text string, mod time.Time) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".endpoints-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp.Name(), mod, mod); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// weighted is the one-endpoint table of web.default.svc:80 with weight w
// (one digit, so every version has the same size).
func weighted(w int) string { return fmt.Sprintf("web.default.svc:80 127.0.0.1:8080;weight=%d\n", w) }

func weightSnap(w int) discovery.Snapshot {
	return discovery.Snapshot{Authority: "web.default.svc:80", Exists: true,
		Endpoints: []discovery.Endpoint{{Addr: "127.0.0.1:8080", Weight: uint32(w), Labels: map[string]string{}}}}
}

// expectWeight waits for the snapshot of weight w, skipping none: every
// change before it must have been seen in order.
func (w *watcher) expectWeight(t *testing.T, weight int) {
	t.Helper()
	got := w.next(t)
	if len(got.Endpoints) != 1 || got.Endpoints[0].Weight != uint32(weight) {
		t.Fatalf("Watch(%s): got %+v, want weight %d", w.auth, got, weight)
	}
}

// TestWatchFileNotified: with a poll far too slow to matter, every
// rewrite still arrives, through inotify: renamed into place, even with
// the same size and modification time (what a poll cannot tell apart),
// written in place, and renamed back after the file was deleted.
func TestWatchFileNotified(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("skipping: change notification is inotify, Linux only; elsewhere WatchFile polls (TestWatchFilePoll)")
	}
	leakcheck.Check(t)
	path := filepath.Join(t.TempDir(), "endpoints.txt")
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	renameInto(t, path, weighted(1), mod)
	r, err := registry.WatchFile(t.Context(), path, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, r, "web.default.svc:80")
	w.expect(t, weightSnap(1))
	for v := 2; v <= 6; v++ { // same size, same mtime: only a notification tells
		renameInto(t, path, weighted(v), mod)
		w.expectWeight(t, v)
	}
	if err := os.WriteFile(path, []byte(weighted(7)), 0o644); err != nil { // in place
		t.Fatal(err)
	}
	w.expectWeight(t, 7)
	if err := os.Remove(path); err != nil { // gone: the table stays
		t.Fatal(err)
	}
	renameInto(t, path, weighted(8), mod)
	w.expectWeight(t, 8)
}

// TestWatchFilePoll: without notification the poll sees a file renamed
// into place even with the same size and modification time, by its inode.
func TestWatchFilePoll(t *testing.T) {
	leakcheck.Check(t)
	path := filepath.Join(t.TempDir(), "endpoints.txt")
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	renameInto(t, path, weighted(1), mod)
	r, err := registry.WatchFilePoll(t.Context(), path, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, r, "web.default.svc:80")
	w.expect(t, weightSnap(1))
	for v := 2; v <= 4; v++ {
		renameInto(t, path, weighted(v), mod)
		w.expectWeight(t, v)
	}
}

// TestWatchFileManyRenames: a burst of atomic rewrites ends with the
// watcher on the last version (intermediate ones may be folded).
func TestWatchFileManyRenames(t *testing.T) {
	leakcheck.Check(t)
	path := filepath.Join(t.TempDir(), "endpoints.txt")
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	renameInto(t, path, weighted(0), mod)
	r, err := registry.WatchFile(t.Context(), path, 50*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, r, "web.default.svc:80")
	w.expect(t, weightSnap(0))
	const last = 500
	for v := 1; v <= last; v++ {
		renameInto(t, path, fmt.Sprintf("web.default.svc:80 127.0.0.1:8080;weight=%d\n", v), mod)
	}
	prev := uint32(0)
	for {
		s := w.next(t)
		got := s.Endpoints[0].Weight
		if got <= prev {
			t.Fatalf("weight went from %d to %d: versions out of order", prev, got)
		}
		if prev = got; got == last {
			return
		}
	}
}

// BenchmarkLoadFile reloads a registry file of 500 services × 10
// endpoints (the scale scenario's) into a registry that holds it already:
// the controller's cost of one change to the file.
func BenchmarkLoadFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "endpoints.txt")
	var text []byte
	for s := range 500 {
		text = fmt.Appendf(text, "svc-%04d.default.svc:8080", s)
		for i := range 10 {
			text = fmt.Appendf(text, " 127.10.%d.%d:4143;meshed;weight=100;id=spiffe://cluster.local/ns/default/sa/svc-%04d;proto=http1;label=pod=svc-%04d-%d;label=service=svc-%04d",
				1+(s*10+i)/254, 1+(s*10+i)%254, s, s, i, s)
		}
		text = append(text, '\n')
	}
	if err := os.WriteFile(path, text, 0o644); err != nil {
		b.Fatal(err)
	}
	r := &registry.Registry{}
	if err := r.LoadFile(path); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.LoadFile(path); err != nil {
			b.Fatal(err)
		}
	}
}
