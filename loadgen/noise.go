package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Noise is how busy the machine was while a run sent its load, apart from
// the run itself: the CPU time other processes used and the time the
// hypervisor gave to other guests (steal). "The run" is the process that
// calls Run and every process descended from it: the harness starts the
// proxies and backends it measures as its children, so what remains is
// the neighbours'. Figures come from /proc/stat and /proc/<pid>/stat,
// sampled once a second; a Noise is nil off Linux.
//
// CPU figures are in CPUs' worth of time (1 = one CPU busy all the time);
// percentages are of all CPUs' time.
type Noise struct {
	// Seconds is the time the samples cover; Samples the intervals.
	Seconds float64 `json:"seconds"`
	Samples int     `json:"samples"`
	// CPUs is the number of CPUs /proc/stat lists.
	CPUs int `json:"cpus"`
	// StealPct is the share of CPU time stolen by the hypervisor, over
	// the run; StealMaxPct the worst interval's.
	StealPct    float64 `json:"steal_pct"`
	StealMaxPct float64 `json:"steal_max_pct"`
	// OtherCPU is the CPU used by processes outside the run, over the
	// run; OtherCPUMax the worst interval's.
	OtherCPU    float64 `json:"other_cpu"`
	OtherCPUMax float64 `json:"other_cpu_max"`
	// RunCPU is the CPU used by the run's own processes.
	RunCPU float64 `json:"run_cpu"`
	// LoadAvg1 is the one-minute load average (/proc/loadavg) at the end,
	// the run's own processes included.
	LoadAvg1 float64 `json:"load_avg_1"`
}

// CombineNoise merges the noise of several runs (nil ones are skipped):
// averages weighted by the time each covers, maxima over all. It returns
// nil when none was measured.
func CombineNoise(ns ...*Noise) *Noise {
	var out *Noise
	for _, n := range ns {
		if n == nil || n.Seconds <= 0 {
			continue
		}
		if out == nil {
			c := *n
			out = &c
			continue
		}
		w := out.Seconds + n.Seconds
		avg := func(a, b float64) float64 { return (a*out.Seconds + b*n.Seconds) / w }
		out.StealPct = avg(out.StealPct, n.StealPct)
		out.OtherCPU = avg(out.OtherCPU, n.OtherCPU)
		out.RunCPU = avg(out.RunCPU, n.RunCPU)
		out.StealMaxPct = max(out.StealMaxPct, n.StealMaxPct)
		out.OtherCPUMax = max(out.OtherCPUMax, n.OtherCPUMax)
		out.LoadAvg1 = n.LoadAvg1 // the latest
		out.CPUs = max(out.CPUs, n.CPUs)
		out.Seconds = w
		out.Samples += n.Samples
	}
	return out
}

// cpuTimes is the first line of /proc/stat, in clock ticks summed over
// CPUs, with the run's own ticks.
type cpuTimes struct {
	total, busy, steal uint64 // busy: user+nice+system+irq+softirq (guest is in user)
	run                uint64 // the run's processes: utime+stime+cutime+cstime
	cpus               int
}

// noiseProbe reads the figures Noise is built from. The real one reads
// /proc; tests substitute their own.
type noiseProbe func() (cpuTimes, error)

// procNoiseProbe reads /proc/stat and the CPU time of pid and its
// descendants.
func procNoiseProbe(pid int) noiseProbe {
	return func() (cpuTimes, error) {
		t, err := readProcStat()
		if err != nil {
			return t, err
		}
		t.run = treeTicks(pid)
		return t, nil
	}
}

func readProcStat() (cpuTimes, error) {
	var t cpuTimes
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t, err
	}
	return parseProcStat(b)
}

// parseProcStat reads the aggregate "cpu" line and counts the "cpuN" lines.
func parseProcStat(b []byte) (cpuTimes, error) {
	var t cpuTimes
	found := false
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			t.cpus++
			continue
		}
		// user nice system idle iowait irq softirq steal [guest guest_nice]
		if len(f) < 9 {
			return t, fmt.Errorf("loadgen: /proc/stat: short cpu line %q", strings.TrimSpace(string(line)))
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return t, fmt.Errorf("loadgen: /proc/stat: %w", err)
			}
			v[i] = n
		}
		user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
		t.busy = user + nice + system + irq + softirq
		t.steal = steal
		t.total = t.busy + idle + iowait + steal
		found = true
	}
	if !found {
		return t, errors.New("loadgen: /proc/stat has no cpu line")
	}
	return t, nil
}

