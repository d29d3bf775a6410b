package memtrim

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
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

// TestMapExecutablePageByPage: after the same release and the same work,
// a process that asked for page-by-page mapping has fewer of its
// executable's pages resident than one left to fault-around. Each runs in
// a child process (the registration lasts for the process's life).
func TestMapExecutablePageByPage(t *testing.T) {
	if mode := os.Getenv("MEMTRIM_CHILD"); mode != "" {
		if mode == "exact" {
			if err := MapExecutablePageByPage(); err != nil {
				fmt.Println("unavailable:", err)
				return
			}
		}
		if _, err := ReleaseExecutablePages(); err != nil {
			fmt.Println("error:", err)
			return
		}
		before := rssFile(t)
		// Some work across packages: formatting, parsing, sorting, maps.
		var sb strings.Builder
		for i := range 200 {
			fmt.Fprintf(&sb, "%d %q %v\n", i, strconv.Itoa(i*7), []float64{float64(i) / 3})
		}
		lines := strings.Split(sb.String(), "\n")
		slices.Sort(lines)
		seen := map[string]int{}
		for _, l := range lines {
			seen[l]++
		}
		fmt.Printf("rssfile %d %d %d\n", before, rssFile(t), len(seen))
		return
	}
	run := func(mode string) (before, after int) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestMapExecutablePageByPage$", "-test.count=1")
		cmd.Env = append(os.Environ(), "MEMTRIM_CHILD="+mode)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child %s: %v\n%s", mode, err, out)
		}
		s := string(out)
		if i := strings.Index(s, "unavailable: "); i >= 0 {
			t.Skipf("page-by-page mapping is not available here: %s", strings.SplitN(s[i:], "\n", 2)[0])
		}
		var n int
		i := strings.Index(s, "rssfile ")
		if i < 0 {
			t.Fatalf("child %s printed no reading:\n%s", mode, s)
		}
		if _, err := fmt.Sscanf(s[i:], "rssfile %d %d %d", &before, &after, &n); err != nil {
			t.Fatalf("child %s: %v in %q", mode, err, s)
		}
		return before, after
	}
	b0, a0 := run("fault-around")
	b1, a1 := run("exact")
	t.Logf("RssFile after the release and after the work: fault-around %d -> %d KiB, page by page %d -> %d KiB", b0, a0, b1, a1)
	// Fault-around maps up to 16 pages per fault, page by page one: the
	// same work must leave clearly fewer pages resident.
	if a1*10 > a0*7 {
		t.Errorf("page by page left %d KiB of the executable resident, fault-around %d KiB: want under 70 %%", a1, a0)
	}
	if err := MapExecutablePageByPage(); err != nil && !errors.Is(err, ErrFaultAroundStays) {
		t.Errorf("an error that does not wrap ErrFaultAroundStays: %v", err)
	}
}
