package hostile

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestCodeMappedPageByPage: the release binary maps its code a page at a
// time once started (--page-exact-code), so after serving requests only a
// part of its read-only mappings is resident; with the kernel's 64 KiB
// fault-around nearly all of it was (docs/proxy.md, "Memory").
func TestCodeMappedPageByPage(t *testing.T) {
	tg := start(t)
	if tg.metric(t, "memory_code_page_by_page") != 1 {
		t.Skip("the kernel maps this proxy's code 64 KiB at a time here (userfaultfd refused, or Linux before 6.7): its log says why")
	}
	c := &http.Client{}
	for i := range 200 {
		req, _ := http.NewRequest("GET", "http://"+tg.outbound+"/", nil)
		req.Host = service
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	mapped := readOnlyMappings(t, tg.pid)
	resident := tg.stat(t).RssFileMB
	t.Logf("RssFile %.2f MiB of %.2f MiB of read-only mappings after 200 requests", resident, mapped)
	// Measured 3.0-3.2 of 7.4 MB under load; fault-around left 6.8.
	if resident > 0.7*mapped {
		t.Errorf("RssFile %.2f MiB of %.2f MiB mapped: more than the serving path's code is resident (is the start-up release or page-by-page mapping off?)", resident, mapped)
	}
}

// readOnlyMappings is the size in MiB of pid's read-only mappings of its
// own executable (code and read-only data), from /proc/<pid>/maps.
func readOnlyMappings(t *testing.T, pid int) float64 {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 6 || fields[5] != exe || (fields[1] != "r-xp" && fields[1] != "r--p") {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || b < a {
			t.Fatalf("unreadable mapping %q", fields[0])
		}
		total += b - a
	}
	if total == 0 {
		t.Fatalf("no read-only mapping of %s in /proc/%d/maps", exe, pid)
	}
	return float64(total) / (1 << 20)
}
