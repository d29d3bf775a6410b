package results

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"syscall"
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
	// PIDs are the distinct process ids sampled under Name, in order: a
	// replica killed and restarted has two. Lives says when each ran.
	PIDs []int `json:"pids"`
	// VmRSSMaxMB is the largest VmRSS sampled.
	VmRSSMaxMB float64 `json:"vmrss_max_mb"`
	// VmHWMMB is the largest VmHWM read: the kernel's own peak RSS, which
	// catches peaks between samples.
	VmHWMMB float64 `json:"vmhwm_mb"`
	// PssMaxMB is the largest proportional set size sampled
	// (/proc/<pid>/smaps_rollup): each resident page divided by the
	// processes mapping it, so the pages of a binary that several
	// processes run count once among them. What a node really pays for
	// the process; gates use VmHWM all the same. 0 when unreadable, and in
	// results written before it was recorded.
	PssMaxMB float64 `json:"pss_max_mb,omitempty"`
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
	// RSS is the VmRSS time series, every pid's samples in time order.
	RSS []RSSPoint `json:"rss"`
	// Lives is each pid's stretch under Name, in order: when it was first
	// and last sampled and how it ended. Added to schema v1 later (results
	// written before have none; PIDs then may repeat a pid).
	Lives []Life `json:"lives,omitempty"`
	// Note says what happened to the process while it was sampled
	// ("pid 4242 gone at 10.2 s"), if anything.
	Note string `json:"note,omitempty"`
}

// RSSPoint is one VmRSS sample.
type RSSPoint struct {
	OffsetS float64 `json:"offset_s"`
	MB      float64 `json:"vmrss_mb"`
	// PID is the process sampled; a change of PID between two points is
	// a restart, and the time between them no process ran. 0 in results
	// written before it was recorded.
	PID int `json:"pid,omitempty"`
}

// Life is one pid's stretch under a Process's name.
type Life struct {
	PID int `json:"pid"`
	// FirstS and LastS are the offsets of its first and last sample.
	FirstS float64 `json:"first_s"`
	LastS  float64 `json:"last_s"`
	// EndS is when the sampler found the pid gone or unreadable, or was
	// told of the pid that replaced it; nil when it was sampled to the end.
	EndS *float64 `json:"end_s,omitempty"`
	// End says how it ended: "gone" (exited or killed), "replaced by pid
	// N" (a restart the sampler was told of before it saw the old pid go)
	// or "unreadable: <error>"; empty when EndS is nil.
	End string `json:"end,omitempty"`
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
	// Start is the time Processes counts offsets from; the zero Time means
	// the first call to Watch. ProcessesFrom takes another origin.
	Start time.Time
	// Interval is the time between samples; zero means one second.
	Interval time.Duration

	mu    sync.Mutex
	procs []*tracked
}

// tracked is one name's processes: a life per pid, the last one current
// until it ends.
type tracked struct {
	name, role string
	lives      []*life
	rssMax     float64
	hwm        float64
	pssMax     float64
}

type life struct {
	pid     int
	samples []sampleAt
	// firstCPU and lastCPU are the pid's CPU seconds at its first and
	// latest sample.
	firstCPU, lastCPU float64
	// end is when the life ended (zero while it is sampled) and why says
	// how.
	end time.Time
	why string
}

type sampleAt struct {
	at time.Time
	mb float64
}

// reading is one sample of a process: procfs's status and stat, and its
// PSS (0 when smaps_rollup could not be read).
type reading struct {
	procfs.Stat
	pssMB float64
}

// current returns the life being sampled, or nil.
func (t *tracked) current() *life {
	if n := len(t.lives); n > 0 && t.lives[n-1].end.IsZero() {
		return t.lives[n-1]
	}
	return nil
}

