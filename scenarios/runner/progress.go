package runner

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/skiff-mesh/skiff/loadgen"
)

// progressf prints a status line (ending a bar line first on a terminal).
func (r *run) progressf(format string, args ...any) {
	if r.o.Progress == nil {
		return
	}
	prefix := ""
	if r.o.TTY {
		prefix = "\r\033[K"
	}
	fmt.Fprintf(r.o.Progress, prefix+format+"\n", args...)
}

// progressSecond returns the load generator's per-second callback: a bar
// redrawn in place on a terminal, a plain line per second otherwise.
// Times shown count from the end of the warm-up, as the timeline does.
func (r *run) progressSecond(warmup, total time.Duration) func(loadgen.Second) {
	if r.o.Progress == nil {
		return nil
	}
	return func(s loadgen.Second) {
		faults := strings.Join(r.activeFaults(), ", ")
		if faults == "" {
			faults = "none"
		}
		end := float64(s.Second+1) - warmup.Seconds()
		status := fmt.Sprintf("t=%5.1fs  %s  faults: %s", end, secondStatus(s), faults)
		if !r.o.TTY {
			fmt.Fprintln(r.o.Progress, status)
			return
		}
		const width = 24
		done := max(0, min(width, int(float64(width)*end/total.Seconds())))
		fmt.Fprintf(r.o.Progress, "\r\033[K[%s%s] %s", strings.Repeat("=", done), strings.Repeat(" ", width-done), status)
	}
}

func (r *run) progressDone() {
	if r.o.Progress != nil && r.o.TTY {
		fmt.Fprintln(r.o.Progress)
	}
}

// secondStatus describes one second of load as it stands: every request
// due in the second (by intended send time, the open model's schedule),
// the share answered successfully so far, the failed ones, and those
// outstanding (sent and not answered, or not sent yet). An outstanding
// request is not a success yet, so a second with requests timing out
// never reads 100 %; the share is rounded down for the same reason. The
// p99 is of the answered requests.
func secondStatus(s loadgen.Second) string {
	due := s.Requests + s.Outstanding
	success := "     — "
	if due > 0 {
		success = fmt.Sprintf("%6.2f%%", math.Floor(10000*float64(s.Success)/float64(due))/100)
	}
	return fmt.Sprintf("due %4d/s  success %s  failed %d  outstanding %d  p99 %7.2f ms",
		due, success, s.Errors, s.Outstanding, ms(s.P99US))
}
