package results

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"time"

	"github.com/skiff-mesh/skiff/internal/procfs"
)

// Process is one process's resource use over the run: memory from
// /proc/<pid>/status, CPU from /proc/<pid>/stat. A Sampler builds it.
// Memory is in MiB.
type Process struct {
	Name string `json:"name"`
	// Role is what the process is: "proxy", "app", "controller",
	// "loadgen".
	Role string `json:"role"`
	// PIDs are the process ids sampled under Name, in order: a replica
	// killed and restarted has two.
	PIDs []int `json:"pids"`
	// VmRSSMaxMB is the largest VmRSS sampled.
	VmRSSMaxMB float64 `json:"vmrss_max_mb"`
	// VmHWMMB is the largest VmHWM read: the kernel's own peak RSS, which
	// catches peaks between samples.
	VmHWMMB float64 `json:"vmhwm_mb"`
	// CPUSeconds is the utime+stime used between each pid's first and last
	// sample, summed over PIDs (start-up before the first sample is not
	// counted).
	CPUSeconds float64 `json:"cpu_s"`
	// Requests is how many requests the process handled over the same
	// window; SetRequests sets it with CPUMicrosPerRequest. 0 when unknown.
	Requests int64 `json:"requests,omitempty"`
	// CPUMicrosPerRequest is CPUSeconds per request in µs, numerically the
	// same as CPU milliseconds per 1000 requests; 0 when Requests is 0.
	CPUMicrosPerRequest float64 `json:"cpu_us_per_request,omitempty"`
	// RSS is the VmRSS time series.
	RSS []RSSPoint `json:"rss"`
	// Note says what happened to the process while it was sampled
	// ("pid 4242 gone at 10.2 s"), if anything.
	Note string `json:"note,omitempty"`
}

// RSSPoint is one VmRSS sample.
type RSSPoint struct {
	OffsetS float64 `json:"offset_s"`
	MB      float64 `json:"vmrss_mb"`
}

// SetRequests records that p handled n requests and derives
// CPUMicrosPerRequest.
func (p *Process) SetRequests(n int64) {
	p.Requests = n
	p.CPUMicrosPerRequest = 0
	if n > 0 {
		p.CPUMicrosPerRequest = p.CPUSeconds * 1e6 / float64(n)
	}
}

// Sampler samples the memory and CPU of a set of processes at a fixed
// interval, reading /proc through internal/procfs. The zero value samples
// every second with offsets from the first Watch. Its methods are safe for
// concurrent use.
type Sampler struct {
	// Start is the time RSS offsets count from (Result.Start); the zero
	// Time means the first call to Watch.
	Start time.Time
	// Interval is the time between samples; zero means one second.
	Interval time.Duration

	mu    sync.Mutex
	procs []*tracked
}

type tracked struct {
	p Process
	// pid is the process sampled now; 0 once it is gone.
	pid int
	// firstCPU and lastCPU are pid's CPU seconds at its first and latest
	// sample; doneCPU sums the windows of the PIDs before it.
	firstCPU, lastCPU, doneCPU float64
}

// Watch samples pid at once and then with every tick of Run, under name. A
// second Watch with the same name replaces the pid (a restarted replica):
// the series continues and CPU adds up. It fails if pid cannot be read.
func (s *Sampler) Watch(name, role string, pid int) error {
	st, err := sample(pid)
	if err != nil {
		return fmt.Errorf("results: watching %s: %w", name, err)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Start.IsZero() {
		s.Start = now
	}
	var t *tracked
	for _, old := range s.procs {
		if old.p.Name == name {
			t = old
		}
	}
	if t == nil {
		t = &tracked{p: Process{Name: name, Role: role}}
		s.procs = append(s.procs, t)
	} else {
		t.doneCPU += t.lastCPU - t.firstCPU
	}
	t.pid = pid
	t.p.PIDs = append(t.p.PIDs, pid)
	t.firstCPU = st.CPUSeconds
	s.record(t, st, now)
	return nil
}

// record adds a sample of t's current pid taken at now. s.mu is held.
func (s *Sampler) record(t *tracked, st procfs.Stat, now time.Time) {
	t.lastCPU = st.CPUSeconds
	t.p.CPUSeconds = t.doneCPU + t.lastCPU - t.firstCPU
	t.p.RSS = append(t.p.RSS, RSSPoint{OffsetS: now.Sub(s.Start).Seconds(), MB: st.VmRSSMB})
	t.p.VmRSSMaxMB = max(t.p.VmRSSMaxMB, st.VmRSSMB)
	t.p.VmHWMMB = max(t.p.VmHWMMB, st.VmHWMMB)
}

// errNoMemory: /proc/<pid>/status has no VmRSS, as for a zombie (a killed
// process its parent has not reaped yet).
var errNoMemory = errors.New("no VmRSS in /proc/<pid>/status: exited (zombie) or a kernel thread")

// sample reads pid. procfs reports a missing VmRSS as 0; a live user
// process always has resident pages, so 0 means it is gone.
func sample(pid int) (procfs.Stat, error) {
	st, err := procfs.ReadPID(pid)
	if err == nil && st.VmRSSMB == 0 && st.VmHWMMB == 0 {
		err = fmt.Errorf("pid %d: %w", pid, errNoMemory)
	}
	return st, err
}

// Run samples every watched process each Interval until ctx ends, then
// once more, and returns nil. A process that exits stops being sampled; its
// Process keeps what was measured and says so in Note.
func (s *Sampler) Run(ctx context.Context) error {
	d := s.Interval
	if d <= 0 {
		d = time.Second
	}
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.sampleAll()
			return nil
		case <-tick.C:
			s.sampleAll()
		}
	}
}

func (s *Sampler) sampleAll() {
	s.mu.Lock()
	pids := make(map[*tracked]int, len(s.procs))
	for _, t := range s.procs {
		if t.pid != 0 {
			pids[t] = t.pid
		}
	}
	s.mu.Unlock()

	// Read /proc without the lock so Watch and Processes never wait on it.
	type reading struct {
		pid int
		st  procfs.Stat
		err error
		at  time.Time
	}
	got := make(map[*tracked]reading, len(pids))
	for t, pid := range pids {
		st, err := sample(pid)
		got[t] = reading{pid, st, err, time.Now()}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for t, r := range got {
		if t.pid != r.pid {
			continue // replaced by Watch meanwhile
		}
		if r.err != nil {
			what := "could not be read"
			if errors.Is(r.err, fs.ErrNotExist) || errors.Is(r.err, errNoMemory) {
				what = "gone"
			}
			note := fmt.Sprintf("pid %d %s at %.1f s", t.pid, what, r.at.Sub(s.Start).Seconds())
			if what != "gone" {
				note += ": " + r.err.Error()
			}
			if t.p.Note != "" {
				note = t.p.Note + "; " + note
			}
			t.p.Note = note
			t.pid = 0
			continue
		}
		s.record(t, r.st, r.at)
	}
}

// Processes returns what has been measured so far, one Process per name in
// the order first watched. The slices are copies.
func (s *Sampler) Processes() []Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Process, len(s.procs))
	for i, t := range s.procs {
		p := t.p
		p.PIDs = slices.Clone(p.PIDs)
		p.RSS = slices.Clone(p.RSS)
		out[i] = p
	}
	return out
}
