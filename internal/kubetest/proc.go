package kubetest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a process has to exit after SIGTERM before its
// group is killed.
const stopGrace = 10 * time.Second

// proc is one control-plane process, the leader of its own process group.
type proc struct {
	name string
	log  string // its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // its exit, once done is closed
}

// startProc starts bin with args, logging into dir/name.log.
func startProc(dir, name, bin string, args []string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own group, so that stop reaches whatever it forks; and killed
	// with the test binary if that dies without running cleanups (a
	// panic, a go test -timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited returns an error naming how the process ended if it has.
func (p *proc) exited() error {
	select {
	case <-p.done:
		if p.err == nil {
			return fmt.Errorf("%s exited with status 0; its log:\n%s", p.name, p.tail(40))
		}
		return fmt.Errorf("%s exited (%w); its log:\n%s", p.name, p.err, p.tail(40))
	default:
		return nil
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after stopGrace.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
	}
	// Whatever the leader left in its group goes too.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		fmt.Fprintf(os.Stderr, "kubetest: kill %s's group %d: %v\n", p.name, pgid, err)
	}
	<-p.done
}

// tail returns the last n lines of the process's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\t" + strings.ReplaceAll(string(bytes.Join(lines, []byte("\n"))), "\n", "\n\t")
}

// addrInUse says the process's log shows it lost the race for a port
// chosen by the kernel and released before it bound it.
func (p *proc) addrInUse() bool {
	b, _ := os.ReadFile(p.log)
	return bytes.Contains(b, []byte("address already in use"))
}

// freePorts asks the kernel for n free ports on 127.0.0.1. They are
// released before the process that uses them binds them: another process
// may take one meanwhile, which start notices and retries.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
