package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiff-mesh/skiff/faultinject/chaos"

	"github.com/skiff-mesh/skiff/mesh/proxy/endpoint"
	"github.com/skiff-mesh/skiff/simulator/demo"
)

// Pod is a workload process (skiff-demo) and, when meshed, its sidecar
// (skiff-proxy), on the pod's own loopback address; or, for the client
// pod, a sidecar alone. Its methods are safe for concurrent use; the
// lifecycle operations (Kill, Restart, Pause, Resume) run one at a time.
type Pod struct {
	env        *Env
	name       string
	ip         netip.Addr
	svc        *service // nil for the client pod
	replica    int
	log        *slog.Logger
	link       *chaos.Link // in front of the pod when its service has Chaos
	controller bool        // the control plane's pod
	net        PodNetwork  // with Config.Network: the pod's own network
	initDone   bool        // its interception rules are installed; guarded by opMu
	netMu      sync.Mutex  // guards faults
	faults     netFaults   // network faults in force (Config.Network)

	opMu sync.Mutex // serialises lifecycle operations

	mu      sync.Mutex
	procs   []*proc // the current incarnation: app first
	gen     uint64  // bumped on every start, kill and stop
	down    bool    // killed, stopped or starting: neither probed nor ready
	paused  bool
	healthy bool // the prober's verdict
	drained bool // taken out of the registry while running (Drain)
	fails   int  // probes failed in a row
}

// proc is one started process.
type proc struct {
	role    string
	pid     int
	logPath string
	done    chan struct{} // closed once cmd.Wait returned
	err     error         // cmd.Wait's result, set before done closes
}

func (pr *proc) alive() bool {
	select {
	case <-pr.done:
		return false
	default:
		return true
	}
}

func (e *Env) newPod(name string, ip netip.Addr) *Pod {
	return &Pod{env: e, name: name, ip: ip, down: true, log: e.log.With("pod", name)}
}

// Name is "<service>-<i>", or ClientPod.
func (p *Pod) Name() string { return p.name }

// Service is the pod's service, "" for the client pod.
func (p *Pod) Service() string {
	if p.svc == nil {
		return ""
	}
	return p.svc.spec.Name
}

// IP is the pod's loopback address.
func (p *Pod) IP() netip.Addr { return p.ip }

// Meshed reports whether the pod runs a sidecar (always for the client).
func (p *Pod) Meshed() bool { return !p.controller && (p.svc == nil || p.svc.spec.Meshed) }

func (p *Pod) addr(port int, ok bool) string {
	if !ok {
		return ""
	}
	return net.JoinHostPort(p.ip.String(), strconv.Itoa(port))
}

// AppAddr is the workload's HTTP/1.1 + h2c + gRPC address; "" for the
// client pod.
func (p *Pod) AppAddr() string { return p.addr(p.env.cfg.Ports.App, p.svc != nil) }

// AppTCPAddr is the workload's TCP echo address; "" for the client pod.
func (p *Pod) AppTCPAddr() string { return p.addr(p.env.cfg.Ports.AppTCP, p.svc != nil) }

// AppTLSAddr is the workload's TLS echo address; "" for the client pod.
func (p *Pod) AppTLSAddr() string { return p.addr(p.env.cfg.Ports.AppTLS, p.svc != nil) }

// AppBannerAddr is the workload's banner address (a server-speaks-first
// protocol); "" for the client pod.
func (p *Pod) AppBannerAddr() string { return p.addr(p.env.cfg.Ports.AppBanner, p.svc != nil) }

// InboundAddr is the sidecar's inbound address; "" when unmeshed and for
// the client pod.
func (p *Pod) InboundAddr() string {
	return p.addr(p.env.cfg.Ports.Inbound, p.svc != nil && p.Meshed())
}

// OutboundAddr is the sidecar's outbound address; "" when unmeshed. On a
// Network it is on the pod's loopback, where the init step's rules
// redirect the workload's outbound connections.
func (p *Pod) OutboundAddr() string {
	if p.net != nil && p.Meshed() {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.env.cfg.Ports.Outbound))
	}
	return p.addr(p.env.cfg.Ports.Outbound, p.Meshed())
}

// AdminAddr is the sidecar's admin address (/ready, /metrics); "" when
// unmeshed.
func (p *Pod) AdminAddr() string { return p.addr(p.env.cfg.Ports.Admin, p.Meshed()) }

