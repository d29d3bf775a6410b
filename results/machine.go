package results

import (
	"bufio"
	"os"
	"runtime"
	"strings"

	"github.com/skiff-mesh/skiff/internal/procfs"
)

// CurrentMachine describes the host this process runs on: what
// procfs.CurrentMachine gathers, plus the OS, architecture and CPU model.
// Fields it cannot read are left empty (Kernel and CPUModel come from /proc,
// so they are empty off Linux); it never fails.
func CurrentMachine() Machine {
	pm := procfs.CurrentMachine()
	m := Machine{
		Hostname:  pm.Hostname,
		Cores:     pm.Cores,
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
		Kernel:    pm.Kernel,
		GoVersion: pm.GoVersion,
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
