package runner

import (
	"fmt"
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
		ok := 100.0
		if s.Requests > 0 {
			ok = 100 * float64(s.Success) / float64(s.Requests)
		}
		faults := strings.Join(r.activeFaults(), ", ")
		if faults == "" {
			faults = "none"
		}
		end := float64(s.Second+1) - warmup.Seconds()
		status := fmt.Sprintf("t=%5.1fs  rate %4d/s  success %6.2f%%  p99 %7.2f ms  faults: %s",
			end, s.Requests, ok, ms(s.P99US), faults)
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
