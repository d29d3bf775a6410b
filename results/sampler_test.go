package results

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/skiff-mesh/skiff/internal/procfs"
	"github.com/skiff-mesh/skiff/internal/testwait"
)

func needProc(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux /proc")
	}
}

// startSleep starts a child that sleeps until killed.
func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// burnCPU spins until this process has used another 20 ms of CPU.
func burnCPU(t *testing.T) {
	t.Helper()
	st, err := procfs.ReadPID(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		now, err := procfs.ReadPID(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now.CPUSeconds >= st.CPUSeconds+0.02 {
			break
		}
	}
	runtime.KeepAlive(x)
}

// TestSampler runs the sampler in a synctest bubble: its time.Sleep calls
// are the test's timeline on the bubble's clock, exact to the nanosecond,
// not waits for an event.
func TestSampler(t *testing.T) {
	needProc(t)
	first, second := startSleep(t), startSleep(t)
	synctest.Test(t, func(t *testing.T) {
		s := &Sampler{Interval: 100 * time.Millisecond}
		if err := s.Watch("harness", "loadgen", os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if err := s.Watch("echo-2", "app", first.Process.Pid); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()

		time.Sleep(350 * time.Millisecond) // samples at 0.1, 0.2, 0.3 s
		burnCPU(t)
		// Kill echo-2; the sampler notices at 0.4 s. It comes back at
		// 0.55 s as another process.
		if err := first.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = first.Wait()
		time.Sleep(200 * time.Millisecond)
		if err := s.Watch("echo-2", "app", second.Process.Pid); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		// The runner watches every process it knows after each fault:
		// the pid echo-2 already follows adds neither a pid nor a sample.
		if err := s.Watch("echo-2", "app", second.Process.Pid); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // 0.7 s
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		// Run sampled once more on the way out, at 0.75 s.

		ps := s.Processes()
		if len(ps) != 2 {
			t.Fatalf("%d processes, want 2", len(ps))
		}
		self, echo := ps[0], ps[1]
		offsets := func(p Process) []float64 {
			var o []float64
			for _, pt := range p.RSS {
				o = append(o, pt.OffsetS)
			}
			return o
		}
		if got, want := offsets(self), []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75}; !approxEqual(got, want) {
			t.Errorf("self sampled at %v, want %v", got, want)
		}
		if got, want := offsets(echo), []float64{0, 0.1, 0.2, 0.3, 0.55, 0.6, 0.7, 0.75}; !approxEqual(got, want) {
			t.Errorf("echo-2 sampled at %v, want %v", got, want)
		}
		if self.Name != "harness" || self.Role != "loadgen" || self.VmRSSMaxMB <= 0 || self.VmHWMMB < self.VmRSSMaxMB || self.CPUSeconds < 0.0199 { // two readings in 10 ms ticks; allow for float rounding
			t.Errorf("self: %+v: want VmRSS > 0, VmHWM >= VmRSS, CPU >= the 20 ms burnt", self)
		}
		// PSS counts each page at most fully: between 0 and the peak RSS.
		if self.PssMaxMB <= 0 || self.PssMaxMB > self.VmHWMMB {
			t.Errorf("self: PSS max %v MB: want in (0, VmHWM %v]", self.PssMaxMB, self.VmHWMMB)
		}
		if len(echo.PIDs) != 2 || echo.PIDs[0] != first.Process.Pid || echo.PIDs[1] != second.Process.Pid {
			t.Errorf("echo-2 pids %v", echo.PIDs)
		}
		if want := "gone at 0.4 s"; !strings.Contains(echo.Note, want) {
			t.Errorf("echo-2 note %q, want it to contain %q", echo.Note, want)
		}
		// Each pid's life, and every sample tagged with its pid: the plot
		// draws the time between them as a gap.
		end := 0.4
		wantLives := []Life{
			{PID: first.Process.Pid, FirstS: 0, LastS: 0.3, EndS: &end, End: "gone"},
			{PID: second.Process.Pid, FirstS: 0.55, LastS: 0.75},
		}
		if !livesEqual(echo.Lives, wantLives) {
			t.Errorf("echo-2 lives %s, want %s", livesString(echo.Lives), livesString(wantLives))
		}
		for _, pt := range echo.RSS {
			want := first.Process.Pid
			if pt.OffsetS >= 0.5 {
				want = second.Process.Pid
			}
			if pt.PID != want {
				t.Errorf("echo-2 sample at %.2f s: pid %d, want %d", pt.OffsetS, pt.PID, want)
			}
		}

		// The same samples on the time base of the run's other series:
		// here time 0 is 0.2 s after the first Watch, so the first samples
		// come before it.
		rebased := s.ProcessesFrom(s.Start.Add(200 * time.Millisecond))
		if got, want := offsets(rebased[1]), []float64{-0.2, -0.1, 0, 0.1, 0.35, 0.4, 0.5, 0.55}; !approxEqual(got, want) {
			t.Errorf("echo-2 from time 0 sampled at %v, want %v", got, want)
		}
		if want := "gone at 0.2 s"; !strings.Contains(rebased[1].Note, want) {
			t.Errorf("echo-2 note from time 0 %q, want it to contain %q", rebased[1].Note, want)
		}

		// Processes returns copies.
		ps[0].RSS[0].MB = -1
		if s.Processes()[0].RSS[0].MB == -1 {
			t.Error("Processes shares its slices with the sampler")
		}
	})
}

// TestSamplerReplaced: a restart the sampler is told of before it sees the
// old pid go ends the old pid's life there, named by its successor.
func TestSamplerReplaced(t *testing.T) {
	needProc(t)
	first, second := startSleep(t), startSleep(t)
	synctest.Test(t, func(t *testing.T) {
		s := &Sampler{Interval: 100 * time.Millisecond}
		if err := s.Watch("controller", "controller", first.Process.Pid); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond) // no Run: no samples but Watch's
		if err := s.Watch("controller", "controller", second.Process.Pid); err != nil {
			t.Fatal(err)
		}
		p := s.Processes()[0]
		end := 0.25
		want := []Life{
			{PID: first.Process.Pid, EndS: &end, End: fmt.Sprintf("replaced by pid %d", second.Process.Pid)},
			{PID: second.Process.Pid, FirstS: 0.25, LastS: 0.25},
		}
		if !livesEqual(p.Lives, want) {
			t.Errorf("lives %s, want %s", livesString(p.Lives), livesString(want))
		}
		if len(p.PIDs) != 2 || len(p.RSS) != 2 || p.RSS[0].PID != first.Process.Pid || p.RSS[1].PID != second.Process.Pid {
			t.Errorf("pids %v, samples %+v", p.PIDs, p.RSS)
		}
		if want := fmt.Sprintf("pid %d replaced by pid %d at 0.2 s", first.Process.Pid, second.Process.Pid); p.Note != want {
			t.Errorf("note %q, want %q", p.Note, want)
		}
	})
}

