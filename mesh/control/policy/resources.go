package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-mesh/skiff/mesh/control/gatewayapi"
)

// DefaultResourcesPoll is how often a ResourceFile checks its file when
// ResourceFileConfig.Interval is zero.
const DefaultResourcesPoll = 250 * time.Millisecond

// racyWindow is how long after its modification time a file is read
// again even when its size and time look unchanged: a rewrite of equal
// size within one tick of the file system's clock leaves both as they
// were (git calls this "racily clean"). The content hash then decides.
const racyWindow = time.Second

// ServiceAuthority is the authority the clients of a Service port use in
// the local environment: "name.namespace.svc:port", for any namespace.
// It is false only for an empty name or namespace or a port outside 1 to
// 65535.
func ServiceAuthority(namespace, name string, port int32) (string, bool) {
	if namespace == "" || name == "" || port < 1 || port > 65535 {
		return "", false
	}
	return name + "." + namespace + ".svc:" + strconv.Itoa(int(port)), true
}

// ResourceFileConfig configures a ResourceFile. Server and Path are
// required.
type ResourceFileConfig struct {
	// Server receives each set of routes the file holds (Server.SetRoutes).
	Server *Server
	// Path is the file: a YAML stream of Kubernetes objects, as
	// gatewayapi.Parse reads it, of at most gatewayapi.MaxStreamBytes.
	Path string
	// Interval is the pause between two checks of the file; zero means
	// DefaultResourcesPoll.
	Interval time.Duration
	// Authority maps a Service port to the authority its clients use, for
	// gatewayapi.Resources.Routes; nil means ServiceAuthority.
	Authority func(namespace, name string, port int32) (string, bool)
	// Log receives the sets taken, the objects' warnings and the
	// refusals; nil discards them.
	Log *slog.Logger
	// Registerer receives the metrics (see NewResourceFile); nil leaves
	// them unregistered.
	Registerer prometheus.Registerer
}

// ResourceFile keeps a Server's routes in step with a file of Gateway API
// objects (HTTPRoute, GRPCRoute, XBackendTrafficPolicy, CircuitBreaker):
// it reads the file at start, then checks it every interval and reads it
// again when its modification time, size or identity changed, or when it
// changed recently; a content equal to the last one read is not taken
// again. A new content is taken once two checks in a row read it: a
// writer that rewrites the file in place (truncate, then write) is not
// caught half-way, which could otherwise take an empty set and send every
// proxy the default policy for a moment. Writers that rename a new file
// into place are never seen half-way at all.
//
// A content that cannot be read, parsed or converted to routes is
// refused: logged with the file's name and the error (which places it by
// document, field and line), counted once, and the Server keeps serving
// the last valid set.
type ResourceFile struct {
	cfg      ResourceFileConfig
	log      *slog.Logger
	rejected prometheus.Counter
	version  prometheus.GaugeFunc

	mu         sync.Mutex
	fi         os.FileInfo // at the last read; nil before it
	sum        [sha256.Size]byte
	read       bool // sum holds a read
	pending    bool // next holds a new content read once, taken if the next check reads it again
	next       [sha256.Size]byte
	unreadable bool // the last check could not read the file
	started    bool // the first read was taken: refusals are logged and counted from now on
}

// NewResourceFile reads the file into cfg.Server and returns a
// ResourceFile that Run keeps in step with it. A file that is missing or
// refused is the error returned, and then the Server is left as it was.
// Its metrics, registered on cfg.Registerer, are:
//
//	skiff_policy_resources_rejected_total  counter: contents of the file refused (unreadable, too large, invalid), each counted once
//	skiff_policy_resources_version         gauge: sets of routes the Server took (Server.Version)
func NewResourceFile(cfg ResourceFileConfig) (*ResourceFile, error) {
	if cfg.Server == nil {
		return nil, errors.New("policy resources: ResourceFileConfig.Server is nil")
	}
	if cfg.Path == "" {
		return nil, errors.New("policy resources: ResourceFileConfig.Path is empty")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultResourcesPoll
	}
	if cfg.Authority == nil {
		cfg.Authority = ServiceAuthority
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &ResourceFile{
		cfg: cfg,
		log: log.With("component", "policy-resources", "path", cfg.Path),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skiff_policy_resources_rejected_total",
			Help: "Contents of the policy resources file refused (unreadable, too large, or objects that do not parse or convert); the last valid set is kept.",
		}),
		version: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "skiff_policy_resources_version",
			Help: "Sets of routes the Policy server took from the resources file.",
		}, func() float64 { return float64(cfg.Server.Version()) }),
	}
	if _, err := f.Check(); err != nil {
		return nil, err
	}
	f.started = true
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{f.rejected, f.version} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("policy resources: register metrics: %w", err)
			}
		}
	}
	return f, nil
}

