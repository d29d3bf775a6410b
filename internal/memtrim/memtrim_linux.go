package memtrim

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ReleaseExecutablePages drops the page-table entries of the calling
// process's read-only mappings of its own executable (code and read-only
// data), and returns the bytes of address space advised. Call it once
// start-up is over; it is safe to call at any time.
func ReleaseExecutablePages() (int64, error) {
	ms, err := executableMappings()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, m := range ms {
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), syscall.MADV_DONTNEED); e != 0 {
			return n, fmt.Errorf("memtrim: madvise %x-%x: %w", m.start, m.end, e)
		}
		n += int64(m.end - m.start)
	}
	return n, nil
}

// mapping is an address range of the executable's read-only mappings.
type mapping struct{ start, end uint64 }

// executableMappings lists the read-only mappings (code, read-only data)
// of the calling process's own executable, from /proc/self/maps.
func executableMappings() ([]mapping, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("memtrim: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("memtrim: %w", err)
	}
	defer f.Close()
	var ms []mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) != 6 || fields[5] != exe || (fields[1] != "r-xp" && fields[1] != "r--p") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("memtrim: unreadable mapping %q in /proc/self/maps", fields[0])
		}
		ms = append(ms, mapping{start, end})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("memtrim: /proc/self/maps: %w", err)
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("memtrim: no read-only mapping of %s in /proc/self/maps", exe)
	}
	return ms, nil
}
