// Package proxyproc runs a skiff-proxy binary as a child process and waits
// until it serves, for the tools and tests that measure the real binary
// (skiff bench idle, the hostile-client suite): its memory is the point,
// so it runs as built, not in-process.
package proxyproc

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Proc is a running skiff-proxy.
type Proc struct {
	Cmd *exec.Cmd
	PID int
	// Ready is the proxy's "proxy ready" log record; Inbound, Outbound
	// and Admin are its listeners' addresses from it ("" when disabled).
	Ready                    map[string]any
	Inbound, Outbound, Admin string
	// Logs holds the proxy's last log lines, for error messages.
	Logs *LogTail

	cancel  context.CancelFunc
	scanned chan struct{} // the log reader is done
}

// Start runs bin with args (which must include --log-format json) and env
// added to this process's, and waits at most wait until it logs "proxy
// ready". Whatever happens, a proxy that is not returned is stopped.
func Start(ctx context.Context, bin string, args, env []string, wait time.Duration) (*Proc, error) {
	pctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(pctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &Proc{Cmd: cmd, PID: cmd.Process.Pid, Logs: &LogTail{}, cancel: cancel, scanned: make(chan struct{})}
	ready := make(chan map[string]any, 1)
	go func() {
		defer close(p.scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.Logs.Add(line)
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "proxy ready" {
				select {
				case ready <- rec:
				default:
				}
			}
		}
		// Drain whatever is left (a line too long for the scanner), so
		// that the process never blocks writing its log.
		io.Copy(io.Discard, stderr)
	}()
	select {
	case rec := <-ready:
		p.Ready = rec
		p.Inbound, _ = rec["inbound"].(string)
		p.Outbound, _ = rec["outbound"].(string)
		p.Admin, _ = rec["admin"].(string)
		return p, nil
	case <-p.scanned:
		p.Stop()
		return nil, fmt.Errorf("skiff-proxy exited before it was ready; its log:\n%s", p.Logs)
	case <-time.After(wait):
		p.Stop()
		return nil, fmt.Errorf("skiff-proxy was not ready within %v; its log:\n%s", wait, p.Logs)
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
}

// Stop kills the proxy (ours, by its PID) and waits for it and its log.
func (p *Proc) Stop() {
	p.cancel()
	p.Cmd.Wait()
	<-p.scanned
}

// tailLines is how many log lines a LogTail keeps.
const tailLines = 40

// LogTail keeps a process's last log lines.
type LogTail struct {
	mu    sync.Mutex
	lines []string
}

// Add appends a line, forgetting the oldest beyond the last 40.
func (l *LogTail) Add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == tailLines {
		l.lines = l.lines[1:]
	}
	l.lines = append(l.lines, s)
}

func (l *LogTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// Build builds cmd/skiff-proxy as the Makefile does (static, trimmed: the
// binary's memory is what is measured) into a new temporary directory,
// and returns its path and a function that removes it. When use is set it
// names a binary to measure instead (another build to compare with), and
// nothing is built. It needs the go command and this module's source: for
// tests and tools run from the repository.
func Build(use string) (bin string, remove func(), err error) {
	if use != "" {
		return use, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "skiff-proxy-build-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "skiff-proxy")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/skiff-mesh/skiff/cmd/skiff-proxy")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building skiff-proxy: %w\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