// ctlAdminAddr is the controller's admin address.
func (p *Pod) ctlAdminAddr() string {
	return net.JoinHostPort(p.ip.String(), strconv.Itoa(p.env.cfg.Ports.CtlAdmin))
}

// endpoint is the pod's registry entry.
func (p *Pod) endpoint() endpoint.Endpoint {
	ep := endpoint.Endpoint{
		Meshed:   p.svc.spec.Meshed,
		Protocol: protocolHint(p.svc.spec.Protocol),
		Labels:   map[string]string{"pod": p.name, "service": p.svc.spec.Name},
	}
	ep.Addr = p.endpointAddr()
	if ep.Meshed && p.env.ctl != nil {
		ep.Identity = p.spiffeID()
	}
	if p.link != nil {
		ep.Addr = p.link.Addr()
	}
	return ep
}

// endpointAddr is where peers reach the pod, chaos link aside.
func (p *Pod) endpointAddr() string {
	switch {
	case p.svc.spec.Meshed && p.net != nil:
		// Transparent: peers dial the workload, whose pod's rules take
		// the connection to its sidecar, as in a cluster.
		if p.svc.spec.Protocol == ProtocolTCP {
			return p.AppTCPAddr()
		}
		return p.AppAddr()
	case p.svc.spec.Meshed:
		return p.InboundAddr()
	case p.svc.spec.Protocol == ProtocolTCP:
		return p.AppTCPAddr()
	default:
		return p.AppAddr()
	}
}

// Chaos returns the TCP chaos link in front of the pod, or nil when its
// service was not set up with ServiceSpec.Chaos.
func (p *Pod) Chaos() *chaos.Link { return p.link }

// Ready reports whether the pod is in the registry: started, not killed,
// every process running and answering its health check.
func (p *Pod) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readyLocked()
}

func (p *Pod) readyLocked() bool {
	if p.down || p.drained || !p.healthy || len(p.procs) == 0 {
		return false
	}
	for _, pr := range p.procs {
		if !pr.alive() {
			return false
		}
	}
	return true
}

// Paused reports whether Pause stopped the pod's processes.
func (p *Pod) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Processes lists the pod's running processes.
func (p *Pod) Processes() []Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Process
	for _, pr := range p.procs {
		if pr.alive() {
			out = append(out, Process{Pod: p.name, Name: processName(p.name, pr.role), Role: pr.role, PID: pr.pid})
		}
	}
	return out
}

// processName names a pod's process "<pod>-<role>", or "<pod>" when the
// pod is named after its only role (the controller pod, not
// "controller-controller").
func processName(pod, role string) string {
	if pod == role {
		return pod
	}
	return pod + "-" + role
}

// procSpec is what to run for one process of the pod.
type procSpec struct {
	role, bin string
	args      []string
}

// spiffeID is the identity of the pod's workload: its service's account.
func (p *Pod) spiffeID() string {
	sa := ClientPod
	if p.svc != nil {
		sa = p.svc.spec.Name
	}
	return "spiffe://" + TrustDomain + "/ns/" + Namespace + "/sa/" + sa
}

