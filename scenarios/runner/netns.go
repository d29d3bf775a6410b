package runner

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// netnsUnavailable is the error of --env netns. The environment is not
// built (issue 13: a network namespace per pod, the iptables rules of
// proxy-init), whatever the machine has; the message says so first, then
// names exactly what of its prerequisites this machine lacks, so that
// nobody installs packages to fix an environment that does not exist.
func netnsUnavailable() error {
	return netnsError(netnsMissing(runtime.GOOS, os.Geteuid(), exec.LookPath))
}

func netnsError(missing []string) error {
	msg := "environment netns: not implemented yet (issue 13: a network namespace per pod with proxy-init's iptables rules); use --env local"
	if len(missing) == 0 {
		return fmt.Errorf("%s. This machine already has what it will need (Linux, root, iproute2, iptables): nothing to install", msg)
	}
	return fmt.Errorf("%s. It will also need what this machine lacks: %s", msg, strings.Join(missing, "; "))
}

// netnsMissing lists the netns environment's prerequisites that are
// missing: Linux, root (to create namespaces and rules), iproute2's ip and
// iptables on PATH.
func netnsMissing(goos string, euid int, lookPath func(string) (string, error)) []string {
	var missing []string
	if goos != "linux" {
		missing = append(missing, "Linux (this is "+goos+")")
	}
	if euid != 0 {
		missing = append(missing, fmt.Sprintf("root (running as uid %d)", euid))
	}
	for _, c := range []struct{ pkg, bin string }{{"iproute2", "ip"}, {"iptables", "iptables"}} {
		if _, err := lookPath(c.bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (no %s on PATH)", c.pkg, c.bin))
		}
	}
	return missing
}
