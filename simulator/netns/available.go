package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// Capabilities New needs (linux/capability.h): namespaces and mounts,
// links, addresses and rules.
const (
	capNetAdmin = 12
	capSysAdmin = 21
)

// Available says whether this machine can run a Net: nil when it can,
// else one error, one line, naming everything missing (not Linux, not
// root or without CAP_NET_ADMIN and CAP_SYS_ADMIN, no ip, no iptables or
// iptables-restore on PATH), for a caller to print and exit 2 on, or a
// test to skip with.
func Available() error { return available(DefaultIPTables) }

func available(iptables string) error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("the netns environment needs Linux (this is %s)", runtime.GOOS)
	}
	var missing []string
	if uid := os.Geteuid(); uid != 0 {
		missing = append(missing, fmt.Sprintf("root (running as uid %d)", uid))
	} else if eff, err := effectiveCaps(); err == nil {
		for _, c := range []struct {
			bit  uint
			name string
		}{{capNetAdmin, "CAP_NET_ADMIN"}, {capSysAdmin, "CAP_SYS_ADMIN"}} {
			if eff&(1<<c.bit) == 0 {
				missing = append(missing, c.name)
			}
		}
	}
	for _, bin := range []string{"ip", iptables, iptables + "-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" on PATH")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the netns environment needs %s", strings.Join(missing, ", "))
	}
	return nil
}

// effectiveCaps reads CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}