func (p *Pod) procSpecs() []procSpec {
	e := p.env
	half := (e.cfg.StopTimeout / 2).String()
	var out []procSpec
	if p.controller {
		args := []string{"all",
			"--grpc-addr", e.ControlAddr(), "--admin-addr", p.ctlAdminAddr(),
			"--registry-file", e.file.Path(), "--registry-poll", e.cfg.EndpointsPoll.String(),
			"--trust-domain", TrustDomain, "--trust-anchors", e.TrustAnchorsPath(),
			"--identity-issuer-cert", filepath.Join(e.idDir, "issuer.crt"), "--identity-issuer-key", filepath.Join(e.idDir, "issuer.key"),
			"--identity-reload-interval", e.cfg.EndpointsPoll.String(),
			"--token-key-file", filepath.Join(e.idDir, "token.key"),
			"--shutdown-grace", half, "--log-format", "json",
		}
		if e.cfg.LeafLifetime > 0 {
			args = append(args, "--leaf-lifetime", e.cfg.LeafLifetime.String())
		}
		if path := e.resourcesPath(); path != "" {
			args = append(args, "--resources", path, "--resources-poll", e.cfg.EndpointsPoll.String())
		}
		return []procSpec{{RoleController, e.cfg.Bin.Controller, args}}
	}
	if p.svc != nil {
		args := []string{
			"--addr", p.AppAddr(), "--tcp-addr", p.AppTCPAddr(), "--name", p.name,
			"--tls-addr", p.AppTLSAddr(), "--banner-addr", p.AppBannerAddr(),
			"--seed", strconv.FormatUint(podSeed(e.seed, p.name), 10),
			"--shutdown-timeout", half, "--log-format", "json",
		}
		if p.replica < len(p.svc.spec.Behaviour) {
			args = append(args, behaviourFlags(p.svc.spec.Behaviour[p.replica])...)
		}
		out = append(out, procSpec{RoleApp, e.cfg.Bin.Demo, append(args, e.cfg.DemoArgs...)})
	}
	if p.Meshed() {
		args := []string{
			"--outbound-addr", p.OutboundAddr(), "--admin-addr", p.AdminAddr(),
			"--drain-timeout", half, "--log-format", "json",
		}
		if e.ctl != nil {
			args = append(args, "--destination-addr", e.ControlAddr(),
				"--identity-id", p.spiffeID(), "--identity-token-file", e.tokenPath(p.name),
				"--trust-anchors", e.TrustAnchorsPath(), "--trust-anchors-poll", e.cfg.EndpointsPoll.String())
			if e.cfg.StrictMTLS && p.svc != nil {
				args = append(args, "--require-mtls")
			}
		} else {
			args = append(args, "--endpoints-file", e.file.Path(), "--endpoints-poll", e.cfg.EndpointsPoll.String())
		}
		if p.net != nil {
			// The init step redirects the pod's traffic here; connections
			// keep their original destination (SO_ORIGINAL_DST), and the
			// sidecar's own are marked so the rules let them pass.
			args = append(args, "--transparent", "--socket-mark", strconv.Itoa(ProxyMark))
		}
		if p.svc != nil && p.net != nil {
			// Redirected connections go to their original destination;
			// one made to the inbound port itself (the harness's mTLS
			// and rotation probes, from inside the pod) to the workload.
			forward := p.AppAddr()
			if p.svc.spec.Protocol == ProtocolTCP {
				forward = p.AppTCPAddr()
				args = append(args, "--opaque-ports", strconv.Itoa(e.cfg.Ports.AppTCP))
			}
			args = append(args, "--inbound-addr", p.InboundAddr(), "--inbound-forward", forward)
		} else if p.svc != nil {
			forward := p.AppAddr()
			if p.svc.spec.Protocol == ProtocolTCP {
				// Opaque at once: no protocol detection on raw bytes.
				forward = p.AppTCPAddr()
				args = append(args, "--opaque-ports", strconv.Itoa(e.cfg.Ports.AppTCP))
			}
			args = append(args, "--inbound-addr", p.InboundAddr(), "--inbound-forward", forward)
		} else {
			args = append(args, "--inbound-addr", "-")
			e.mu.Lock()
			for _, s := range e.services {
				if s.tcpAddr != "" {
					args = append(args, "--tcp-route", s.tcpAddr+"="+s.authority)
				}
			}
			e.mu.Unlock()
		}
		args = append(args, e.failoverFlags()...)
		out = append(out, procSpec{RoleProxy, e.cfg.Bin.Proxy, append(args, e.cfg.ProxyArgs...)})
	}
	return out
}

// behaviourFlags renders a behaviour as skiff-demo flags, so that
// ResetBehaviour (DELETE /_demo/behaviour) returns to it.
func behaviourFlags(b demo.Behaviour) []string {
	var f []string
	if len(b.Latency) > 0 {
		f = append(f, "--latency", b.Latency.String())
	}
	if b.LatencyJitter > 0 {
		f = append(f, "--latency-jitter", b.LatencyJitter.String())
	}
	if b.ErrorRate > 0 {
		f = append(f, "--error-rate", strconv.FormatFloat(b.ErrorRate, 'g', -1, 64))
	}
	if b.ErrorStatus != 0 {
		f = append(f, "--error-status", strconv.Itoa(b.ErrorStatus))
	}
	if b.ResetRate > 0 {
		f = append(f, "--reset-rate", strconv.FormatFloat(b.ResetRate, 'g', -1, 64))
	}
	if b.MaxConcurrent > 0 {
		f = append(f, "--max-concurrent", strconv.Itoa(b.MaxConcurrent))
	}
	return f
}

