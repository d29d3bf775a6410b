//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// threadNetnsPath is the calling thread's own network namespace (not
// /proc/self/..., which is the main thread's).
const threadNetnsPath = "/proc/thread-self/ns/net"

// setns moves the calling thread into the network namespace open as fd.
func setns(fd uintptr) error {
	if _, _, e := syscall.Syscall(sysSetns, fd, syscall.CLONE_NEWNET, 0); e != 0 {
		return e
	}
	return nil
}

// enterNetns runs fn on an OS thread inside the network namespace
// mounted at path, and returns fn's error. fn runs on a goroutine of its
// own, locked to its thread: sockets it creates belong to the namespace,
// and goroutines it starts do not (they run on other threads, in the
// harness's namespace). If the thread cannot be moved back, the goroutine
// ends still locked, and the runtime ends the thread with it, so no other
// goroutine ever runs in the wrong namespace. A panic in fn is re-raised
// on the caller's goroutine once the thread is back.
//
// Threads that the runtime starts while fn runs are cloned from a clean
// template thread, never from a locked one (runtime.newm), so they start
// in the harness's namespace.
func enterNetns(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer target.Close()

	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(threadNetnsPath)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("the thread's own network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := setns(target.Fd()); err != nil {
			runtime.UnlockOSThread() // setns failed: still in its own namespace
			done <- result{err: fmt.Errorf("setns into %s: %w", path, err)}
			return
		}
		var r result
		func() {
			defer func() {
				if v := recover(); v != nil {
					r.panicked, r.value = true, v
				}
			}()
			r.err = fn()
		}()
		if err := setns(orig.Fd()); err != nil {
			// Stay locked: the goroutine ends and takes the thread along.
			r.err = errors.Join(r.err, fmt.Errorf("setns back from %s: %w (the thread is discarded)", path, err))
			done <- r
			return
		}
		runtime.UnlockOSThread()
		done <- r
	}()
	r := <-done
	if r.panicked {
		panic(r.value)
	}
	return r.err
}

// procAttr is every child's: its own process group (a Ctrl-C at the
// terminal reaches the harness, which then tears down in order, not the
// children mid-command) and SIGKILL when the harness dies. The
// parent-death signal follows the thread that started the child: a child
// started inside Pod.Do dies when Do's thread is discarded.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// flockNB takes an exclusive lock on f without waiting.
func flockNB(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}

// sameFile says whether f is still the file at path (a lock holder may
// unlink the file between another's open and flock).
func sameFile(f *os.File, path string) bool {
	var held, cur syscall.Stat_t
	return syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(path, &cur) == nil &&
		held.Dev == cur.Dev && held.Ino == cur.Ino
}

// nsInode is the inode of a namespace file (/run/netns/x or
// /proc/.../ns/net): equal inodes, same namespace.
func nsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
