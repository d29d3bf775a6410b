package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-mesh/skiff/internal/procfs"
)

// process is a started child.
type process struct {
	name, path string // path: the bench path it serves
	spec       procSpec
	cmd        *exec.Cmd
	done       chan struct{}
	waitErr    error
}

// member is one OS process that serves a path: a started process, or a
// worker it forked (nginx's). CPU and memory are read per member.
type member struct {
	name, path string
	// role is "master" or "worker" for a process tree; empty otherwise.
	role  string
	pid   int
	owner *process
}

// startProcess starts one process of a path, its output in a log file of
// the work dir (appended to with appendLog, when it is started again). A process tree gets a process group of its own, so that
// stop can end its workers with it.
func startProcess(workDir, path string, s procSpec, appendLog bool) (*process, error) {
	for _, f := range s.Files {
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(f.Path, []byte(f.Text), 0o644); err != nil {
			return nil, err
		}
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendLog { // a restart: keep the earlier instances' output
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	logf, err := os.OpenFile(filepath.Join(workDir, s.Name+".log"), flags, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.Bin, s.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if s.Tree {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p := &process{name: s.Name, path: path, spec: s, cmd: cmd, done: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

// stop ends the process: SIGINT for Skiff's (its graceful drain), SIGTERM
// for a peer (nginx's and haproxy's fast shutdown), SIGKILL after 5 s. A
// process tree's group is killed after its leader is gone, so that no
// worker outlives it; the group holds only processes the bench started.
func (p *process) stop() {
	defer func() {
		if p.spec.Tree {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	select {
	case <-p.done:
		return
	default:
	}
	sig := os.Interrupt
	if p.spec.Peer {
		sig = syscall.SIGTERM
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// exited says why the process has ended, or nil while it runs.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %w", p.name, p.waitErr)
	default:
		return nil
	}
}

// membersOf lists the OS processes that serve with p: p alone, or for a
// process tree p as "master" and each child as "worker" (named p-worker,
// or p-worker-N when there are several).
func membersOf(p *process) []member {
	pid := p.cmd.Process.Pid
	if !p.spec.Tree {
		return []member{{name: p.name, path: p.path, pid: pid, owner: p}}
	}
	ms := []member{{name: p.name + "-master", path: p.path, role: "master", pid: pid, owner: p}}
	kids := childPIDs(pid)
	for i, k := range kids {
		name := p.name + "-worker"
		if len(kids) > 1 {
			name += "-" + strconv.Itoa(i+1)
		}
		ms = append(ms, member{name: name, path: p.path, role: "worker", pid: k, owner: p})
	}
	return ms
}

// childPIDs lists the children of pid, scanning /proc (the kernel's
// per-task children lists need CONFIG_PROC_CHILDREN, which not every
// kernel has). Each stat file read is bounded.
func childPIDs(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		if ppid, ok := parentPID(n); ok && ppid == pid {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// parentPID reads field 4 of /proc/<pid>/stat.
func parentPID(pid int) (int, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4<<10))
	if err != nil {
		return 0, false
	}
	return statParent(string(b))
}

// statParent parses the parent PID from a /proc/<pid>/stat line. The
// command (field 2) may hold spaces and parentheses: fields are counted
// after the last ')'.
func statParent(stat string) (int, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// alive says whether a member still runs as the child of its owner (a
// worker that died and was replaced would take its CPU with it).
func (m member) alive() error {
	if err := m.owner.exited(); err != nil {
		return err
	}
	if m.role != "worker" {
		return nil
	}
	if ppid, ok := parentPID(m.pid); !ok || ppid != m.owner.cmd.Process.Pid {
		return fmt.Errorf("%s (pid %d) is gone", m.name, m.pid)
	}
	return nil
}

// cpuOf is the CPU seconds used so far by the members serving a path.
func cpuOf(ms []member, path string) float64 {
	var s float64
	for _, m := range ms {
		if m.path == path {
			if st, err := procfs.ReadPID(m.pid); err == nil {
				s += st.CPUSeconds
			}
		}
	}
	return s
}

// waitReady polls every URL until it answers 200, a process exits, the
// timeout passes or ctx ends.
func waitReady(ctx context.Context, urls []string, procs []*process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 500 * time.Millisecond}
	pending := append([]string(nil), urls...)
	for len(pending) > 0 {
		for _, p := range procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited at start: %w", p.name, p.waitErr)
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", timeout, pending)
		}
		var still []string
		for _, u := range pending {
			resp, err := c.Get(u)
			if err == nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != 200 {
				still = append(still, u)
			}
		}
		pending = still
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
