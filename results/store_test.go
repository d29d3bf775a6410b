package results

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestWriteRead(t *testing.T) {
	r := fixture()
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	var files []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, rel)
		}
		return err
	})
	want := []string{"hist/after_recovery-direct.hdr", "hist/after_recovery-meshed.hdr", "hist/during_fault-direct.hdr",
		"hist/during_fault-meshed.hdr", "hist/steady-direct.hdr", "hist/steady-meshed.hdr", "hist/warmup-direct.hdr",
		"hist/warmup-meshed.hdr", "hist/whole-direct.hdr", "hist/whole-meshed.hdr",
		"report.html", "result.json", "summary.md", "timeseries.csv"}
	if !slices.Equal(files, want) {
		t.Errorf("files written:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}

	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Schema != SchemaV1 {
		t.Errorf("schema %q, want %q", got.Schema, SchemaV1)
	}
	for i, ph := range got.Phases {
		for j, ps := range ph.Paths {
			orig := r.Phases[i].Paths[j].Histogram
			if ps.Histogram == nil || !ps.Histogram.Equals(orig) {
				t.Errorf("phase %s path %s: histogram did not survive the round trip", ph.Name, ps.Path)
			}
			if ps.HistFile != "hist/"+ph.Name+"-"+ps.Path+".hdr" {
				t.Errorf("phase %s path %s: HistFile %q", ph.Name, ps.Path, ps.HistFile)
			}
			// Compared above; DeepEqual cannot see through the histogram's
			// internals.
			got.Phases[i].Paths[j].Histogram, r.Phases[i].Paths[j].Histogram = nil, nil
		}
	}
	if !reflect.DeepEqual(got, r) {
		a, _ := json.MarshalIndent(got, "", " ")
		b, _ := json.MarshalIndent(r, "", " ")
		t.Errorf("Read(Write(r)) differs from r:\n%s", firstDiff(string(a), string(b)))
	}
}

func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return "line " + la[i] + "\nwant " + lb[i]
		}
	}
	return "lengths differ"
}

