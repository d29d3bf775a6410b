package bench

import (
	"fmt"
	"sync"

	"github.com/skiff-mesh/skiff/internal/procfs"
)

// memory records the serving processes' memory through a run: each
// process's VmRSS (sampled), VmHWM and PSS (sampled now and then), and
// each path's totals sampled at one time. A process is known by its name:
// when the bench starts the paths' processes afresh (a run with a base
// build), each figure is the largest over the instances, and the idle
// VmRSS the first instance's. The sampler writes while the run reads: a
// mutex guards it.
type memory struct {
	mu      sync.Mutex
	members []member // the instances running now
	procs   []ProcReport
	index   map[string]int // name → procs
	// Per path: the largest sums of VmRSS and of PSS sampled at once.
	maxRSS, maxPSS map[string]float64
}

func newMemory() *memory {
	return &memory{index: map[string]int{}, maxRSS: map[string]float64{}, maxPSS: map[string]float64{}}
}

// attach starts recording the running instances ms: the idle VmRSS of a
// process seen for the first time, and a first sample.
func (m *memory) attach(ms []member) error {
	m.mu.Lock()
	m.members = append([]member(nil), ms...)
	for _, mb := range ms {
		if _, ok := m.index[mb.name]; ok {
			continue
		}
		st, err := procfs.ReadPID(mb.pid)
		if err != nil {
			m.mu.Unlock()
			return fmt.Errorf("read %s memory: %w", mb.name, err)
		}
		m.index[mb.name] = len(m.procs)
		m.procs = append(m.procs, ProcReport{Name: mb.name, Path: mb.path, Role: mb.role, IdleVmRSSMB: st.VmRSSMB})
	}
	m.mu.Unlock()
	m.sample(true)
	return nil
}

// detach takes a last reading of the running instances, before they are
// stopped.
func (m *memory) detach() {
	m.sample(true)
	m.readHWM()
	m.mu.Lock()
	m.members = nil
	m.mu.Unlock()
}

// sample reads every running process's VmRSS, and PSS when pss is set.
func (m *memory) sample(pss bool) {
	m.mu.Lock()
	ms := append([]member(nil), m.members...)
	m.mu.Unlock()
	rss := make([]float64, len(ms))
	prop := make([]procfs.Proportional, len(ms))
	// Read outside the lock: smaps_rollup takes a while.
	for i, mb := range ms {
		if st, err := procfs.ReadPID(mb.pid); err == nil {
			rss[i] = st.VmRSSMB
		}
		if pss {
			if p, err := procfs.ReadProportional(mb.pid); err == nil {
				prop[i] = p
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	sumRSS, sumPSS := map[string]float64{}, map[string]float64{}
	for i, mb := range ms {
		pr := &m.procs[m.index[mb.name]]
		pr.MaxVmRSSMB = max(pr.MaxVmRSSMB, rss[i])
		sumRSS[mb.path] += rss[i]
		if pss {
			pr.MaxPssMB = max(pr.MaxPssMB, prop[i].PssMB)
			pr.MaxPssAnonMB = max(pr.MaxPssAnonMB, prop[i].PssAnonMB)
			pr.MaxPssFileMB = max(pr.MaxPssFileMB, prop[i].PssFileMB)
			sumPSS[mb.path] += prop[i].PssMB
		}
	}
	for path, v := range sumRSS {
		m.maxRSS[path] = max(m.maxRSS[path], v)
	}
	for path, v := range sumPSS {
		m.maxPSS[path] = max(m.maxPSS[path], v)
	}
}

// readHWM reads the running processes' VmHWM (and VmRSS), keeping the
// largest.
func (m *memory) readHWM() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mb := range m.members {
		if st, err := procfs.ReadPID(mb.pid); err == nil {
			pr := &m.procs[m.index[mb.name]]
			pr.VmHWMMB = max(pr.VmHWMMB, st.VmHWMMB)
			pr.MaxVmRSSMB = max(pr.MaxVmRSSMB, st.VmRSSMB)
		}
	}
}

// report reads every running process's VmHWM (and with final, a last
// VmRSS and PSS sample) and returns the processes' figures.
func (m *memory) report(final bool) []ProcReport {
	if final {
		m.sample(true)
	}
	m.readHWM()
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ProcReport(nil), m.procs...)
}

// pathTotals fills a path's process count and memory totals.
func (m *memory) pathTotals(pr *PathReport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pr.Processes, pr.VmHWMMB = 0, 0
	for _, p := range m.procs {
		if p.Path == pr.Name {
			pr.Processes++
			pr.VmHWMMB += p.VmHWMMB
		}
	}
	pr.MaxVmRSSMB, pr.MaxPssMB = m.maxRSS[pr.Name], m.maxPSS[pr.Name]
}
