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
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("memtrim: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("memtrim: %w", err)
	}
	defer f.Close()
	var n int64
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
			return n, fmt.Errorf("memtrim: unreadable mapping %q in /proc/self/maps", fields[0])
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); e != 0 {
			return n, fmt.Errorf("memtrim: madvise %s: %w", fields[0], e)
		}
		n += int64(end - start)
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("memtrim: /proc/self/maps: %w", err)
	}
	return n, nil
}
