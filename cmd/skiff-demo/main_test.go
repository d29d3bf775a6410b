package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skiff-mesh/skiff/simulator/demo"
)

// TestRun starts the binary's run on loopback ports, reads the bound
// addresses from its startup log line, uses every listener and stops it by
// cancelling the context.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{
			"--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0",
			"--tls-addr", "127.0.0.1:0", "--banner-addr", "127.0.0.1:0",
			"--name", "echo-9", "--latency", "0s", "--error-rate", "0", "--seed", "5", "--log-format", "json",
		}, pw)
		pw.Close()
	}()

	sc := bufio.NewScanner(pr)
	var start struct{ Addr, GRPCAddr, TCPAddr, TLSAddr, BannerAddr string }
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if line["msg"] == "skiff-demo listening" {
			start.Addr, _ = line["addr"].(string)
			start.GRPCAddr, _ = line["grpc_addr"].(string)
			start.TCPAddr, _ = line["tcp_addr"].(string)
			start.TLSAddr, _ = line["tls_addr"].(string)
			start.BannerAddr, _ = line["banner_addr"].(string)
			break
		}
	}
	if start.Addr == "" || start.GRPCAddr == "" || start.TCPAddr == "" || start.TLSAddr == "" || start.BannerAddr == "" {
		t.Fatalf("no startup line with five addresses (scan error %v)", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + start.Addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "echo-9") || resp.Header.Get(demo.ReplicaHeader) != "echo-9" {
		t.Errorf("GET / = %q %v", body, resp.Header)
	}

	cc, err := grpc.NewClient("passthrough:///"+start.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if out, err := demo.Echo(ctx, cc, []byte("g")); err != nil || string(out) != "g" {
		t.Errorf("gRPC Echo = %q, %v", out, err)
	}

	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", start.TCPAddr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("t"))
	_ = c.(*net.TCPConn).CloseWrite()
	if out, err := io.ReadAll(c); err != nil || string(out) != "t" {
		t.Errorf("TCP echo = %q, %v", out, err)
	}
	c.Close()

	c, err = d.DialContext(ctx, "tcp", start.BannerAddr)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "220 echo-9 skiff-demo banner\r\n" {
		t.Errorf("banner = %q, %v", line, err)
	}
	c.Close()

	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
}

func TestRunBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--latency", "soon"}, "latency"},
		{[]string{"--latency", "1ms:70,2ms:70"}, "latency"},
		{[]string{"--error-rate", "2", "--addr", "127.0.0.1:0"}, "error_rate"},
		{[]string{"--error-status", "42", "--addr", "127.0.0.1:0"}, "error_status"},
		{[]string{"--log-level", "loud"}, "log-level"},
		{[]string{"--log-format", "xml"}, "log-format"},
		{[]string{"--nope"}, "nope"},
		{[]string{"extra"}, "extra"},
		{[]string{"--addr", "256.0.0.1:1"}, "listen"},
	} {
		var out strings.Builder
		err := run(t.Context(), tc.args, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

func TestRunHelp(t *testing.T) {
	var out strings.Builder
	if err := run(t.Context(), []string{"--help"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"addr", "grpc-addr", "tcp-addr", "tls-addr", "banner-addr", "name", "latency", "error-rate", "error-status", "seed", "log-level"} {
		if !strings.Contains(out.String(), "-"+flag) {
			t.Errorf("usage lacks -%s:\n%s", flag, out.String())
		}
	}
}
