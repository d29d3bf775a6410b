package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The peers bench can measure Skiff's proxy beside: each a one-hop
// HTTP/1.1 reverse proxy to the same skiff-demo backend, configured as
// docs/proxy.md ("Measured beside nginx and haproxy") explains.
const (
	PeerNginx   = "nginx"
	PeerHAProxy = "haproxy"
)

// Peer is a peer proxy to run: its name (PeerNginx, PeerHAProxy) and
// binary.
type Peer struct {
	Name, Bin string
	// Version is what the binary says it is ("nginx/1.22.1"); empty
	// when it would not say.
	Version string
}

// ParsePeers checks a --peers list: known names, each once.
func ParsePeers(names []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		if n != PeerNginx && n != PeerHAProxy {
			return nil, fmt.Errorf("peer %q: want %s or %s", n, PeerNginx, PeerHAProxy)
		}
		if seen[n] {
			return nil, fmt.Errorf("peer %q named twice", n)
		}
		seen[n] = true
		out = append(out, n)
	}
	return out, nil
}

// FindPeer looks for a peer's binary on PATH, then in /usr/sbin and
// /usr/local/sbin (Debian installs both peers there, off a normal user's
// PATH), and asks it its version.
func FindPeer(ctx context.Context, name string) (Peer, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
			if st, serr := os.Stat(filepath.Join(dir, name)); serr == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				bin, err = filepath.Join(dir, name), nil
				break
			}
		}
	}
	if err != nil {
		return Peer{}, fmt.Errorf("%s is not installed (not on PATH, nor in /usr/sbin)", name)
	}
	return Peer{Name: name, Bin: bin, Version: peerVersion(ctx, name, bin)}, nil
}

// peerVersion runs "BIN -v" and reads the version from its first line;
// the output read is bounded.
func peerVersion(ctx context.Context, name, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := &boundedBuffer{max: 4 << 10}
	cmd := exec.CommandContext(ctx, bin, "-v")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return ""
	}
	return parseVersion(name, out.String())
}

// parseVersion reads "nginx version: nginx/1.22.1" and "HAProxy version
// 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/".
func parseVersion(name, out string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	switch name {
	case PeerNginx:
		if _, v, ok := strings.Cut(line, "nginx version: "); ok {
			return strings.TrimSpace(v)
		}
	case PeerHAProxy:
		if f := strings.Fields(line); len(f) >= 3 && f[1] == "version" {
			return "HAProxy " + f[2]
		}
	}
	return ""
}

// nginxConfig is nginx as a one-hop reverse proxy on listen to backend,
// set like the Skiff proxy beside it: one worker (Skiff's --cores 1), no
// access log, keep-alive to the backend, in the foreground, every file it
// writes in dir. asRoot adds "user root": run as root, nginx would
// otherwise switch its worker to nobody, which cannot write dir (and the
// bench runs every process it measures as the same user).
func nginxConfig(dir, listen, backend string, asRoot bool) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# skiff bench: nginx as a one-hop HTTP/1.1 reverse proxy to skiff-demo,")
	p("# set like the Skiff proxy it is measured beside (docs/proxy.md).")
	p("daemon off;")
	p("master_process on;")
	p("worker_processes 1;")
	if asRoot {
		p("user root;")
	}
	p("pid %s;", filepath.Join(dir, "nginx.pid"))
	p("error_log %s warn;", filepath.Join(dir, "error.log"))
	p("")
	p("events {")
	p("    worker_connections 1024;")
	p("}")
	p("")
	p("http {")
	p("    access_log off;")
	for _, t := range []struct{ directive, sub string }{
		{"client_body_temp_path", "client_body"}, {"proxy_temp_path", "proxy"},
		{"fastcgi_temp_path", "fastcgi"}, {"uwsgi_temp_path", "uwsgi"}, {"scgi_temp_path", "scgi"},
	} {
		p("    %s %s;", t.directive, filepath.Join(dir, t.sub))
	}
	p("    # The load generator's connections live for the whole run, as")
	p("    # they do through Skiff and haproxy (nginx closes one after 1000")
	p("    # requests by default).")
	p("    keepalive_requests 1000000;")
	p("")
	p("    upstream skiff_demo {")
	p("        server %s;", backend)
	p("        keepalive 32;")
	p("        keepalive_requests 1000000;")
	p("    }")
	p("")
	p("    server {")
	p("        listen %s;", listen)
	p("        location / {")
	p("            proxy_pass http://skiff_demo;")
	p("            proxy_http_version 1.1;")
	p("            proxy_set_header Connection \"\";")
	p("        }")
	p("    }")
	p("}")
	return b.String()
}

