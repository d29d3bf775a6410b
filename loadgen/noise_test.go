package loadgen

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"

	"github.com/skiff-mesh/skiff/internal/testwait"
)

func TestParseProcStat(t *testing.T) {
	const stat = `cpu  927203 62 332573 810196 7162 0 31068 12239 0 0
cpu0 463601 31 166286 405098 3581 0 15534 6119 0 0
cpu1 463602 31 166287 405098 3581 0 15534 6120 0 0
intr 1 2 3
ctxt 42
`
	got, err := parseProcStat([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	want := cpuTimes{
		busy:  927203 + 62 + 332573 + 0 + 31068,
		steal: 12239,
		total: 927203 + 62 + 332573 + 0 + 31068 + 810196 + 7162 + 12239,
		cpus:  2,
	}
	if got != want {
		t.Errorf("parseProcStat = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "intr 1\n", "cpu 1 2 3\n", "cpu a b c d e f g h\n"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q): want an error", bad)
		}
	}
}

func TestParsePIDStat(t *testing.T) {
	// A command name with spaces and a parenthesis; cutime may be -1
	// (never negative in practice, but signed in proc(5)).
	line := "4242 (skiff (bench) x) S 17 4242 17 0 -1 4194560 1000 0 0 0 250 75 12 -1 20 0 9 0 100 0 0\n"
	ppid, ticks, ok := parsePIDStat([]byte(line))
	if !ok || ppid != 17 || ticks != 250+75+12 {
		t.Errorf("parsePIDStat = %d, %d, %v; want 17, 337, true", ppid, ticks, ok)
	}
	if _, _, ok := parsePIDStat([]byte("1 (x) S 0 1")); ok {
		t.Error("a short line parsed")
	}
}

// fakeProbe returns its readings in turn.
func fakeProbe(readings ...cpuTimes) noiseProbe {
	return func() (cpuTimes, error) {
		if len(readings) == 0 {
			return cpuTimes{}, errors.New("no more readings")
		}
		r := readings[0]
		readings = readings[1:]
		return r, nil
	}
}

func TestNoiseMeter(t *testing.T) {
	// Two CPUs, 100 ticks per CPU-second: 200 ticks a second in all.
	// Second 1: the machine busy 150 ticks, 100 of them the run's, 4
	// stolen. Second 2: busy 190, the run 60, 20 stolen. A 5-tick
	// interval at the end is too short to count.
	m := &noiseMeter{probe: fakeProbe(
		cpuTimes{total: 1000, busy: 500, steal: 10, run: 50, cpus: 2},
		cpuTimes{total: 1200, busy: 650, steal: 14, run: 150, cpus: 2},
		cpuTimes{total: 1400, busy: 840, steal: 34, run: 210, cpus: 2},
		cpuTimes{total: 1405, busy: 845, steal: 34, run: 210, cpus: 2},
	)}
	for range 4 {
		m.sample()
	}
	n := m.result()
	if n == nil {
		t.Fatal("no noise")
	}
	check := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if n.Samples != 2 || n.CPUs != 2 {
		t.Errorf("samples %d, cpus %d; want 2, 2", n.Samples, n.CPUs)
	}
	check("Seconds", n.Seconds, 2)
	check("StealPct", n.StealPct, 100*24.0/400)
	check("StealMaxPct", n.StealMaxPct, 100*20.0/200)
	check("OtherCPU", n.OtherCPU, 2*(50.0+130)/400)
	check("OtherCPUMax", n.OtherCPUMax, 2*130.0/200)
	check("RunCPU", n.RunCPU, 2*160.0/400)

	if (&noiseMeter{probe: fakeProbe()}).result() != nil {
		t.Error("a meter that never read anything returned noise")
	}
}

func TestCombineNoise(t *testing.T) {
	a := &Noise{Seconds: 3, Samples: 3, CPUs: 2, StealPct: 1, StealMaxPct: 2, OtherCPU: 0.5, OtherCPUMax: 1, RunCPU: 1, LoadAvg1: 1}
	b := &Noise{Seconds: 1, Samples: 1, CPUs: 2, StealPct: 5, StealMaxPct: 5, OtherCPU: 0.1, OtherCPUMax: 0.1, RunCPU: 0.2, LoadAvg1: 3}
	got := CombineNoise(a, nil, b)
	want := Noise{Seconds: 4, Samples: 4, CPUs: 2, StealPct: 2, StealMaxPct: 5, OtherCPU: 0.4, OtherCPUMax: 1, RunCPU: 0.8, LoadAvg1: 3}
	if got == nil || math.Abs(got.StealPct-want.StealPct) > 1e-12 || math.Abs(got.OtherCPU-want.OtherCPU) > 1e-12 ||
		math.Abs(got.RunCPU-want.RunCPU) > 1e-12 || got.StealMaxPct != want.StealMaxPct || got.OtherCPUMax != want.OtherCPUMax ||
		got.Seconds != want.Seconds || got.Samples != want.Samples || got.LoadAvg1 != want.LoadAvg1 {
		t.Errorf("CombineNoise = %+v, want %+v", got, want)
	}
	if a.Seconds != 3 {
		t.Error("CombineNoise changed its argument")
	}
	if CombineNoise(nil, &Noise{}) != nil {
		t.Error("nothing measured, yet a Noise")
	}
}

// The run's own processes include its children: a child burning CPU is
// the run's, not the neighbours'.
func TestTreeTicksCountsChildren(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc: Linux only")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("needs sh to start a child that burns CPU")
	}
	cmd := exec.Command(sh, "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	self := os.Getpid()
	before := treeTicks(self)
	childTicks := func() uint64 {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
		if err != nil {
			return 0
		}
		_, ticks, _ := parsePIDStat(b)
		return ticks
	}
	childBefore := childTicks()
	testwait.For(t, "the child to use 5 ticks of CPU", func() (bool, error) {
		c := childTicks()
		return c >= childBefore+5, fmt.Errorf("child at %d ticks, from %d", c, childBefore)
	})
	if after := treeTicks(self); after < before+5 {
		t.Errorf("the tree's ticks went from %d to %d while a child used at least 5", before, after)
	}
}
