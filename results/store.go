package results

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Files of a results folder.
const (
	ResultFile     = "result.json"
	TimeSeriesFile = "timeseries.csv"
	SummaryFile    = "summary.md"
	ReportFile     = "report.html"
	// HistDir holds one raw histogram per phase and path,
	// "<phase>-<path>.hdr": the HdrHistogram V2 compressed, base64 form on
	// one line (what an interval log's last column holds and
	// hdrhistogram.Decode reads), values in microseconds.
	HistDir = "hist"
)

// Write stores r as a results folder in dir, creating it if needed:
// result.json, timeseries.csv, hist/<phase>-<path>.hdr, summary.md and
// report.html. It sets r.Schema when empty and each PathStats.HistFile.
// It does not judge r: call Judge first.
func (r *Result) Write(dir string) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r.Schema == "" {
		r.Schema = SchemaV1
	}
	if err := os.MkdirAll(filepath.Join(dir, HistDir), 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	for i := range r.Phases {
		ph := &r.Phases[i]
		for j := range ph.Paths {
			ps := &ph.Paths[j]
			ps.HistFile = ""
			if ps.Histogram == nil {
				continue
			}
			enc, err := ps.Histogram.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
			if err != nil {
				return fmt.Errorf("results: encoding histogram of phase %q path %q: %w", ph.Name, ps.Path, err)
			}
			ps.HistFile = histFile(ph.Name, ps.Path)
			if err := os.WriteFile(filepath.Join(dir, ps.HistFile), append(enc, '\n'), 0o644); err != nil {
				return fmt.Errorf("results: %w", err)
			}
		}
	}

	if p := r.Propagation; p != nil {
		p.HistFile = ""
		if p.Histogram != nil {
			enc, err := p.Histogram.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
			if err != nil {
				return fmt.Errorf("results: encoding the propagation histogram: %w", err)
			}
			p.HistFile = propagationHistFile
			if err := os.WriteFile(filepath.Join(dir, p.HistFile), append(enc, '\n'), 0o644); err != nil {
				return fmt.Errorf("results: %w", err)
			}
		}
	}

	js, err := encodeJSON(r)
	if err != nil {
		return fmt.Errorf("results: encoding %s (a NaN or infinite measurement?): %w", ResultFile, err)
	}
	files := []struct {
		name  string
		write func(io.Writer) error
	}{
		{ResultFile, func(w io.Writer) error { _, err := w.Write(js); return err }},
		{TimeSeriesFile, r.WriteTimeSeries},
		{SummaryFile, r.WriteSummary},
		{ReportFile, r.WriteReport},
	}
	for _, f := range files {
		var buf bytes.Buffer
		if err := f.write(&buf); err != nil {
			return fmt.Errorf("results: writing %s: %w", f.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("results: %w", err)
		}
	}
	return nil
}

// encodeJSON indents r and leaves "<", ">" and "&" alone: result.json is
// read by people and jq, not embedded in HTML, and "p99_ms < 1" should read
// as written.
func encodeJSON(r *Result) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Read loads the results folder dir that Write made: result.json (unknown
// fields are an error, and so is a schema other than SchemaV1) and the
// histograms it names.
func Read(dir string) (*Result, error) {
	b, err := os.ReadFile(filepath.Join(dir, ResultFile))
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	// Check the version first, so an old or future file says so rather
	// than failing on the first field that moved.
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("results: %s: %w", filepath.Join(dir, ResultFile), err)
	}
	if head.Schema != SchemaV1 {
		return nil, fmt.Errorf("results: %s has schema %q; this skiff reads %q", filepath.Join(dir, ResultFile), head.Schema, SchemaV1)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	r := new(Result)
	if err := dec.Decode(r); err != nil {
		return nil, fmt.Errorf("results: %s: %w", filepath.Join(dir, ResultFile), err)
	}
	for i := range r.Phases {
		ph := &r.Phases[i]
		for j := range ph.Paths {
			ps := &ph.Paths[j]
			if ps.HistFile == "" {
				continue
			}
			if !filepath.IsLocal(ps.HistFile) {
				return nil, fmt.Errorf("results: phase %q path %q: histogram file %q is outside the folder", ph.Name, ps.Path, ps.HistFile)
			}
			enc, err := os.ReadFile(filepath.Join(dir, ps.HistFile))
			if err != nil {
				return nil, fmt.Errorf("results: phase %q path %q: %w", ph.Name, ps.Path, err)
			}
			if ps.Histogram, err = hdrhistogram.Decode(bytes.TrimSpace(enc)); err != nil {
				return nil, fmt.Errorf("results: decoding %s: %w", filepath.Join(dir, ps.HistFile), err)
			}
		}
	}
	if p := r.Propagation; p != nil && p.HistFile != "" {
		if !filepath.IsLocal(p.HistFile) {
			return nil, fmt.Errorf("results: propagation histogram file %q is outside the folder", p.HistFile)
		}
		enc, err := os.ReadFile(filepath.Join(dir, p.HistFile))
		if err != nil {
			return nil, fmt.Errorf("results: propagation: %w", err)
		}
		if p.Histogram, err = hdrhistogram.Decode(bytes.TrimSpace(enc)); err != nil {
			return nil, fmt.Errorf("results: decoding %s: %w", filepath.Join(dir, p.HistFile), err)
		}
	}
	return r, nil
}

// timeSeriesHeader is the first line of timeseries.csv. The rows are
// r.Series; rate_per_s is the second's requests over its one-second width,
// success_rate is Second.SuccessRate, and active_faults joins
// Second.ActiveFaults with "; ".
var timeSeriesHeader = []string{"offset_s", "path", "requests", "rate_per_s", "success_rate", "p50_ms", "p99_ms", "errors", "active_faults"}

// WriteTimeSeries writes r.Series as CSV (timeseries.csv).
func (r *Result) WriteTimeSeries(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(timeSeriesHeader); err != nil {
		return err
	}
	g := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, s := range r.Series {
		rec := []string{
			strconv.Itoa(s.OffsetS), s.Path, strconv.FormatInt(s.Requests, 10),
			g(float64(s.Requests)), g(s.SuccessRate()), g(s.P50Ms), g(s.P99Ms),
			strconv.FormatInt(s.Errors, 10), strings.Join(s.ActiveFaults, "; "),
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
