package results

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// scaleFixture is a control-plane scale run: no phases, a propagation
// section with one change a watcher missed.
func scaleFixture() *Result {
	h := newHist()
	for i := range 390 {
		h.RecordValue(int64(5_000 + 100*i)) // 5 ms .. 43.9 ms
	}
	r := &Result{
		Schema: SchemaV1, Scenario: "scale", Environment: "local", Seed: 7,
		Start: fixtureStart, End: fixtureStart.Add(20 * time.Second),
		Propagation: &Propagation{
			Services: 500, Endpoints: 5000, Watchers: 200, Streams: 2000, InitialSyncS: 1.25,
			Changes: 100, ChangeIntervalMs: 100, TimeoutS: 5, Pairs: 400, Missed: 1,
			Latency: Summarize(h), Histogram: h,
		},
	}
	for i := range 100 {
		c := RegistryChange{OffsetS: 3 + 0.1*float64(i), Kind: []string{"add", "remove", "weight"}[i%3],
			Authority: "svc-0001.default.svc:8080", Watchers: 4, P50Ms: 10 + float64(i%7), MaxMs: 20 + float64(i%11)}
		if i == 42 {
			c.Missed = 1
		}
		r.Propagation.PerChange = append(r.Propagation.PerChange, c)
	}
	r.Assertions = []Assertion{{Expr: "propagation_missed == 0", Phase: "whole", Verdict: Fail, Message: "FAIL [whole] propagation_missed == 0: measured 1"}}
	r.Judge()
	return r
}

// TestPropagationFolder: a scale run's folder keeps its propagation
// section and histogram, and its summary and report show them.
func TestPropagationFolder(t *testing.T) {
	r := scaleFixture()
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	back, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := back.Propagation
	if p == nil || p.HistFile != propagationHistFile || p.Histogram == nil || p.Histogram.TotalCount() != 390 {
		t.Fatalf("propagation did not read back: %+v", p)
	}
	if len(p.PerChange) != 100 || p.PerChange[42].Missed != 1 || p.Latency != r.Propagation.Latency {
		t.Errorf("per-change or latency did not read back: %+v", p.Latency)
	}

	var md, page bytes.Buffer
	if err := back.WriteSummary(&md); err != nil {
		t.Fatal(err)
	}
	if err := back.WriteReport(&page); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Control plane propagation", "| 400 | 1 | ", "Initial sync of every stream: 1.25 s", "| 7.20 | add | svc-0001.default.svc:8080 | 1 of 4 |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("summary.md lacks %q:\n%s", want, md.String())
		}
	}
	for _, want := range []string{`id="plot-propagation"`, "Control plane propagation", "propagation (change to watcher)", `id="plot-rss"`, `id="plot-distribution"`} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	for _, unwanted := range []string{"Latency and success per phase", `id="plot-latency"`, `id="plot-success"`} {
		if strings.Contains(page.String(), unwanted) {
			t.Errorf("report.html of a run without traffic has %q", unwanted)
		}
	}
}
