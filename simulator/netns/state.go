package netns

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StateDir holds a state file per live run (<id>.json), the subnet locks
// (subnet-<a.b.c.d>-<bits>.lock) and the sweep lock.
const StateDir = "/run/skiff-netns"

// NamespacePrefix starts every namespace a Net creates: the switch is
// NamespacePrefix+id, a pod NamespacePrefix+id+"-"+pod. Sweep removes
// such namespaces when no live run owns them, so nothing else should use
// the prefix.
const NamespacePrefix = "skiffns-"

// maxIDLen bounds a run's short id, so link names fit IFNAMSIZ (15):
// "sk" + id + "v" + up to 4 digits.
const maxIDLen = 8

var (
	shortIDRe = regexp.MustCompile(`^[a-z0-9]{1,8}$`)
	ourNSRe   = regexp.MustCompile(`^` + NamespacePrefix + `([a-z0-9]{1,8})(-.+)?$`)
	idHash    = base32.StdEncoding.WithPadding(base32.NoPadding)
)

// ShortID is the id a run's names carry: runID itself when it is 1 to 8
// lower-case letters and digits, else 8 characters of a hash of it.
// Leftovers and a Net's names use it; it never changes for one runID.
func ShortID(runID string) string {
	if shortIDRe.MatchString(runID) {
		return runID
	}
	h := fnv.New64a()
	h.Write([]byte(runID))
	return strings.ToLower(idHash.EncodeToString(h.Sum(nil)))[:maxIDLen]
}

// state is the record of a run on disk: written before anything it
// names is created, so a crash at any point leaves a record that names
// everything that may exist.
type state struct {
	RunID string `json:"run_id"`
	ID    string `json:"id"`
	PID   int    `json:"pid"`
	// PIDStart is the owner's start time (/proc/<pid>/stat field 22), so
	// a reused PID is not taken for the owner.
	PIDStart uint64 `json:"pid_start"`
	Subnet   string `json:"subnet"`
	// Namespaces: the switch first, then the pods. Deleting them deletes
	// everything else the run made.
	Namespaces []string `json:"namespaces"`
	// Links, for the record: the bridge and the veths' switch ends, all
	// inside the switch namespace (the pods' ends are PodInterface).
	Links   []string  `json:"links"`
	Created time.Time `json:"created"`
}

func statePath(id string) string { return filepath.Join(StateDir, id+".json") }

// claimState creates the run's state file, failing if one exists: one
// live run per id. The file appears whole (written aside, then hard-linked
// into place, which fails if the name exists), so a Sweep never reads a
// half-written one.
func claimState(st *state) error {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	path := statePath(st.ID)
	tmp, err := writeTemp(st)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	err = os.Link(tmp, path)
	if errors.Is(err, fs.ErrExist) {
		old, rerr := readState(path)
		if rerr == nil && ownerAlive(old) {
			return fmt.Errorf("run id %q (names %s*) is in use by pid %d (state file %s); pick another RunID", st.RunID, NamespacePrefix+st.ID, old.PID, path)
		}
		return fmt.Errorf("run id %q: a dead run's state file %s is still there (Sweep could not remove it; see its log); remove it by hand once its namespaces are gone", st.RunID, path)
	}
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// writeTemp writes st to a temporary file beside its state file.
func writeTemp(st *state) (string, error) {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(StateDir, st.ID+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("state file: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("state file: %w", err)
	}
	return f.Name(), nil
}

// writeState replaces the state file atomically.
func writeState(st *state) error {
	tmp, err := writeTemp(st)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, statePath(st.ID)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

func readState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if !shortIDRe.MatchString(st.ID) || filepath.Base(path) != st.ID+".json" {
		return nil, fmt.Errorf("state file %s: id %q does not match its name", path, st.ID)
	}
	return &st, nil
}

// pidStart is a process's start time in clock ticks since boot.
func pidStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may hold spaces and parentheses: count
	// fields from the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(f))
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 overall
}

// ownerAlive says whether the process that wrote st still runs.
func ownerAlive(st *state) bool {
	start, err := pidStart(st.PID)
	return err == nil && start == st.PIDStart
}

// ownsNamespace says whether ns is one of run id's namespaces.
func ownsNamespace(id, ns string) bool {
	m := ourNSRe.FindStringSubmatch(ns)
	return m != nil && m[1] == id
}

// ---- subnet locks

var errLocked = errors.New("locked by another process")

// subnetLock is a run's exclusive claim on its subnet: an flock the
// kernel drops when the process dies, so a crashed run never blocks the
// next. Subnets are distinct per live run only for clarity: every run's
// switch is a namespace of its own with no way out, so two runs could
// not collide anyway.
type subnetLock struct {
	path string
	f    *os.File
}

func lockPath(p netip.Prefix) string {
	return filepath.Join(StateDir, "subnet-"+p.Addr().String()+"-"+strconv.Itoa(p.Bits())+".lock")
}

// lockSubnet takes p's lock without waiting, or fails with errLocked.
func lockSubnet(p netip.Prefix) (*subnetLock, error) {
	path := lockPath(p)
	for {
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("subnet lock %s: %w", path, err)
		}
		if err := flockNB(f); err != nil {
			f.Close()
			if errors.Is(err, errLocked) {
				return nil, errLocked
			}
			return nil, fmt.Errorf("subnet lock %s: %w", path, err)
		}
		// The holder before us may have unlinked the file between our
		// open and our flock; then the lock guards nothing. Again.
		if sameFile(f, path) {
			return &subnetLock{path: path, f: f}, nil
		}
		f.Close()
	}
}