func livesEqual(a, b []Life) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.PID != y.PID || x.End != y.End || !approxEqual([]float64{x.FirstS, x.LastS}, []float64{y.FirstS, y.LastS}) ||
			(x.EndS == nil) != (y.EndS == nil) || (x.EndS != nil && !approxEqual([]float64{*x.EndS}, []float64{*y.EndS})) {
			return false
		}
	}
	return true
}

func livesString(ls []Life) string {
	var parts []string
	for _, l := range ls {
		s := fmt.Sprintf("{pid %d %.3g..%.3g", l.PID, l.FirstS, l.LastS)
		if l.EndS != nil {
			s += fmt.Sprintf(" end %.3g %s", *l.EndS, l.End)
		}
		parts = append(parts, s+"}")
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func approxEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if d := a[i] - b[i]; d > 1e-9 || d < -1e-9 {
			return false
		}
	}
	return true
}

func TestSampleExited(t *testing.T) {
	needProc(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	if _, err := sample(pid); err != nil {
		t.Fatalf("a live process: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Killed but not reaped: a zombie, whose status has no VmRSS.
	testwait.For(t, "the killed child to become a zombie", func() (bool, error) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		i := strings.LastIndexByte(string(b), ')')
		return i > 0 && strings.HasPrefix(string(b[i+1:]), " Z"), fmt.Errorf("stat %q", b)
	})
	if _, err := sample(pid); !errors.Is(err, errNoMemory) {
		t.Errorf("a zombie: %v, want errNoMemory", err)
	}
	_ = cmd.Wait()
	if _, err := sample(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a reaped process: %v, want fs.ErrNotExist", err)
	}
	var s Sampler
	if err := s.Watch("gone", "app", pid); err == nil || !strings.Contains(err.Error(), "watching gone") {
		t.Errorf("Watch of a gone process: %v", err)
	}
}
