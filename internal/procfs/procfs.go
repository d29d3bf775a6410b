// Package procfs reads a process's memory and CPU from Linux /proc: the
// figures Skiff's gates use. It has no dependencies beyond the standard
// library, so the proxy may link it.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Stat is one reading of a process.
type Stat struct {
	// VmRSSMB is the resident set now (VmRSS), in MB (10^6 bytes is not
	// used: 1 MB here is 1 MiB, as /proc reports kB = KiB).
	VmRSSMB float64
	// VmHWMMB is the peak resident set so far (VmHWM).
	VmHWMMB float64
	// RssAnonMB and RssFileMB split VmRSS: anonymous memory (heap,
	// stacks, runtime) and pages mapped from files (the binary's code
	// and read-only data, shared with every process mapping them).
	RssAnonMB, RssFileMB float64
	// CPUSeconds is user + system time (utime + stime).
	CPUSeconds float64
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times. It is 100 on
// every Linux architecture Go supports; the kernel exports it fixed.
const clockTicks = 100

// Read samples pid ("self" reads this process).
func Read(pid string) (Stat, error) {
	var st Stat
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return st, fmt.Errorf("procfs: %w", err)
	}
	for _, line := range bytes.Split(status, []byte{'\n'}) {
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			st.VmRSSMB = kbField(line)
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			st.VmHWMMB = kbField(line)
		case bytes.HasPrefix(line, []byte("RssAnon:")):
			st.RssAnonMB = kbField(line)
		case bytes.HasPrefix(line, []byte("RssFile:")):
			st.RssFileMB = kbField(line)
		}
	}
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return st, fmt.Errorf("procfs: %w", err)
	}
	// The command name (field 2) may hold spaces and parentheses: fields
	// are counted after the last ')'. utime and stime are fields 14, 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return st, fmt.Errorf("procfs: /proc/%s/stat: no command field", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return st, fmt.Errorf("procfs: /proc/%s/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	stt, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return st, fmt.Errorf("procfs: /proc/%s/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	st.CPUSeconds = float64(ut+stt) / clockTicks
	return st, nil
}

// ReadPID samples a process by number.
func ReadPID(pid int) (Stat, error) { return Read(strconv.Itoa(pid)) }

// Proportional is a process's proportional set size (PSS): each resident
// page divided by the number of processes mapping it. The binary's code
// pages count in full in every sidecar's RSS but are shared by every
// sidecar of a node: PSS is what a node really pays for one.
type Proportional struct {
	PssMB, PssAnonMB, PssFileMB float64
}

// ReadProportional reads /proc/<pid>/smaps_rollup (Linux 4.14 and later).
// It walks the process's page tables, so it costs more than Read: sample
// it, do not poll it.
func ReadProportional(pid int) (Proportional, error) {
	var p Proportional
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return p, fmt.Errorf("procfs: %w", err)
	}
	found := false
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		switch {
		case bytes.HasPrefix(line, []byte("Pss:")):
			p.PssMB, found = kbField(line), true
		case bytes.HasPrefix(line, []byte("Pss_Anon:")):
			p.PssAnonMB = kbField(line)
		case bytes.HasPrefix(line, []byte("Pss_File:")):
			p.PssFileMB = kbField(line)
		}
	}
	if !found {
		return p, fmt.Errorf("procfs: /proc/%d/smaps_rollup has no Pss line", pid)
	}
	return p, nil
}

func kbField(line []byte) float64 {
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return 0
	}
	kb, _ := strconv.ParseFloat(f[1], 64)
	return kb / 1024
}

// Machine describes where a measurement ran.
type Machine struct {
	Hostname  string `json:"hostname"`
	Cores     int    `json:"cores"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
}

// CurrentMachine describes this machine.
func CurrentMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