// release unlinks the lock file while holding the lock, then drops it.
func (l *subnetLock) release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
}

// Subnets are /24s of defaultRange, the third byte from firstSubnet to
// lastSubnet.
const (
	firstSubnet = 1
	lastSubnet  = 254
)

// defaultRange holds the per-run subnets: private, and apart from the
// ranges Docker (172.17/16), kind (10.244/16 pods, 10.96/12 services)
// and the kubeadm defaults use, so an address in a log says which tool
// made it.
var defaultRange = netip.MustParsePrefix("10.248.0.0/16")

// allocSubnet claims the first free /24 of defaultRange.
func allocSubnet() (netip.Prefix, *subnetLock, error) {
	base := defaultRange.Addr().As4()
	for x := firstSubnet; x <= lastSubnet; x++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], byte(x), 0}), 24)
		l, err := lockSubnet(p)
		if errors.Is(err, errLocked) {
			continue
		}
		if err != nil {
			return netip.Prefix{}, nil, err
		}
		return p, l, nil
	}
	return netip.Prefix{}, nil, fmt.Errorf("no free subnet: every /24 of %s is held by a live run (locks %s); close other runs and try again",
		defaultRange, filepath.Join(StateDir, "subnet-*.lock"))
}

// ---- leftovers and sweeping

// Leftovers lists what of run runID (or its ShortID) still exists: its
// network namespaces, any link in the harness's namespace named as its
// links are (a Net never creates one there; listed in case), and its
// state file. Empty after a Close that succeeded, or a Sweep after the
// run died. It only reads.
func Leftovers(ctx context.Context, runID string) ([]string, error) {
	id := ShortID(runID)
	r := runner{timeout: DefaultCommandTimeout, log: discard}
	var out []string
	nss, err := listNetns(ctx, r)
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		if ownsNamespace(id, ns) {
			out = append(out, "netns "+ns)
		}
	}
	links, err := r.run(ctx, "", "ip", "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(links) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if isRunLink(id, name) {
			out = append(out, "link "+name+" (harness namespace)")
		}
	}
	if _, err := os.Stat(statePath(id)); err == nil {
		out = append(out, "state file "+statePath(id))
	}
	return out, nil
}

// isRunLink says whether name is one of run id's link names: sk<id>br,
// sk<id>v<n>.
func isRunLink(id, name string) bool {
	rest, ok := strings.CutPrefix(name, "sk"+id)
	if !ok {
		return false
	}
	if rest == "br" {
		return true
	}
	n, ok := strings.CutPrefix(rest, "v")
	_, err := strconv.Atoi(n)
	return ok && err == nil
}

// listNetns lists the named network namespaces (ip netns list).
func listNetns(ctx context.Context, r runner) ([]string, error) {
	out, err := r.run(ctx, "", "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0]) // "name (id: 3)"
		}
	}
	return names, nil
}

// sweepLockWait bounds the wait for another Sweep to finish.
const sweepLockWait = 30 * time.Second