// startProc starts one process with its output appended to its log file.
// Its lifetime is the Env's: cancelling the Env's context sends SIGTERM
// (and SIGCONT, in case it is paused) to its process group, and exec's
// WaitDelay sends SIGKILL StopTimeout later.
func (p *Pod) startProc(sp procSpec) (*proc, error) {
	e := p.env
	logPath := e.LogPath(p.name, sp.role)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", p.name, err)
	}
	defer f.Close() // the child has its own descriptor
	// A marker in the processes' own JSON log shape: where each (re)start
	// begins, and with which command line.
	marker, _ := json.Marshal(map[string]any{
		"time": time.Now().Format(time.RFC3339Nano), "level": "INFO", "msg": "starting process",
		"component": "simulator", "pod": p.name, "role": sp.role, "argv": append([]string{sp.bin}, sp.args...),
	})
	f.Write(append(marker, '\n'))

	argv := append([]string{sp.bin}, sp.args...)
	if p.net != nil {
		argv = p.net.Wrap(argv)
	}
	cmd := exec.CommandContext(e.ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error {
		signalGroup(cmd.Process.Pid, syscall.SIGTERM)
		signalGroup(cmd.Process.Pid, syscall.SIGCONT)
		return nil
	}
	cmd.WaitDelay = e.cfg.StopTimeout

	e.lifeMu.RLock()
	defer e.lifeMu.RUnlock()
	if e.stopped || e.ctx.Err() != nil {
		return nil, fmt.Errorf("pod %s: the environment is closed", p.name)
	}
	started := make(chan error, 1)
	e.spawn <- func() { started <- cmd.Start() }
	if err := <-started; err != nil {
		return nil, fmt.Errorf("pod %s: start %s: %w", p.name, sp.role, err)
	}
	pr := &proc{role: sp.role, pid: cmd.Process.Pid, logPath: logPath, done: make(chan struct{})}
	e.procWG.Go(func() {
		pr.err = cmd.Wait()
		close(pr.done)
		p.exited(pr)
	})
	p.log.Debug("process started", "role", sp.role, "pid", pr.pid)
	return pr, nil
}

// signalGroup signals the process group led by pid (Setpgid: pgid = pid).
func signalGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return errors.New("no process")
	}
	return syscall.Kill(-pid, sig)
}

// exited notes a process that ended. One that ended on its own (not by
// Kill, Restart or Close) makes the pod not ready at once.
func (p *Pod) exited(pr *proc) {
	p.mu.Lock()
	current := slices.Contains(p.procs, pr)
	expected := p.down
	p.mu.Unlock()
	if !current || expected || p.env.closed.Load() {
		return
	}
	p.log.Warn("process exited unexpectedly; pod not ready", "role", pr.role, "pid", pr.pid, "err", pr.err, "log", pr.logPath)
	p.env.publish()
}

// start starts the pod's processes and waits until they are ready, then
// lists the pod in the registry. On failure nothing of it is left running.
// opMu is held.
func (p *Pod) start(ctx context.Context) error {
	if err := p.intercept(ctx); err != nil {
		return err
	}
	var procs []*proc
	for _, sp := range p.procSpecs() {
		pr, err := p.startProc(sp)
		if err != nil {
			p.killProcs(procs)
			return err
		}
		procs = append(procs, pr)
	}
	p.mu.Lock()
	p.procs, p.down, p.paused, p.healthy, p.fails = procs, true, false, false, 0
	p.gen++
	gen := p.gen
	p.mu.Unlock()

	if err := p.waitReady(ctx, procs); err != nil {
		p.mu.Lock()
		p.gen++
		p.mu.Unlock()
		p.killProcs(procs)
		return err
	}
	p.mu.Lock()
	if p.gen == gen {
		p.down, p.healthy = false, true
	}
	p.mu.Unlock()
	p.env.publish()
	p.log.Info("pod ready", "ip", p.ip.String())
	return nil
}

