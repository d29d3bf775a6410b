//go:build !linux

package local

import "syscall"

// sysProcAttr puts every child in its own process group, so a Ctrl-C at
// the terminal reaches the harness only. Only Linux has a parent-death
// signal; elsewhere a crashed harness can leave children behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
