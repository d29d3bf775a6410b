package bench

import "path/filepath"

// Paths of the build under test, in the order each trial measures them.
const (
	PathDirect = "direct"
	PathOneHop = "one-hop"
	PathTwoHop = "two-hop"
)

// BaseSuffix names a path served by the base build's proxies (Config.
// BaselineProxyBin): "one-hop@base" is one-hop through the old proxy.
const BaseSuffix = "@base"

// Kinds of path (PathReport.Kind).
const (
	KindDirect = "direct" // client → backend
	KindSkiff  = "skiff"  // through the build under test
	KindBase   = "base"   // through the base build, for the A/B gate
	KindPeer   = "peer"   // through another proxy (nginx, haproxy)
)

// authority is what the load generator sends as Host on a proxied path:
// Skiff's proxies route by it, the backend and the peers ignore it.
const authority = "echo.bench.svc:8080"

// pathSpec is one way the load reaches the backend: the address the load
// generator sends to and the processes that serve it (none for direct).
type pathSpec struct {
	Name  string
	Kind  string
	Entry string
	// Twin is the path of the other build this one is compared with
	// (one-hop ↔ one-hop@base); empty when there is none.
	Twin  string
	Procs []procSpec
}

// procSpec is a process a path needs.
type procSpec struct {
	Name string // in the report and the log file's name
	Bin  string
	Args []string
	// Files are written into the work dir before the process starts:
	// a peer's configuration.
	Files []configFile
	// Ready answers 200 once the process serves.
	Ready string
	// Tree says the process forks workers that serve with it (nginx):
	// they run in their own process group, and their CPU and memory
	// count with the parent's.
	Tree bool
	// Peer says it is a peer proxy, stopped with SIGTERM (a Skiff
	// process drains on SIGINT).
	Peer bool
}

type configFile struct {
	Path, Text string
}

// planPaths lays out every path a run measures, in spec order: direct,
// the build under test's one-hop and two-hop, the base build's if
// Config.BaselineProxyBin is set, then one path per peer. next hands out
// loopback addresses; backend is skiff-demo's. It starts nothing.
func planPaths(cfg Config, backend string, next func() string) []pathSpec {
	specs := []pathSpec{{Name: PathDirect, Kind: KindDirect, Entry: backend}}
	skiff := func(bin, suffix, kind string, twins bool) []pathSpec {
		one, oneAdmin := next(), next()
		out, outAdmin, in, inAdmin := next(), next(), next(), next()
		twinOf := func(p string) string {
			switch {
			case !twins:
				return ""
			case suffix == "":
				return p + BaseSuffix
			}
			return p
		}
		return []pathSpec{
			{Name: PathOneHop + suffix, Kind: kind, Entry: one, Twin: twinOf(PathOneHop), Procs: []procSpec{
				proxyProc("proxy-one-hop"+suffix, bin, one, "-", oneAdmin, "--endpoint", authority+"="+backend),
			}},
			{Name: PathTwoHop + suffix, Kind: kind, Entry: out, Twin: twinOf(PathTwoHop), Procs: []procSpec{
				proxyProc("proxy-outbound"+suffix, bin, out, "-", outAdmin, "--endpoint", authority+"="+in+";meshed"),
				proxyProc("proxy-inbound"+suffix, bin, "-", in, inAdmin, "--inbound-forward", backend),
			}},
		}
	}
	ab := cfg.BaselineProxyBin != ""
	specs = append(specs, skiff(cfg.ProxyBin, "", KindSkiff, ab)...)
	if ab {
		specs = append(specs, skiff(cfg.BaselineProxyBin, BaseSuffix, KindBase, true)...)
	}
	for _, p := range cfg.Peers {
		listen := next()
		dir := filepath.Join(cfg.WorkDir, p.Name)
		// Ready when it proxies: the backend's /healthz through it.
		ps := procSpec{Name: p.Name, Bin: p.Bin, Ready: "http://" + listen + "/healthz", Peer: true}
		switch p.Name {
		case PeerNginx:
			conf := filepath.Join(dir, "nginx.conf")
			ps.Args = []string{"-p", dir + "/", "-c", conf, "-e", filepath.Join(dir, "error.log")}
			ps.Files = []configFile{{conf, nginxConfig(dir, listen, backend, cfg.runAsRoot)}}
			ps.Tree = true
		case PeerHAProxy:
			conf := filepath.Join(dir, "haproxy.cfg")
			// -db: stay in the foreground, one process, no master.
			ps.Args = []string{"-db", "-f", conf}
			ps.Files = []configFile{{conf, haproxyConfig(dir, listen, backend)}}
		}
		specs = append(specs, pathSpec{Name: p.Name, Kind: KindPeer, Entry: listen, Procs: []procSpec{ps}})
	}
	return specs
}

// proxyProc is a skiff-proxy serving one bench path, with the defaults
// of a sidecar (one core: --cores 1).
func proxyProc(name, bin, out, in, admin string, extra ...string) procSpec {
	args := append([]string{"--outbound-addr", out, "--inbound-addr", in, "--admin-addr", admin, "--log-level", "warn"}, extra...)
	return procSpec{Name: name, Bin: bin, Args: args, Ready: "http://" + admin + "/ready"}
}

// trialOrder is the order in which trial n (from 1) measures the paths:
// spec order, except that a base path runs right after its twin on odd
// trials and right before it on even ones, so that neither build is
// always measured first (the machine drifts within a trial too).
func trialOrder(specs []pathSpec, n int) []string {
	var out []string
	placed := map[string]bool{}
	for _, s := range specs {
		if placed[s.Name] {
			continue
		}
		pair := []string{s.Name}
		if s.Kind == KindSkiff && s.Twin != "" {
			pair = append(pair, s.Twin)
			if n%2 == 0 {
				pair[0], pair[1] = pair[1], pair[0]
			}
		}
		for _, p := range pair {
			placed[p] = true
			out = append(out, p)
		}
	}
	return out
}

// pathNames lists the specs' names in spec order.
func pathNames(specs []pathSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

// gatedPath says whether the absolute gate judges a path: the direct path
// and the build under test's (not the base build's, nor a peer's).
func gatedPath(name string) bool {
	return name == PathDirect || name == PathOneHop || name == PathTwoHop
}
