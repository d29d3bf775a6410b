package bench

import (
	"fmt"
	"sync"

	"github.com/skiff-mesh/skiff/internal/procfs"
)

// memory records the serving processes' memory through a run: each
// process's VmRSS (sampled), VmHWM (at the end) and PSS (sampled now and
// then), and each path's totals sampled at one time. The sampler writes
// while the run reads: a mutex guards it.
type memory struct {
	mu      sync.Mutex
	members []member
	procs   []ProcReport
	// Per path: the largest sums of VmRSS and of PSS sampled at once.
	maxRSS, maxPSS map[string]float64
}

func newMemory(members []member) *memory {
	m := &memory{members: members, maxRSS: map[string]float64{}, maxPSS: map[string]float64{}}
	for _, mb := range members {
		m.procs = append(m.procs, ProcReport{Name: mb.name, Path: mb.path, Role: mb.role})
	}
	return m
}

// idle reads every process's VmRSS before any load, and a first sample.
func (m *memory) idle() error {
	m.mu.Lock()
	for i, mb := range m.members {
		st, err := procfs.ReadPID(mb.pid)
		if err != nil {
			m.mu.Unlock()
			return fmt.Errorf("read %s memory: %w", mb.name, err)
		}
		m.procs[i].IdleVmRSSMB = st.VmRSSMB
	}
	m.mu.Unlock()
	m.sample(true)
	return nil
}

// sample reads every process's VmRSS, and PSS when pss is set.
func (m *memory) sample(pss bool) {
	rss := make([]float64, len(m.members))
	var prop []procfs.Proportional
	if pss {
		prop = make([]procfs.Proportional, len(m.members))
	}
	// Read outside the lock: smaps_rollup takes a while.
	for i, mb := range m.members {
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
	for i, mb := range m.members {
		pr := &m.procs[i]
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

// report reads every process's VmHWM (and with final, a last VmRSS and
// PSS sample) and returns the processes' figures.
func (m *memory) report(final bool) []ProcReport {
	if final {
		m.sample(true)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, mb := range m.members {
		if st, err := procfs.ReadPID(mb.pid); err == nil {
			m.procs[i].VmHWMMB = st.VmHWMMB
			m.procs[i].MaxVmRSSMB = max(m.procs[i].MaxVmRSSMB, st.VmRSSMB)
		}
	}
	return append([]ProcReport(nil), m.procs...)
}

// pathTotals fills a path's process count and memory totals.
func (m *memory) pathTotals(pr *PathReport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pr.Processes, pr.VmHWMMB = 0, 0
	for i, mb := range m.members {
		if mb.path == pr.Name {
			pr.Processes++
			pr.VmHWMMB += m.procs[i].VmHWMMB
		}
	}
	pr.MaxVmRSSMB, pr.MaxPssMB = m.maxRSS[pr.Name], m.maxPSS[pr.Name]
}