// haproxyConfig is haproxy as a one-hop reverse proxy on listen to
// backend, set like the Skiff proxy beside it: one thread, no log, HTTP
// mode with keep-alive on both sides and any idle backend connection
// reused (as nginx's keepalive pool and Skiff's do).
func haproxyConfig(dir, listen, backend string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# skiff bench: haproxy as a one-hop HTTP/1.1 reverse proxy to skiff-demo,")
	p("# set like the Skiff proxy it is measured beside (docs/proxy.md).")
	p("# No log line anywhere: nothing is logged.")
	p("global")
	p("    nbthread 1")
	p("    maxconn 1024")
	p("    pidfile %s", filepath.Join(dir, "haproxy.pid"))
	p("")
	p("defaults")
	p("    mode http")
	p("    option http-keep-alive")
	p("    http-reuse always")
	p("    timeout connect 5s")
	p("    timeout client 30s")
	p("    timeout server 30s")
	p("    timeout http-keep-alive 30s")
	p("")
	p("frontend bench")
	p("    bind %s", listen)
	p("    default_backend skiff_demo")
	p("")
	p("backend skiff_demo")
	p("    server demo %s", backend)
	return b.String()
}

// peerPackages are the Debian packages that bring each peer, in order of
// preference: nginx-light is the small build (on bookworm it pulls the
// nginx binary package and no optional modules).
var peerPackages = map[string][]string{
	PeerNginx:   {"nginx-light", "nginx"},
	PeerHAProxy: {"haproxy"},
}

// peerPIDFiles are where the packages' own services would write their
// PID: a file that appears during the install is a daemon the install
// started.
var peerPIDFiles = map[string]string{PeerNginx: "/run/nginx.pid", PeerHAProxy: "/run/haproxy.pid"}

// policyRCD is Debian's hook that tells package scripts whether they may
// start services (invoke-rc.d(8)); exit 101 says no.
const policyRCD = "/usr/sbin/policy-rc.d"

// InstallPeers installs the named peers from Debian packages: root and
// apt-get only, "apt-get update" first, no recommended packages. The
// packages' scripts are kept from starting their system services (a
// policy-rc.d that refuses, unless one is already in place, removed
// after); a service that started all the same is stopped with its init
// script. apt-get's output goes to logPath. It returns the peers it could
// not install with the reason, nil when all were installed.
func InstallPeers(ctx context.Context, names []string, logPath string) error {
	if len(names) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("installing them needs root (apt-get)")
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil {
		return errors.New("installing them needs apt-get, and this machine has none")
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if _, err := os.Stat(policyRCD); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policyRCD, []byte("#!/bin/sh\n# Written by skiff bench while it installs peers, and removed after.\nexit 101\n"), 0o755); err == nil {
			defer os.Remove(policyRCD)
		}
	}
	existed := map[string]bool{}
	for _, n := range names {
		_, err := os.Stat(peerPIDFiles[n])
		existed[n] = err == nil
	}
	run := func(args ...string) error {
		fmt.Fprintf(logf, "$ apt-get %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, apt, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = logf, logf
		return cmd.Run()
	}
	if err := run("update", "-qq"); err != nil {
		return fmt.Errorf("apt-get update failed: %w (log: %s)", err, logPath)
	}
	var failed []string
	for _, n := range names {
		ok := false
		for _, pkg := range peerPackages[n] {
			if run("install", "-y", "-qq", "--no-install-recommends", pkg) == nil {
				ok = true
				break
			}
		}
		if !ok {
			failed = append(failed, n)
		}
		if _, err := os.Stat(peerPIDFiles[n]); err == nil && !existed[n] {
			if script := "/etc/init.d/" + n; fileExists(script) {
				cmd := exec.CommandContext(ctx, script, "stop")
				cmd.Stdout, cmd.Stderr = logf, logf
				_ = cmd.Run()
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("apt-get could not install %s (log: %s)", strings.Join(failed, ", "), logPath)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// boundedBuffer keeps the first max bytes written to it and drops the
// rest: a child's output, read whole, must not be able to grow without
// bound.
type boundedBuffer struct {
	b   bytes.Buffer
	max int
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if room := w.max - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *boundedBuffer) String() string { return w.b.String() }