// waitReady polls the pod's health checks until all pass, a process
// exits, ctx ends or ReadyTimeout passes.
func (p *Pod) waitReady(ctx context.Context, procs []*proc) error {
	timeout := p.env.cfg.ReadyTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTimer(0)
	defer t.Stop()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			why := "not ready after " + timeout.String()
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = "start cancelled"
			}
			last := "none ran"
			if lastErr != nil {
				last = lastErr.Error()
			}
			return fmt.Errorf("pod %s: %s (last check: %s); logs: %s",
				p.name, why, last, p.env.LogPath(p.name, "*"))
		case <-t.C:
		}
		for _, pr := range procs {
			if !pr.alive() {
				status := "exit status 0"
				if pr.err != nil {
					status = pr.err.Error()
				}
				return fmt.Errorf("pod %s: %s exited during start-up (%s); %s:\n%s",
					p.name, pr.role, status, pr.logPath, logTail(pr.logPath, 10))
			}
		}
		if lastErr = p.probe(ctx); lastErr == nil {
			return nil
		}
		t.Reset(20 * time.Millisecond)
	}
}

// probe runs the pod's health checks once, each bounded by ProbeTimeout.
func (p *Pod) probe(ctx context.Context) error {
	if p.controller {
		return p.env.get(ctx, "http://"+p.ctlAdminAddr()+"/ready", p.env.cfg.ProbeTimeout)
	}
	if p.svc != nil {
		if err := p.env.get(ctx, "http://"+p.AppAddr()+"/healthz", p.env.cfg.ProbeTimeout); err != nil {
			return fmt.Errorf("app: %w", err)
		}
	}
	if p.Meshed() {
		if err := p.env.get(ctx, "http://"+p.AdminAddr()+"/ready", p.env.cfg.ProbeTimeout); err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
	}
	return nil
}

// get is a GET that wants 200.
func (e *Env) get(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := e.httpc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// probeLoop is the pod's readiness prober: every ProbeInterval, both
// health checks; ProbeFailures failures in a row take the pod out of the
// registry, one success puts it back. A paused pod stops answering and so
// leaves the registry after about ProbeFailures × (ProbeInterval +
// ProbeTimeout).
func (p *Pod) probeLoop() {
	e := p.env
	t := time.NewTimer(e.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		skip, gen := p.down || len(p.procs) == 0, p.gen
		p.mu.Unlock()
		if !skip {
			err := p.probe(e.ctx)
			p.mu.Lock()
			if gen == p.gen && !p.down {
				before := p.readyLocked()
				if err == nil {
					p.fails, p.healthy = 0, true
				} else if p.fails++; p.fails >= e.cfg.ProbeFailures {
					p.healthy = false
				}
				after := p.readyLocked()
				p.mu.Unlock()
				if before != after && e.ctx.Err() == nil {
					if after {
						p.log.Info("pod answers its health checks again; back in the registry")
					} else {
						p.log.Info("pod fails its health checks; out of the registry", "err", err)
					}
					e.publish()
				}
			} else {
				p.mu.Unlock()
			}
		}
		t.Reset(e.cfg.ProbeInterval)
	}
}

// killProcs SIGKILLs procs and waits until they are reaped.
func (p *Pod) killProcs(procs []*proc) error {
	for _, pr := range procs {
		if pr.alive() {
			signalGroup(pr.pid, syscall.SIGKILL)
		}
	}
	return p.waitGone(procs, 5*time.Second)
}

func (p *Pod) waitGone(procs []*proc, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, pr := range procs {
		select {
		case <-pr.done:
		case <-deadline.C:
			return fmt.Errorf("pod %s: %s (pid %d) still running after %s", p.name, pr.role, pr.pid, timeout)
		}
	}
	return nil
}

// markDown takes the pod out of service for a lifecycle operation and
// returns its processes; opMu is held.
func (p *Pod) markDown() []*proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down, p.healthy, p.paused = true, false, false
	p.gen++
	return p.procs
}

// Kill SIGKILLs the pod's processes, takes it out of the registry at once
// and waits until the processes are gone. Killing a pod that is not
// running does nothing.
func (p *Pod) Kill() error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	procs := p.markDown()
	for _, pr := range procs {
		if pr.alive() {
			signalGroup(pr.pid, syscall.SIGKILL)
		}
	}
	p.env.publish()
	if err := p.waitGone(procs, 5*time.Second); err != nil {
		return fmt.Errorf("local: kill: %w", err)
	}
	p.log.Info("pod killed")
	return nil
}

