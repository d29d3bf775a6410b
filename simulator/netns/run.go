package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"time"
)

// outputCap bounds what is kept of a command's stdout and of its stderr.
const outputCap = 64 << 10

// runner runs the ip and iptables commands, each bounded in time and
// output.
type runner struct {
	timeout time.Duration
	log     *slog.Logger
}

// capped keeps the first outputCap bytes written to it.
type capped struct {
	buf bytes.Buffer
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	room := outputCap - c.buf.Len()
	if len(p) > room {
		c.buf.Write(p[:max(room, 0)])
		c.cut = true
		return len(p), nil
	}
	return c.buf.Write(p)
}

func (c *capped) String() string {
	s := strings.TrimSpace(c.buf.String())
	if c.cut {
		s += " […cut]"
	}
	return s
}

// run runs name with args (stdin, when not empty, on its standard input)
// and returns its stdout. Errors name the command line, why it failed
// (exit status, timeout) and its stderr.
func (r runner) run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, name, args...)
	cmd.SysProcAttr = procAttr()
	cmd.WaitDelay = time.Second // bounds the wait for pipes a killed command leaves open
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r.log.Debug("run", "cmd", cmdLine(name, args), "stdin", stdin)
	err := cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("timed out after %v (%w)", r.timeout, err)
	}
	msg := fmt.Sprintf("%s: %v", cmdLine(name, args), err)
	if s := stderr.String(); s != "" {
		msg += ": " + s
	}
	if stdin != "" {
		in := strings.ReplaceAll(strings.TrimSpace(stdin), "\n", "; ")
		if len(in) > 512 {
			in = in[:512] + "…"
		}
		msg += " (input: " + in + ")"
	}
	return stdout.String(), &CommandError{msg: msg, err: err}
}

// CommandError is a failed ip or iptables command: its message names the
// command line, why it failed and what it printed on stderr.
type CommandError struct {
	msg string
	err error
}

func (e *CommandError) Error() string { return e.msg }

// Unwrap gives the process error (an *exec.ExitError, or the context's
// error when the command was cut short).
func (e *CommandError) Unwrap() error { return e.err }

func cmdLine(name string, args []string) string {
	return strings.Join(append([]string{name}, args...), " ")
}
