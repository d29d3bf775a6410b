package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"

	"github.com/skiff-mesh/skiff/mesh/discovery/internal/coalesce"
)

// notifyMask is what WatchFile asks inotify about in the file's directory:
// a file renamed into place (atomic writers, such as the simulator), a
// file closed after writing (writers in place), and the file going away.
// IN_MODIFY and IN_CREATE are left out on purpose: they fire before the
// content is complete, and a reload then would read half a file.
const notifyMask = syscall.IN_MOVED_TO | syscall.IN_CLOSE_WRITE |
	syscall.IN_DELETE | syscall.IN_MOVED_FROM | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF

// notifyChanges watches the directory of path with inotify and pokes sig
// whenever an event may have changed path: an event naming its base name,
// or a queue overflow (events were lost). It returns once the watch is in
// place; the reader ends when ctx is done or the directory itself goes
// away, and then calls done (which may be nil) so the caller knows only
// its poll is left.
//
// The directory, not the file, is watched: a rename into place replaces
// the file's inode, and a watch on the old inode would hear nothing more.
func notifyChanges(ctx context.Context, path string, sig coalesce.Signal, done func(error)) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify_init1: %w", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, notifyMask); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("inotify_add_watch %s: %w", dir, err)
	}
	// A non-blocking descriptor makes an *os.File the runtime's poller
	// waits on: Read parks the goroutine, and Close wakes it with an error,
	// which is how ctx ends the reader.
	f := os.NewFile(uintptr(fd), "inotify:"+dir)
	stop := context.AfterFunc(ctx, func() { f.Close() })
	go func() {
		err := readEvents(f, []byte(base), sig)
		stop()
		f.Close()
		if ctx.Err() != nil {
			err = nil
		}
		if done != nil {
			done(err)
		}
	}()
	return nil
}

// errDirGone ends the reader when the watched directory is deleted or
// moved: inotify then drops the watch (IN_IGNORED).
var errDirGone = errors.New("the directory of the endpoints file was removed or moved; only polling is left")

// readEvents reads inotify events from f until it fails or the watch ends,
// poking sig for those about base.
func readEvents(f *os.File, base []byte, sig coalesce.Signal) error {
	// Room for many events with names up to NAME_MAX: a burst of renames
	// is read in one call.
	buf := make([]byte, 64*(syscall.SizeofInotifyEvent+syscall.NAME_MAX+1))
	for {
		n, err := f.Read(buf)
		if err != nil {
			return err
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			end := off + syscall.SizeofInotifyEvent + int(ev.Len)
			if end > n {
				break // cannot happen: the kernel never splits an event
			}
			name := bytes.TrimRight(buf[off+syscall.SizeofInotifyEvent:end], "\x00")
			off = end
			switch {
			case ev.Mask&syscall.IN_Q_OVERFLOW != 0:
				sig.Poke() // events were lost: look again
			case ev.Mask&(syscall.IN_IGNORED|syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0:
				sig.Poke()
				return errDirGone
			case bytes.Equal(name, base):
				sig.Poke()
			}
		}
	}
}