// treeTicks is the CPU time, in clock ticks, of pid and every live process
// descended from it, each with its waited-for children's (cutime, cstime),
// so a child that exits and is reaped between two samples still counts.
func treeTicks(pid int) uint64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	children := map[int][]int{}
	ticks := map[int]uint64{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone
		}
		ppid, t, ok := parsePIDStat(b)
		if !ok {
			continue
		}
		children[ppid] = append(children[ppid], p)
		ticks[p] = t
	}
	var sum uint64
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		sum += ticks[p]
		queue = append(queue, children[p]...)
	}
	return sum
}

// parsePIDStat returns the parent pid and utime+stime+cutime+cstime of a
// /proc/<pid>/stat line. Fields are counted after the last ')': the
// command name may hold spaces and parentheses.
func parsePIDStat(b []byte) (ppid int, ticks uint64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] state, f[1] ppid, … f[11] utime, f[12] stime, f[13] cutime, f[14] cstime
	if len(f) < 15 {
		return 0, 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	for _, s := range f[11:15] {
		n, err := strconv.ParseInt(s, 10, 64) // cutime and cstime are signed
		if err != nil {
			return 0, 0, false
		}
		if n > 0 {
			ticks += uint64(n)
		}
	}
	return ppid, ticks, true
}

func readLoadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// noiseMeter accumulates Noise from successive probes.
type noiseMeter struct {
	probe noiseProbe

	mu      sync.Mutex
	prev    cpuTimes
	started bool
	failed  bool
	n       Noise
	// sums over intervals, in ticks
	total, steal, other, run uint64
}

// minTicksPerCPU skips intervals too short to mean anything: /proc/stat
// counts in 10 ms ticks.
const minTicksPerCPU = 20

// sample takes one reading and adds the interval since the previous one.
func (m *noiseMeter) sample() {
	t, err := m.probe()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.failed = true
		return
	}
	if !m.started {
		m.prev, m.started = t, true
		return
	}
	p := m.prev
	if t.total < p.total || t.cpus == 0 || t.total-p.total < uint64(minTicksPerCPU*t.cpus) {
		return // too short, or counters went backwards: keep the earlier base
	}
	dTotal := t.total - p.total
	dSteal := sub(t.steal, p.steal)
	dBusy := sub(t.busy, p.busy)
	dRun := sub(t.run, p.run)
	dOther := sub(dBusy, dRun)
	m.total += dTotal
	m.steal += dSteal
	m.other += dOther
	m.run += dRun
	cpus := float64(t.cpus)
	m.n.CPUs = t.cpus
	m.n.Samples++
	m.n.Seconds += float64(dTotal) / cpus / clockTicks
	m.n.StealMaxPct = max(m.n.StealMaxPct, 100*float64(dSteal)/float64(dTotal))
	m.n.OtherCPUMax = max(m.n.OtherCPUMax, cpus*float64(dOther)/float64(dTotal))
	m.prev = t
}

// clockTicks is USER_HZ, the unit of /proc times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// result returns the Noise so far, nil when nothing was measured.
func (m *noiseMeter) result() *Noise {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failed && m.n.Samples == 0 || m.total == 0 {
		return nil
	}
	n := m.n
	cpus := float64(n.CPUs)
	n.StealPct = 100 * float64(m.steal) / float64(m.total)
	n.OtherCPU = cpus * float64(m.other) / float64(m.total)
	n.RunCPU = cpus * float64(m.run) / float64(m.total)
	n.LoadAvg1 = readLoadAvg1()
	return &n
}

// measureNoise samples once a second until stop is called, then once more,
// and returns what it measured.
func measureNoise(probe noiseProbe) (stop func() *Noise) {
	m := &noiseMeter{probe: probe}
	m.sample()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				m.sample()
			}
		}
	})
	return func() *Noise {
		close(done)
		wg.Wait()
		m.sample()
		return m.result()
	}
}
