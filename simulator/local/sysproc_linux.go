package local

import "syscall"

// sysProcAttr puts every child in its own process group, so a Ctrl-C at
// the terminal reaches the harness only (which then stops the children
// gracefully), and asks the kernel to SIGKILL the child if the harness
// dies without cleaning up: an orphan would keep its ports bound in a
// subnet whose lock is already free. The parent-death signal follows the
// OS thread that started the child, hence Env's spawner thread.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
