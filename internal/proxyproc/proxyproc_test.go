package proxyproc

import (
	"context"
	"strings"
	"testing"

	"github.com/skiff-mesh/skiff/internal/testwait"
)

// A stand-in for the proxy: a shell that logs as the proxy does.
func sh(script string) (string, []string) { return "/bin/sh", []string{"-c", script} }

func TestStartReady(t *testing.T) {
	bin, args := sh(`echo 'starting' >&2; echo '{"msg":"proxy ready","inbound":"127.0.0.1:1","outbound":"127.0.0.1:2","admin":"127.0.0.1:3","memory_budget_mib":32}' >&2; exec sleep 60`)
	p, err := Start(context.Background(), bin, args, nil, testwait.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if p.Inbound != "127.0.0.1:1" || p.Outbound != "127.0.0.1:2" || p.Admin != "127.0.0.1:3" || p.Ready["memory_budget_mib"] != 32.0 {
		t.Errorf("ready record read as %+v", p)
	}
	if !strings.Contains(p.Logs.String(), "starting") {
		t.Errorf("log tail %q lacks the first line", p.Logs)
	}
}

func TestStartExitsFirst(t *testing.T) {
	bin, args := sh(`echo 'bad flag: --nope' >&2; exit 1`)
	_, err := Start(context.Background(), bin, args, nil, testwait.Timeout)
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "bad flag: --nope") {
		t.Fatalf("got %v, want the exit and the log", err)
	}
	if _, err := Start(context.Background(), "/nonexistent/skiff-proxy", nil, nil, testwait.Timeout); err == nil {
		t.Fatal("a missing binary started")
	}
}

func TestLogTailKeepsTheLast(t *testing.T) {
	var l LogTail
	for i := range tailLines + 5 {
		l.Add(strings.Repeat("x", i))
	}
	lines := strings.Split(l.String(), "\n")
	if len(lines) != tailLines || lines[0] != strings.Repeat("x", 5) {
		t.Fatalf("%d lines, first %q", len(lines), lines[0])
	}
}