// Restart stops the pod if it runs (SIGTERM, SIGKILL after StopTimeout),
// starts it again and waits until it is ready and back in the registry.
// ctx bounds the wait, not the processes' life.
func (p *Pod) Restart(ctx context.Context) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	procs := p.markDown()
	var running []*proc
	for _, pr := range procs {
		if pr.alive() {
			running = append(running, pr)
		}
	}
	if len(running) > 0 {
		p.env.publish()
		for _, pr := range running {
			signalGroup(pr.pid, syscall.SIGTERM)
			signalGroup(pr.pid, syscall.SIGCONT)
		}
		if p.waitGone(running, p.env.cfg.StopTimeout) != nil {
			if err := p.killProcs(running); err != nil {
				return fmt.Errorf("local: restart: %w", err)
			}
		}
	}
	if err := p.start(ctx); err != nil {
		return fmt.Errorf("local: restart: %w", err)
	}
	return nil
}

// Drain takes the pod out of the registry while its processes keep
// running and serving whoever still sends to them: Kubernetes' not-ready
// pod. The registry changes before Drain returns.
func (p *Pod) Drain() error { return p.setDrained(true) }

// Undrain puts a drained pod back into the registry (once its prober finds
// it healthy).
func (p *Pod) Undrain() error { return p.setDrained(false) }

func (p *Pod) setDrained(on bool) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	p.mu.Lock()
	p.drained = on
	p.mu.Unlock()
	p.env.publish()
	if on {
		p.log.Info("pod drained: out of the registry, still running")
	} else {
		p.log.Info("pod back in the registry")
	}
	return nil
}

// Pause stops the pod's processes with SIGSTOP. The pod stays in the
// registry until its prober notices it no longer answers (see
// Config.ProbeFailures), as Kubernetes readiness would.
func (p *Pod) Pause() error { return p.signalAll("pause", syscall.SIGSTOP, true) }

// Resume continues paused processes with SIGCONT; the prober puts the pod
// back in the registry at its next successful probe.
func (p *Pod) Resume() error { return p.signalAll("resume", syscall.SIGCONT, false) }

func (p *Pod) signalAll(op string, sig syscall.Signal, paused bool) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.procs) == 0 || (p.down && paused) {
		return fmt.Errorf("local: %s pod %s: it is not running", op, p.name)
	}
	var errs []error
	for _, pr := range p.procs {
		if pr.alive() {
			if err := signalGroup(pr.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("%s (pid %d): %w", pr.role, pr.pid, err))
			}
		}
	}
	p.paused = paused
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local: %s pod %s: %w", op, p.name, err)
	}
	p.log.Info("pod " + op + "d")
	return nil
}

// SetBehaviour replaces the workload's behaviour (PUT /_demo/behaviour).
func (p *Pod) SetBehaviour(ctx context.Context, b demo.Behaviour) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("local: set behaviour of %s: %w", p.name, err)
	}
	body, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return p.admin(ctx, http.MethodPut, "/_demo/behaviour", body, nil)
}

// ResetBehaviour returns the workload to its behaviour at start
// (ServiceSpec.Behaviour) with DELETE /_demo/behaviour.
func (p *Pod) ResetBehaviour(ctx context.Context) error {
	return p.admin(ctx, http.MethodDelete, "/_demo/behaviour", nil, nil)
}

// Stats reads the workload's request counters (GET /_demo/stats).
func (p *Pod) Stats(ctx context.Context) (demo.Stats, error) {
	var s demo.Stats
	err := p.admin(ctx, http.MethodGet, "/_demo/stats", nil, &s)
	return s, err
}

// ResetStats zeroes the workload's counters (DELETE /_demo/stats).
func (p *Pod) ResetStats(ctx context.Context) error {
	return p.admin(ctx, http.MethodDelete, "/_demo/stats", nil, nil)
}

// admin calls the workload's admin API; ctx without a deadline gets 5 s.
func (p *Pod) admin(ctx context.Context, method, path string, body []byte, out any) error {
	if p.svc == nil {
		return fmt.Errorf("local: %s %s: pod %s has no workload", method, path, p.name)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+p.AppAddr()+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.env.httpc.Do(req)
	if err != nil {
		return fmt.Errorf("local: %s %s on pod %s: %w", method, path, p.name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("local: %s %s on pod %s: %w", method, path, p.name, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("local: %s %s on pod %s: %s: %s", method, path, p.name, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("local: %s %s on pod %s: decode: %w", method, path, p.name, err)
		}
	}
	return nil
}

// logTail returns the last n lines of a log file, for error messages.
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	const max = 4 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		f.Seek(fi.Size()-max, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\t" + strings.Join(lines, "\n\t")
}
