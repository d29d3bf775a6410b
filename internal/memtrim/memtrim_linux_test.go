package memtrim

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// rssFile reads the process's file-backed resident set, in KiB.
func rssFile(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestRelease: the test binary's start-up pages go, and the process runs
// on (the code it needs next is mapped again on use).
func TestRelease(t *testing.T) {
	before := rssFile(t)
	n, err := ReleaseExecutablePages()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if n == 0 {
		t.Fatal("no mapping of the executable was found in /proc/self/maps")
	}
	if after >= before {
		t.Errorf("RssFile %d KiB before, %d KiB after: nothing was released", before, after)
	}
	t.Logf("advised %d KiB; RssFile %d -> %d KiB", n>>10, before, after)
	// Code and data still work: run some of each again.
	if s := strconv.Quote(strings.Repeat("é", 3)); s != `"ééé"` {
		t.Errorf("after release: %s", s)
	}
	if _, err := ReleaseExecutablePages(); err != nil {
		t.Errorf("a second call: %v", err)
	}
}
