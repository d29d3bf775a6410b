package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPeerConfigs(t *testing.T) {
	const dir, listen, backend = "/tmp/skiff-bench-1/nginx", "127.0.0.1:40014", "127.0.0.1:40001"
	golden(t, "nginx.conf.golden", nginxConfig(dir, listen, backend, true))
	golden(t, "haproxy.cfg.golden", haproxyConfig("/tmp/skiff-bench-1/haproxy", "127.0.0.1:40015", backend))
	if c := nginxConfig(dir, listen, backend, false); strings.Contains(c, "user ") {
		t.Errorf("not root, nginx cannot switch users: the config must not ask it to:\n%s", c)
	}
	// What makes the comparison fair, checked by name so a golden update
	// cannot drop it unnoticed.
	for _, want := range []string{"worker_processes 1;", "keepalive 32;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`,
		"access_log off;", "daemon off;", "listen " + listen + ";"} {
		if !strings.Contains(nginxConfig(dir, listen, backend, true), want) {
			t.Errorf("nginx config lacks %q", want)
		}
	}
	for _, want := range []string{"nbthread 1", "mode http", "option http-keep-alive", "http-reuse always", "bind " + listen} {
		if !strings.Contains(haproxyConfig(dir, listen, backend), want) {
			t.Errorf("haproxy config lacks %q", want)
		}
	}
	if strings.Contains(haproxyConfig(dir, listen, backend), "\n    log") {
		t.Error("haproxy must not log")
	}
}

// The rendered configurations are valid for the installed peers
// (nginx -t, haproxy -c).
func TestPeerConfigsValid(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, name := range []string{PeerNginx, PeerHAProxy} {
		t.Run(name, func(t *testing.T) {
			p, err := FindPeer(ctx, name)
			if err != nil {
				t.Skipf("needs %s: %v (make bench-peers installs it as root)", name, err)
			}
			dir := t.TempDir()
			var cmd *exec.Cmd
			switch name {
			case PeerNginx:
				conf := filepath.Join(dir, "nginx.conf")
				writeFile(t, conf, nginxConfig(dir, "127.0.0.1:1", "127.0.0.1:2", isRoot()))
				cmd = exec.CommandContext(ctx, p.Bin, "-t", "-q", "-p", dir+"/", "-c", conf, "-e", filepath.Join(dir, "error.log"))
			case PeerHAProxy:
				conf := filepath.Join(dir, "haproxy.cfg")
				writeFile(t, conf, haproxyConfig(dir, "127.0.0.1:1", "127.0.0.1:2"))
				cmd = exec.CommandContext(ctx, p.Bin, "-c", "-q", "-f", conf)
			}
			out := &boundedBuffer{max: 8 << 10}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s rejects the configuration: %v\n%s", name, err, out)
			}
			if p.Version == "" {
				t.Errorf("no version read from %s -v", p.Bin)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct{ name, out, want string }{
		{PeerNginx, "nginx version: nginx/1.22.1\n", "nginx/1.22.1"},
		{PeerHAProxy, "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nStatus: long-term supported branch\n", "HAProxy 2.6.12-1+deb12u4"},
		{PeerNginx, "something else", ""},
		{PeerHAProxy, "", ""},
	} {
		if got := parseVersion(tc.name, tc.out); got != tc.want {
			t.Errorf("parseVersion(%s, %q) = %q, want %q", tc.name, tc.out, got, tc.want)
		}
	}
}

func TestParsePeers(t *testing.T) {
	got, err := ParsePeers([]string{"nginx", " HAProxy ", ""})
	if err != nil || strings.Join(got, ",") != "nginx,haproxy" {
		t.Errorf("ParsePeers: %q %v", got, err)
	}
	for _, bad := range [][]string{{"envoy"}, {"nginx", "nginx"}} {
		if _, err := ParsePeers(bad); err == nil {
			t.Errorf("ParsePeers(%q) accepted", bad)
		}
	}
}

func TestBoundedBuffer(t *testing.T) {
	b := &boundedBuffer{max: 4}
	for range 3 {
		if n, err := b.Write([]byte("abc")); n != 3 || err != nil {
			t.Fatalf("Write: %d %v (a bounded writer still takes everything)", n, err)
		}
	}
	if b.String() != "abca" {
		t.Errorf("kept %q, want the first 4 bytes", b.String())
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func isRoot() bool { return os.Geteuid() == 0 }