// Run checks the file every interval until ctx ends, and returns nil then.
func (f *ResourceFile) Run(ctx context.Context) error {
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		f.Check()
	}
}

// Check looks at the file once. It returns true when the Server took a
// new set of routes, and the reason, naming the file, when the file as it
// is now is refused; a refusal is logged and counted only the first time
// the file is seen in that state. A new content is taken or refused at
// the second check that reads it. Run calls it every interval.
func (f *ResourceFile) Check() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.cfg.Path)
	if err != nil {
		return false, f.lost(err)
	}
	if f.fi != nil && os.SameFile(f.fi, fi) && fi.ModTime().Equal(f.fi.ModTime()) && fi.Size() == f.fi.Size() &&
		time.Since(fi.ModTime()) > racyWindow && !f.unreadable && !f.pending {
		return false, nil
	}
	data, err := readBounded(f.cfg.Path)
	if err != nil {
		return false, f.lost(err)
	}
	f.unreadable, f.fi = false, fi
	sum := sha256.Sum256(data)
	if f.read && sum == f.sum {
		f.pending = false
		return false, nil // rewritten as it was, or refused already
	}
	if f.started && (!f.pending || sum != f.next) {
		f.pending, f.next = true, sum
		return false, nil
	}
	f.pending = false
	f.sum, f.read = sum, true
	if err := f.take(data); err != nil {
		f.refuse(err)
		return false, err
	}
	return true, nil
}

// lost records that the file cannot be read, refusing it the first time.
func (f *ResourceFile) lost(err error) error {
	if !f.unreadable {
		f.refuse(err)
	}
	f.unreadable = true
	return err
}

func (f *ResourceFile) refuse(err error) {
	if !f.started {
		return // NewResourceFile returns it
	}
	f.log.Warn("policy resources refused; serving the previous set", "err", err, "version", f.cfg.Server.Version())
	f.rejected.Inc() // after the log: who sees the count finds the reason
}

// take converts data to routes and gives them to the Server. Its errors
// name the file: those of package gatewayapi do already.
func (f *ResourceFile) take(data []byte) error {
	if len(data) > gatewayapi.MaxStreamBytes {
		return fmt.Errorf("%s: more than %d bytes: a stream may hold at most %d (1 MiB); split the objects or drop some", f.cfg.Path, gatewayapi.MaxStreamBytes, gatewayapi.MaxStreamBytes)
	}
	res, err := gatewayapi.Parse(f.cfg.Path, data)
	if err != nil {
		return err
	}
	routes, warnings, err := res.Routes(f.cfg.Authority)
	if err != nil {
		return err
	}
	if err := f.cfg.Server.SetRoutes(routes); err != nil {
		return fmt.Errorf("%s: %w", f.cfg.Path, err)
	}
	for _, w := range warnings {
		f.log.Warn("policy resources: ignored", "object", w.Object, "field", w.Field, "reason", w.Message)
	}
	f.log.Info("policy resources taken", "routes", len(routes), "warnings", len(warnings), "version", f.cfg.Server.Version())
	return nil
}

// readBounded reads the file, or its first MaxStreamBytes+1 bytes when it
// is longer: enough to know it is too long.
func readBounded(path string) ([]byte, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return io.ReadAll(io.LimitReader(file, gatewayapi.MaxStreamBytes+1))
}
