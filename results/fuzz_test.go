package results

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// histRef finds the histogram files a result.json names.
var histRef = regexp.MustCompile(`"hist"\s*:\s*"([^"\\]*)"`)

// FuzzRead feeds an arbitrary result.json, and one histogram file written
// under every name it gives, to Read (skiff scenario report and compare
// read folders they are handed). Errors say they are from results. A
// folder Read accepts has schema v1 and histograms exactly where it names
// local files, and the summary, time series, report and a comparison can
// be written from it. When it is also valid for Write, writing and
// reading it again gives the same result, histograms included.
func FuzzRead(f *testing.F) {
	// The fixture made small, as in TestGolden: a fuzzer mutates a short
	// document faster, and every section is still there.
	r := fixture()
	small := *r
	small.Series = small.Series[14:17]
	small.Trials = small.Trials[:2]
	small.Phases = []Phase{*r.Phase("during_fault")}
	small.Processes = []Process{r.Processes[0]}
	small.Processes[0].RSS = small.Processes[0].RSS[:2]
	dir := f.TempDir()
	if err := small.Write(dir); err != nil {
		f.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, ResultFile))
	if err != nil {
		f.Fatal(err)
	}
	hist, err := os.ReadFile(filepath.Join(dir, "hist", "during_fault-meshed.hdr"))
	if err != nil {
		f.Fatal(err)
	}
	doc := string(js)
	for _, s := range []struct{ js, hist string }{
		{doc, string(hist)},
		{doc, string(hist[:len(hist)/2])}, // truncated
		{doc, ""},                         // empty histogram file
		{strings.Replace(doc, SchemaV1, "skiff.result/v2", 1), string(hist)}, // future schema
		{strings.Replace(doc, `"seed"`, `"sede"`, 1), string(hist)},          // unknown field
		{strings.Replace(doc, `"hist/during_fault-meshed.hdr"`, `"../during_fault-meshed.hdr"`, 1), string(hist)},
		{strings.Replace(doc, `"offset_s": 15`, `"offset_s": 2000000000`, 1), string(hist)},
		{strings.Replace(doc, `"path": "direct"`, `"path": "meshed"`, 1), string(hist)}, // duplicate path
		{`{"schema":"skiff.result/v1","scenario":"x"}`, ""},
		{`{"schema":"skiff.result/v1"}`, ""},
		{`{"schema":"skiff.result/v1","scenario":"x","phases":[{"name":"a","paths":[{"path":"b","hist":"h.hdr"}]}],"propagation":{"hist":"h.hdr"}}`, string(hist)},
		{`{"schema":"skiff.result/v1","scenario":"x","series":[{"path":"p","offset_s":-5,"requests":-1,"errors":3}],"events":[{"offset_s":-1e300,"type":"kill"}]}`, ""},
		{`null`, ""},
	} {
		f.Add([]byte(s.js), []byte(s.hist))
	}
	f.Fuzz(func(t *testing.T, js, hist []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ResultFile), js, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, m := range histRef.FindAllSubmatch(js, -1) {
			name := string(m[1])
			if !filepath.IsLocal(name) {
				continue
			}
			p := filepath.Join(dir, name)
			if os.MkdirAll(filepath.Dir(p), 0o755) == nil {
				_ = os.WriteFile(p, hist, 0o644) // a name that is a folder already stays one
			}
		}
		r, err := Read(dir)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "results: ") {
				t.Fatalf("error %q does not say it is from results", err)
			}
			return
		}
		if r.Schema != SchemaV1 {
			t.Fatalf("accepted schema %q", r.Schema)
		}
		for _, ph := range r.Phases {
			for _, ps := range ph.Paths {
				if (ps.HistFile != "") != (ps.Histogram != nil) || (ps.HistFile != "" && !filepath.IsLocal(ps.HistFile)) {
					t.Fatalf("phase %q path %q: histogram file %q, histogram loaded %v", ph.Name, ps.Path, ps.HistFile, ps.Histogram != nil)
				}
			}
		}
		if p := r.Propagation; p != nil && ((p.HistFile != "") != (p.Histogram != nil) || (p.HistFile != "" && !filepath.IsLocal(p.HistFile))) {
			t.Fatalf("propagation: histogram file %q, histogram loaded %v", p.HistFile, p.Histogram != nil)
		}
		for name, write := range map[string]func(io.Writer) error{
			"summary": r.WriteSummary, "time series": r.WriteTimeSeries, "report": r.WriteReport,
			"comparison": Compare(r, r).WriteText,
		} {
			if err := write(io.Discard); err != nil {
				t.Fatalf("writing the %s of a result Read accepted: %v", name, err)
			}
		}
		if r.Validate() != nil {
			return
		}
		out := t.TempDir()
		if err := r.Write(out); err != nil {
			t.Fatalf("Write of a valid result Read accepted: %v", err)
		}
		back, err := Read(out)
		if err != nil {
			t.Fatalf("Read of what Write wrote: %v", err)
		}
		a, errA := json.Marshal(r)
		b, errB := json.Marshal(back)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("Write then Read changed the result (%v, %v):\n%s", errA, errB, firstDiff(string(b), string(a)))
		}
		for i, ph := range r.Phases {
			for j, ps := range ph.Paths {
				if got := back.Phases[i].Paths[j].Histogram; (ps.Histogram == nil) != (got == nil) || (got != nil && !got.Equals(ps.Histogram)) {
					t.Fatalf("phase %q path %q: the histogram changed through Write and Read", ph.Name, ps.Path)
				}
			}
		}
		if p := r.Propagation; p != nil {
			if got := back.Propagation.Histogram; (p.Histogram == nil) != (got == nil) || (got != nil && !got.Equals(p.Histogram)) {
				t.Fatal("the propagation histogram changed through Write and Read")
			}
		}
	})
}