// Watch samples pid at once and then with every tick of Run, under name.
// Watching the pid that name already follows does nothing, so a caller may
// watch every process it knows after each change. A pid new to name is a
// restart: the old pid's life ends (if the sampler has not seen it go
// already), the series continues with a gap and CPU adds up. Watch fails
// if pid cannot be read.
func (s *Sampler) Watch(name, role string, pid int) error {
	s.mu.Lock()
	t := s.find(name)
	if t != nil {
		if cur := t.current(); cur != nil && cur.pid == pid {
			s.mu.Unlock()
			return nil
		}
	}
	s.mu.Unlock()

	// The time is taken before the read: a successful read proves the
	// process was alive at that time, so a sample never postdates a
	// death (the runner records a kill once the process is gone).
	now := time.Now()
	st, err := sample(pid)
	if err != nil {
		return fmt.Errorf("results: watching %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Start.IsZero() {
		s.Start = now
	}
	if t = s.find(name); t == nil {
		t = &tracked{name: name, role: role}
		s.procs = append(s.procs, t)
	}
	if cur := t.current(); cur != nil {
		if cur.pid == pid {
			return nil // a concurrent Watch of the same pid won
		}
		cur.end, cur.why = now, fmt.Sprintf("replaced by pid %d", pid)
	}
	l := &life{pid: pid, firstCPU: st.CPUSeconds}
	t.lives = append(t.lives, l)
	t.record(l, st, now)
	return nil
}

// find returns the tracked process called name, or nil. s.mu is held.
func (s *Sampler) find(name string) *tracked {
	for _, t := range s.procs {
		if t.name == name {
			return t
		}
	}
	return nil
}

// record adds a sample of l taken at at.
func (t *tracked) record(l *life, st reading, at time.Time) {
	l.lastCPU = st.CPUSeconds
	l.samples = append(l.samples, sampleAt{at: at, mb: st.VmRSSMB})
	t.rssMax = max(t.rssMax, st.VmRSSMB)
	t.hwm = max(t.hwm, st.VmHWMMB)
	t.pssMax = max(t.pssMax, st.pssMB)
}

// errNoMemory: /proc/<pid>/status has no VmRSS, as for a zombie (a killed
// process its parent has not reaped yet).
var errNoMemory = errors.New("no VmRSS in /proc/<pid>/status: exited (zombie) or a kernel thread")

// sample reads pid. procfs reports a missing VmRSS as 0; a live user
// process always has resident pages, so 0 means it is gone.
func sample(pid int) (reading, error) {
	st, err := procfs.ReadPID(pid)
	if err == nil && st.VmRSSMB == 0 && st.VmHWMMB == 0 {
		err = fmt.Errorf("pid %d: %w", pid, errNoMemory)
	}
	r := reading{Stat: st}
	if err == nil {
		if p, perr := procfs.ReadProportional(pid); perr == nil {
			r.pssMB = p.PssMB
		}
	}
	return r, err
}

// Run samples every watched process each Interval until ctx ends, then
// once more, and returns nil. A process that exits stops being sampled; its
// Process keeps what was measured and its life says when it ended.
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
	lives := make(map[*tracked]*life, len(s.procs))
	for _, t := range s.procs {
		if l := t.current(); l != nil {
			lives[t] = l
		}
	}
	s.mu.Unlock()

	// Read /proc without the lock so Watch and Processes never wait on it.
	type read struct {
		l   *life
		st  reading
		err error
		at  time.Time
	}
	got := make(map[*tracked]read, len(lives))
	for t, l := range lives {
		at := time.Now() // before the read, as in Watch
		st, err := sample(l.pid)
		got[t] = read{l, st, err, at}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for t, r := range got {
		if t.current() != r.l {
			continue // replaced by Watch meanwhile
		}
		if r.err != nil {
			r.l.end, r.l.why = r.at, "gone"
			// A process that exits while /proc/<pid>/status is read
			// gives ESRCH rather than ENOENT: gone all the same.
			if !errors.Is(r.err, fs.ErrNotExist) && !errors.Is(r.err, syscall.ESRCH) && !errors.Is(r.err, errNoMemory) {
				r.l.why = "unreadable: " + r.err.Error()
			}
			continue
		}
		t.record(r.l, r.st, r.at)
	}
}

// Processes returns what has been measured so far, one Process per name in
// the order first watched, with offsets from Start.
func (s *Sampler) Processes() []Process {
	s.mu.Lock()
	origin := s.Start
	s.mu.Unlock()
	return s.ProcessesFrom(origin)
}

// ProcessesFrom is Processes with offsets in seconds from origin, the time
// 0 of the run's other series (a sample before it has a negative offset).
// The slices are the caller's.
func (s *Sampler) ProcessesFrom(origin time.Time) []Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	off := func(t time.Time) float64 { return t.Sub(origin).Seconds() }
	out := make([]Process, len(s.procs))
	for i, t := range s.procs {
		p := Process{Name: t.name, Role: t.role, VmRSSMaxMB: t.rssMax, VmHWMMB: t.hwm, PssMaxMB: t.pssMax}
		var notes []string
		for _, l := range t.lives {
			if !slices.Contains(p.PIDs, l.pid) {
				p.PIDs = append(p.PIDs, l.pid)
			}
			p.CPUSeconds += l.lastCPU - l.firstCPU
			for _, sm := range l.samples {
				p.RSS = append(p.RSS, RSSPoint{OffsetS: off(sm.at), MB: sm.mb, PID: l.pid})
			}
			lf := Life{PID: l.pid, FirstS: off(l.samples[0].at), LastS: off(l.samples[len(l.samples)-1].at)}
			if !l.end.IsZero() {
				e := off(l.end)
				lf.EndS, lf.End = &e, l.why
				if err, ok := strings.CutPrefix(l.why, "unreadable: "); ok {
					notes = append(notes, fmt.Sprintf("pid %d could not be read at %.1f s: %s", l.pid, e, err))
				} else {
					notes = append(notes, fmt.Sprintf("pid %d %s at %.1f s", l.pid, l.why, e))
				}
			}
			p.Lives = append(p.Lives, lf)
		}
		p.Note = strings.Join(notes, "; ")
		out[i] = p
	}
	return out
}