// Sweep removes what runs whose owner process is dead left behind
// (a SIGKILL, a crash): for every state file in StateDir whose owner is
// gone, it kills any process left in the run's namespaces, deletes the
// namespaces (which takes their links, bridge, rules and queues along)
// and the state file; it also deletes namespaces with NamespacePrefix that
// no state file names, and subnet lock files no one holds. It returns the
// short ids of the runs it removed; runs whose owner lives are never
// touched. New calls it first, so a crashed run is cleaned by the next.
// Sweeps exclude each other through a lock file. A nil logger discards.
func Sweep(ctx context.Context, logger *slog.Logger) ([]string, error) {
	if logger == nil {
		logger = discard
	}
	logger = logger.With("component", "netns-sweep")
	r := runner{timeout: DefaultCommandTimeout, log: logger}
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	unlock, err := sweepLock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()

	// Namespaces first, state files second: a namespace seen here was
	// created after its state file was written, so the state file is
	// seen below unless the run closed meanwhile.
	nss, err := listNetns(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	files, err := filepath.Glob(filepath.Join(StateDir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	var (
		swept []string
		errs  []error
		known = map[string]bool{}
	)
	for _, path := range files {
		st, err := readState(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // closed meanwhile
			}
			// Unreadable: its owner is unknown, so its namespaces are
			// not orphans either; leave them to a person.
			known[strings.TrimSuffix(filepath.Base(path), ".json")] = true
			errs = append(errs, fmt.Errorf("sweep: %w", err))
			continue
		}
		known[st.ID] = true
		if ownerAlive(st) {
			continue
		}
		logger.Warn("removing a dead run", "run", st.RunID, "id", st.ID, "pid", st.PID, "subnet", st.Subnet, "namespaces", len(st.Namespaces))
		var runErrs []error
		for _, ns := range slices.Backward(st.Namespaces) {
			if err := removeNetns(ctx, r, ns); err != nil {
				runErrs = append(runErrs, err)
			}
		}
		if len(runErrs) == 0 {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				runErrs = append(runErrs, err)
			}
		}
		if len(runErrs) > 0 {
			errs = append(errs, fmt.Errorf("sweep run %s: %w", st.ID, errors.Join(runErrs...)))
			continue
		}
		swept = append(swept, st.ID)
	}
	orphans := map[string]bool{}
	for _, ns := range nss {
		m := ourNSRe.FindStringSubmatch(ns)
		if m == nil || known[m[1]] {
			continue
		}
		logger.Warn("removing a namespace no run owns", "netns", ns)
		if err := removeNetns(ctx, r, ns); err != nil {
			errs = append(errs, fmt.Errorf("sweep: %w", err))
			continue
		}
		if !orphans[m[1]] {
			orphans[m[1]] = true
			swept = append(swept, m[1])
		}
	}
	locks, _ := filepath.Glob(filepath.Join(StateDir, "subnet-*.lock"))
	for _, path := range locks {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		if flockNB(f) == nil && sameFile(f, path) {
			os.Remove(path) // no one holds it: a dead run's
		}
		f.Close()
	}
	return swept, errors.Join(errs...)
}

// sweepLock takes StateDir/sweep.lock, polling up to sweepLockWait.
func sweepLock(ctx context.Context) (func(), error) {
	path := filepath.Join(StateDir, "sweep.lock")
	deadline := time.Now().Add(sweepLockWait)
	for {
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("sweep lock: %w", err)
		}
		err = flockNB(f)
		if err == nil {
			return func() { f.Close() }, nil
		}
		f.Close()
		if !errors.Is(err, errLocked) {
			return nil, fmt.Errorf("sweep lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sweep lock %s: held by another sweep for %v", path, sweepLockWait)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("sweep lock: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond): // polling the lock
		}
	}
}

// removeNetns kills what still runs in namespace ns and deletes it; a
// namespace that does not exist is not an error.
func removeNetns(ctx context.Context, r runner, ns string) error {
	if _, err := os.Stat(netnsPath(ns)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	out, err := r.run(ctx, "", "ip", "netns", "pids", ns)
	if err == nil {
		for _, f := range strings.Fields(out) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid == os.Getpid() || pid <= 1 {
				continue // never the harness itself (a thread of it may be in there, inside Pod.Do)
			}
			r.log.Info("killing a process left in the namespace", "netns", ns, "pid", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if _, err := r.run(ctx, "", "ip", "netns", "delete", ns); err != nil {
		if _, serr := os.Stat(netnsPath(ns)); errors.Is(serr, fs.ErrNotExist) {
			return nil // deleted meanwhile
		}
		return err
	}
	return nil
}

// netnsPath is where ip netns mounts a namespace (iproute2's
// NETNS_RUN_DIR).
func netnsPath(ns string) string { return "/run/netns/" + ns }

// discard is the logger of nil Loggers.
var discard = slog.New(slog.DiscardHandler)
