package proxyinit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Command is one run of an iptables program.
type Command struct {
	Name  string
	Args  []string
	Stdin []byte
}

// String is the command line, as errors quote it.
func (c Command) String() string { return strings.Join(append([]string{c.Name}, c.Args...), " ") }

// Runner runs a command and returns its standard output. An error for a
// program that is not installed wraps exec.ErrNotFound; any other error
// quotes the command and what it wrote to standard error. Tests use a fake
// that records the commands.
type Runner interface {
	Run(ctx context.Context, c Command) ([]byte, error)
}

var _ Runner = ExecRunner{}

// The bounds of ExecRunner's zero value.
const (
	DefaultCommandTimeout = 10 * time.Second
	DefaultMaxOutput      = 16 << 20
	// maxStderr is what an error quotes of a command's standard error.
	maxStderr = 4 << 10
)

// ExecRunner runs commands as processes, each bounded in time and in the
// output it may return. Its zero value runs them as they are, with the
// default bounds.
type ExecRunner struct {
	// Prefix is prepended to every command line, such as
	// {"ip", "netns", "exec", "pod-1"} to run it in that network
	// namespace. nil: none.
	Prefix []string
	// Timeout bounds each command. 0: DefaultCommandTimeout.
	Timeout time.Duration
	// MaxOutput is the most standard output a command may write; beyond
	// it the command fails. 0: DefaultMaxOutput.
	MaxOutput int
}

// Run runs c, after Prefix.
func (r ExecRunner) Run(ctx context.Context, c Command) ([]byte, error) {
	argv := append(append([]string{}, r.Prefix...), c.Name)
	argv = append(argv, c.Args...)
	line := strings.Join(argv, " ")
	// The program is looked up here even behind a prefix (a namespace
	// shares the file system), so that a missing one is told apart from
	// one that failed.
	if _, err := exec.LookPath(c.Name); err != nil {
		return nil, fmt.Errorf("%s: %w", line, err)
	}
	timeout := cmp.Or(r.Timeout, DefaultCommandTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(c.Stdin)
	stdout := &cappedBuffer{max: cmp.Or(r.MaxOutput, DefaultMaxOutput)}
	stderr := &cappedBuffer{max: maxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A child that keeps the pipes open (none should) cannot hold Run
	// past the timeout by more than this.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("%s: no answer within %v (stderr: %q)", line, timeout, stderr.text())
	case err != nil:
		return nil, fmt.Errorf("%s: %w (stderr: %q)", line, err, stderr.text())
	case stdout.over:
		return nil, fmt.Errorf("%s: more than %d bytes of output", line, stdout.max)
	}
	return stdout.buf.Bytes(), nil
}

// cappedBuffer keeps the first max bytes written to it and discards the
// rest, so that a command that writes too much still runs to its end
// rather than block on a full pipe.
type cappedBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); len(p) > room {
		b.over = true
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *cappedBuffer) text() string {
	s := strings.TrimSpace(b.buf.String())
	if b.over {
		s += "…"
	}
	return s
}