func TestReadRejects(t *testing.T) {
	write := func(t *testing.T, js string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ResultFile), []byte(js), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, tc := range []struct{ name, js, want string }{
		{"future schema", `{"schema":"skiff.result/v2","scenario":"x"}`, `schema "skiff.result/v2"; this skiff reads "skiff.result/v1"`},
		{"no schema", `{"scenario":"x"}`, `schema ""`},
		{"unknown field", `{"schema":"skiff.result/v1","scenario":"x","latency":1}`, `unknown field "latency"`},
		{"escaping histogram", `{"schema":"skiff.result/v1","scenario":"x","phases":[{"name":"a","paths":[{"path":"b","hist":"../../etc/passwd"}]}]}`, "outside the folder"},
		{"missing histogram", `{"schema":"skiff.result/v1","scenario":"x","phases":[{"name":"a","paths":[{"path":"b","hist":"hist/a-b.hdr"}]}]}`, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(write(t, tc.js))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestWriteRejects(t *testing.T) {
	nan := fixture()
	nan.Phases[1].Paths[0].SuccessRate = math.NaN()
	for _, tc := range []struct {
		name string
		r    *Result
		want string
	}{
		{"no scenario", &Result{}, "scenario name is empty"},
		{"slash in phase", &Result{Scenario: "x", Phases: []Phase{{Name: "a/b"}}}, `phase name "a/b"`},
		{"duplicate phase", &Result{Scenario: "x", Phases: []Phase{{Name: "a"}, {Name: "a"}}}, `phase "a" appears twice`},
		{"duplicate path", &Result{Scenario: "x", Phases: []Phase{{Name: "a", Paths: []PathStats{{Path: "p"}, {Path: "p"}}}}}, `path "p" appears twice`},
		{"file collision", &Result{Scenario: "x", Phases: []Phase{
			{Name: "a-b", Paths: []PathStats{{Path: "c"}}}, {Name: "a", Paths: []PathStats{{Path: "b-c"}}}}}, "would both write hist/a-b-c.hdr"},
		{"other schema", &Result{Scenario: "x", Schema: "v0"}, `schema "v0"`},
		{"NaN", nan, "NaN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Write(t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestTimeSeriesCSV(t *testing.T) {
	r := fixture()
	var buf bytes.Buffer
	if err := r.WriteTimeSeries(&buf); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(recs[0], ","); got != "offset_s,path,requests,rate_per_s,success_rate,p50_ms,p99_ms,errors,active_faults" {
		t.Errorf("header %s", got)
	}
	if len(recs) != 1+len(r.Series) {
		t.Fatalf("%d rows, want %d", len(recs)-1, len(r.Series))
	}
	// Second 16 of the meshed path is during the fault.
	row := recs[1+16]
	if row[0] != "16" || row[1] != PathMeshed || row[2] != "200" || row[3] != "200" || row[8] != "kill echo-2" {
		t.Errorf("row for second 16: %q", row)
	}
	s := r.Series[16]
	if s.Errors == 0 || row[4] != strconv.FormatFloat(s.SuccessRate(), 'f', -1, 64) || row[7] != strconv.FormatInt(s.Errors, 10) {
		t.Errorf("row for second 16: %q; second %+v", row, s)
	}
}

func TestJudgeAndExitCode(t *testing.T) {
	ok := &Result{Assertions: []Assertion{{Verdict: Pass}}}
	failed := &Result{Assertions: []Assertion{{Verdict: Pass}, {Verdict: Fail, Message: "FAIL [x] a < 1: measured 2"}}}
	broken := &Result{Assertions: []Assertion{{Verdict: Fail}, {Verdict: Error, Message: "ERROR [x] ..."}}}
	crashed := &Result{Err: "kind cluster did not start"}
	for _, tc := range []struct {
		r    *Result
		v    Verdict
		code int
	}{{ok, Pass, 0}, {failed, Fail, 99}, {broken, Error, 1}, {crashed, Error, 1}, {&Result{}, Pass, 0}} {
		if v := tc.r.Judge(); v != tc.v || tc.r.Verdict != v || ExitCode(v) != tc.code {
			t.Errorf("Judge(%+v) = %v (exit %d), want %v (exit %d)", tc.r, v, ExitCode(v), tc.v, tc.code)
		}
	}
	if ExitCode("") != ExitError {
		t.Error("an unjudged run must not exit 0")
	}
	if err := failed.Failures(); err == nil || err.Error() != "FAIL [x] a < 1: measured 2" {
		t.Errorf("Failures: %v", err)
	}
	if err := ok.Failures(); err != nil {
		t.Errorf("Failures of a passing run: %v", err)
	}
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update if the change is intended):\n%s", name, firstDiff(string(got), string(want)))
	}
}

func TestGolden(t *testing.T) {
	r := fixture()
	var md, page bytes.Buffer
	if err := r.WriteSummary(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteReport(&page); err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.golden.md", md.Bytes())
	golden(t, "report.golden.html", page.Bytes())

	// result.json, without the series that make it long, documents the
	// schema by example.
	small := *r
	small.Series = small.Series[15:16]
	small.Trials = small.Trials[:2]
	small.Phases = []Phase{*r.Phase("during_fault")}
	small.Phases[0].Paths = small.Phases[0].Paths[:1]
	small.Phases[0].Paths[0].HistFile = "hist/during_fault-meshed.hdr"
	small.Processes = []Process{r.Processes[0]}
	small.Processes[0].RSS = small.Processes[0].RSS[:2]
	js, err := encodeJSON(&small)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "result.golden.json", js)
}

func TestReportEscapes(t *testing.T) {
	r := fixture()
	r.Scenario = `<script>alert(1)</script>`
	r.Events[0].Target = `<b>&"`
	r.Processes[0].Name = `</svg><script>`
	var page bytes.Buffer
	if err := r.WriteReport(&page); err != nil {
		t.Fatal(err)
	}
	if s := page.String(); strings.Contains(s, "<script") || strings.Contains(s, "<b>") {
		t.Error("report.html lets markup from names through")
	}
}

func TestReportEmpty(t *testing.T) {
	// A run that failed before measuring anything still gets a report.
	r := &Result{Scenario: "x", Err: "environment failed"}
	r.Judge()
	var page, md bytes.Buffer
	if err := r.WriteReport(&page); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteSummary(&md); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"plot-latency", "plot-success", "plot-distribution", "plot-rss"} {
		if !strings.Contains(page.String(), `id="`+id+`"`) {
			t.Errorf("no %s in an empty report", id)
		}
	}
	if !strings.Contains(md.String(), "ERROR run: environment failed") {
		t.Errorf("summary does not say why the run failed:\n%s", md.String())
	}
}

// A known failure that fails does not decide the verdict and is not among
// the failures; its ceiling does; an error is an error, known or not.
func TestJudgeKnownFailure(t *testing.T) {
	known := Assertion{Verdict: Fail, Message: "KNOWN FAIL [whole] proxy_vmhwm_mb <= 10", KnownFailure: "issue 12"}
	ceiling := Assertion{Verdict: Pass, Message: "PASS [whole] proxy_vmhwm_mb <= 12"}
	r := &Result{Assertions: []Assertion{known, ceiling}}
	if v := r.Judge(); v != Pass || r.Failures() != nil {
		t.Errorf("known failure under its ceiling: %s, failures %v", v, r.Failures())
	}
	if k := r.KnownFailures(); len(k) != 1 || k[0] != known.Message {
		t.Errorf("known failures: %q", k)
	}
	ceiling.Verdict = Fail
	if v := (&Result{Assertions: []Assertion{known, ceiling}}).Judge(); v != Fail {
		t.Errorf("ceiling broken: %s, want fail", v)
	}
	known.Verdict = Inconclusive
	ceiling.Verdict = Pass
	if v := (&Result{Assertions: []Assertion{known, ceiling}}).Judge(); v != Pass {
		t.Errorf("known failure inconclusive: %s, want pass", v)
	}
	known.Verdict = Error
	if v := (&Result{Assertions: []Assertion{known, ceiling}}).Judge(); v != Error {
		t.Errorf("known failure not evaluated: %s, want error", v)
	}
}
