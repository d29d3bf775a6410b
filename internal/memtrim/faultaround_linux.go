package memtrim

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"unsafe"
)

// userfaultfd(2) and its ioctls (include/uapi/linux/userfaultfd.h). The
// ioctl numbers are _IOWR(0xAA, nr, struct) and the same on amd64 and
// arm64; the system call's number is per architecture (sysUserfaultfd).
const (
	uffdUserModeOnly    = 1 // handle user-mode faults only: allowed unprivileged
	uffdAPI             = 0xAA
	uffdFeatureWPAsync  = 1 << 15 // Linux 6.7
	uffdioAPI           = 0xC018AA3F
	uffdioRegister      = 0xC020AA00
	uffdioRegisterModeW = 1 << 1 // write-protect
)

type uffdioAPIArg struct{ api, features, ioctls uint64 }

type uffdioRegisterArg struct{ start, len, mode, ioctls uint64 }

// ErrFaultAroundStays says the kernel cannot be asked to map the
// executable page by page here: no userfaultfd system call (not Linux,
// an architecture without it, a kernel built without it, or a seccomp
// profile that refuses it, as containers' default profiles do), or a
// kernel older than 6.7 (no asynchronous write-protect mode).
var ErrFaultAroundStays = errors.New("memtrim: the kernel keeps mapping the executable 64 KiB at a time (fault-around)")

var (
	exactOnce sync.Once
	exactErr  error
)

// MapExecutablePageByPage makes the kernel map the executable's code and
// read-only data one 4 KiB page at a time, as they are touched, for the
// rest of the process's life.
//
// On a page fault in a file mapping the kernel maps not only the page
// touched but every page of the file already in the page cache within the
// surrounding 64 KiB ("fault-around", /sys/kernel/debug/fault_around_bytes).
// For a Go binary, whose linker lays functions out by package and not by
// use, that maps nearly the whole executable: a sidecar serving mutual
// TLS touches a little of every package (crypto, x509, HTTP/2, the
// runtime) and ends with 7 of its 7.4 MB of read-only mappings resident,
// although it runs a fraction of that code (docs/proxy.md).
//
// The kernel skips fault-around in a mapping registered with userfaultfd
// for write protection (mm/memory.c, should_fault_around). Registering
// the executable's read-only mappings in the asynchronous write-protect
// mode (Linux 6.7) costs nothing else: nothing ever writes them, and in
// that mode the kernel resolves a write itself without a handler; reads
// fault as before, a page at a time. Call it before
// ReleaseExecutablePages, so that what the serving path maps again is
// what it uses. It is idempotent; an error wraps ErrFaultAroundStays and
// the process runs on as before.
func MapExecutablePageByPage() error {
	exactOnce.Do(func() { exactErr = mapPageByPage() })
	return exactErr
}

func mapPageByPage() error {
	if sysUserfaultfd == 0 {
		return fmt.Errorf("%w: no userfaultfd system call on this architecture", ErrFaultAroundStays)
	}
	ms, err := executableMappings()
	if err != nil {
		return err
	}
	fd, _, e := syscall.Syscall(sysUserfaultfd, syscall.O_CLOEXEC|syscall.O_NONBLOCK|uffdUserModeOnly, 0, 0)
	if e != 0 {
		return fmt.Errorf("%w: userfaultfd: %w (refused by a seccomp profile, or vm.unprivileged_userfaultfd)", ErrFaultAroundStays, e)
	}
	api := uffdioAPIArg{api: uffdAPI, features: uffdFeatureWPAsync}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, uffdioAPI, uintptr(unsafe.Pointer(&api))); e != 0 {
		syscall.Close(int(fd))
		return fmt.Errorf("%w: UFFDIO_API with asynchronous write protection: %w (needs Linux 6.7)", ErrFaultAroundStays, e)
	}
	for _, m := range ms {
		r := uffdioRegisterArg{start: m.start, len: m.end - m.start, mode: uffdioRegisterModeW}
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, uffdioRegister, uintptr(unsafe.Pointer(&r))); e != 0 {
			// Closing the descriptor undoes what was registered.
			syscall.Close(int(fd))
			return fmt.Errorf("%w: UFFDIO_REGISTER %x-%x: %w", ErrFaultAroundStays, m.start, m.end, e)
		}
	}
	// The descriptor stays open for the life of the process: closing it
	// would undo the registration.
	return nil
}
