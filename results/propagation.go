package results

import (
	"fmt"
	"math"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Propagation is what a control-plane scale run measured (the scenarios'
// control_plane_scale section): synthetic services in the discovery
// registry, light clients of the Destination API watching them, and for
// each change to the registry the time until every watcher of the changed
// service received a snapshot that reflects it. A (change, watcher) pair is
// one measurement; latencies are from just after the registry file was
// renamed into place to the watcher's callback, in milliseconds.
type Propagation struct {
	// Services and Endpoints are the synthetic services and their
	// endpoints at the start.
	Services  int `json:"services"`
	Endpoints int `json:"endpoints"`
	// Watchers are the Destination clients, one connection each; Streams
	// their Watch streams (watchers × services each).
	Watchers int `json:"watchers"`
	Streams  int `json:"streams"`
	// InitialSyncS is the time from the watchers' start until every
	// stream had received its service's initial snapshot.
	InitialSyncS float64 `json:"initial_sync_s"`
	// Changes is the number of changes made, one every ChangeIntervalMs.
	Changes          int     `json:"changes"`
	ChangeIntervalMs float64 `json:"change_interval_ms"`
	// TimeoutS is how long a watcher had to see a change; a pair not seen
	// within it is Missed.
	TimeoutS float64 `json:"timeout_s"`
	// Pairs is the number of (change, watcher of its service) pairs; Missed
	// those not seen within TimeoutS. Latency summarizes the others.
	Pairs   int64   `json:"pairs"`
	Missed  int64   `json:"missed"`
	Latency Latency `json:"latency_ms"`
	// Reconnects counts the watch streams that broke or could not be
	// opened during the run (0 in a healthy run).
	Reconnects int64 `json:"reconnects"`
	// Unmatched counts snapshots that matched no state the runner wrote:
	// intermediate states of a delta applied in two messages (the
	// Destination API sends Add then Remove), or a bug.
	Unmatched int64 `json:"unmatched_snapshots"`
	// Histogram holds the latencies of the pairs seen, in microseconds.
	// It is not in result.json: Write stores it in HistFile.
	Histogram *hdrhistogram.Histogram `json:"-"`
	HistFile  string                  `json:"hist,omitempty"`
	// PerChange is each change, in order.
	PerChange []RegistryChange `json:"per_change"`
}

// RegistryChange is one change of a control-plane scale run (to the
// discovery registry) and how it spread.
type RegistryChange struct {
	// OffsetS is when the registry file held the change, seconds since
	// Result.Start.
	OffsetS float64 `json:"offset_s"`
	// Kind is "add", "remove" or "weight" (one endpoint each).
	Kind      string `json:"kind"`
	Authority string `json:"authority"`
	// Watchers is how many watchers watch the authority; Missed how many of
	// them did not see the change within the timeout.
	Watchers int `json:"watchers"`
	Missed   int `json:"missed"`
	// P50Ms and MaxMs are over the watchers that saw it; 0 when none did.
	P50Ms float64 `json:"p50_ms"`
	MaxMs float64 `json:"max_ms"`
}

// propagationHistFile is where Write stores Propagation.Histogram.
const propagationHistFile = HistDir + "/propagation.hdr"

// writeSummary writes the propagation section of summary.md.
func (p *Propagation) writeSummary(b *strings.Builder) {
	b.WriteString("## Control plane propagation\n\n")
	fmt.Fprintf(b, "%d services, %d endpoints; %d watchers, %d watch streams. Initial sync of every stream: %s s.\n\n",
		p.Services, p.Endpoints, p.Watchers, p.Streams, fmtNum(p.InitialSyncS))
	fmt.Fprintf(b, "%d changes, one every %s ms; latency in ms from the registry file's rename to the watcher's snapshot, over (change, watcher) pairs.\n\n",
		p.Changes, fmtNum(p.ChangeIntervalMs))
	b.WriteString("| pairs | missed | p50 | p90 | p99 | p99.9 | max | mean | reconnects | unmatched snapshots |\n")
	b.WriteString("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	l := p.Latency
	fmt.Fprintf(b, "| %d | %d | %s | %s | %s | %s | %s | %s | %d | %d |\n\n", p.Pairs, p.Missed,
		fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Mean), p.Reconnects, p.Unmatched)
	var late []RegistryChange
	for _, c := range p.PerChange {
		if c.Missed > 0 {
			late = append(late, c)
		}
	}
	if len(late) > 0 {
		b.WriteString("Changes some watchers did not see in time:\n\n| t (s) | change | authority | missed |\n|--:|---|---|--:|\n")
		for _, c := range late {
			fmt.Fprintf(b, "| %.2f | %s | %s | %d of %d |\n", c.OffsetS, cell(c.Kind), cell(c.Authority), c.Missed, c.Watchers)
		}
		b.WriteString("\n")
	}
}

// propagationChart plots each change's propagation over time: the slowest
// watcher and the median one.
func (r *Result) propagationChart() *chart {
	c := &chart{id: "plot-propagation", title: "Propagation of each change to its watchers (ms): slowest and median watcher",
		xLabel: "time since start (change written)", yLabel: "propagation (ms)", x: r.timeAxis(), empty: "no changes recorded"}
	p := r.Propagation
	if p == nil {
		return c
	}
	var maxes, medians []point
	for _, ch := range p.PerChange {
		if ch.Missed == ch.Watchers {
			maxes, medians = append(maxes, point{ch.OffsetS, math.NaN()}), append(medians, point{ch.OffsetS, math.NaN()})
			continue
		}
		maxes, medians = append(maxes, point{ch.OffsetS, ch.MaxMs}), append(medians, point{ch.OffsetS, ch.P50Ms})
	}
	c.lines = []line{
		// The slowest under the median, wider: the two are often within a
		// fraction of a millisecond, and both must show.
		{label: "slowest watcher", color: palette[3], width: 3, points: maxes},
		{label: "median watcher", color: palette[0], width: 1.5, dash: "4 2", points: medians},
	}
	c.y = valueAxis(c.lines, fmtTick)
	c.markers, _ = r.timeDecor()
	return c
}
