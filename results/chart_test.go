package results

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func tickValues(a axis) []float64 {
	var v []float64
	for _, t := range a.ticks {
		v = append(v, t.v)
	}
	return v
}

func tickLabels(a axis) []string {
	var v []string
	for _, t := range a.ticks {
		v = append(v, t.label)
	}
	return v
}

func TestAxes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		a      axis
		labels []string
		lo, hi float64
	}{
		{"linear", linearAxis(0, 37.3, 5, fmtTick), []string{"0", "10", "20", "30", "40"}, 0, 40},
		{"linear fractions", linearAxis(0.955, 1, 5, fmtTick), []string{"0.95", "0.96", "0.97", "0.98", "0.99", "1"}, 0.95, 1},
		{"log narrow", logAxis(1.3, 42, fmtTick), []string{"1", "2", "5", "10", "20", "50"}, 1, 50},
		{"log wide", logAxis(0.45, 209, fmtTick), []string{"0.2", "1", "10", "100", "500"}, 0.2, 500},
		{"log exact", logAxis(1, 100, fmtTick), []string{"1", "2", "5", "10", "20", "50", "100"}, 1, 100},
	} {
		if got := tickLabels(tc.a); !slices.Equal(got, tc.labels) || math.Abs(tc.a.min-tc.lo) > 1e-9 || math.Abs(tc.a.max-tc.hi) > 1e-9 {
			t.Errorf("%s: range %v..%v ticks %q, want %v..%v %q", tc.name, tc.a.min, tc.a.max, got, tc.lo, tc.hi, tc.labels)
		}
	}
	// Latencies spanning more than two decades get a log axis.
	spiky := []line{{points: []point{{0, 0.5}, {1, 0.6}, {2, 180}}}}
	if a := valueAxis(spiky, fmtTick); !a.log {
		t.Errorf("axis for 0.5..180 ms is linear: %v", tickValues(a))
	}
	flat := []line{{points: []point{{0, 0.5}, {1, 0.6}, {2, 3}}}}
	if a := valueAxis(flat, fmtTick); a.log || a.min != 0 {
		t.Errorf("axis for 0.5..3 ms: log %v from %v", a.log, a.min)
	}
}

func TestPathData(t *testing.T) {
	id := func(v float64) float64 { return v }
	pts := []point{{0, 1}, {1, 2}, {2, math.NaN()}, {3, 4}, {4, 0}, {5, 6}}
	if got, want := pathData(pts, id, id, false), "M0.0,1.0L1.0,2.0 M3.0,4.0L4.0,0.0L5.0,6.0"; got != want {
		t.Errorf("linear: %q, want %q", got, want)
	}
	// On a log axis a zero cannot be drawn either.
	if got, want := pathData(pts, id, id, true), "M0.0,1.0L1.0,2.0 M3.0,4.0 M5.0,6.0"; got != want {
		t.Errorf("log: %q, want %q", got, want)
	}
	if got := pathData(nil, id, id, false); got != "" {
		t.Errorf("no points: %q", got)
	}
}

func TestMarkerRows(t *testing.T) {
	c := &chart{x: axis{min: 0, max: 100}, markers: []marker{
		{x: 10, label: "kill echo-2"},
		{x: 11, label: "latency echo-1 (200ms)"}, // overlaps the first label
		{x: 12, label: "abort echo-3"},           // overlaps both
		{x: 60, label: "restore echo-2"},         // room on the first row again
		{x: 200, label: "after the end"},         // not drawn
	}}
	X := func(v float64) float64 { return c.x.pos(v, plotLeft, chartW-plotRight) }
	rows, n := c.markerRows(X)
	if want := []int{0, 1, 2, 0, 0}; !slices.Equal(rows, want) || n != 3 {
		t.Errorf("rows %v (%d), want %v (3)", rows, n, want)
	}
	svg := c.render()
	if strings.Contains(svg, "after the end") {
		t.Error("a marker outside the axis was drawn")
	}
}
