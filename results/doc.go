// Package results is what a scenario run leaves behind: the versioned
// result schema (result.json, SchemaV1), the results folder that Write
// stores and Read loads, the process sampler for memory and CPU, the
// Markdown summary for CI logs, the self-contained HTML report, the
// comparison of two runs with statistics, and the exit codes.
//
// # A results folder
//
//	result.json                  the Result (schema "skiff.result/v1")
//	timeseries.csv               per second and path: offset_s, path, requests, rate_per_s,
//	                             success_rate, p50_ms, p99_ms, errors, active_faults
//	hist/<phase>-<path>.hdr      raw latency histograms, µs, HdrHistogram V2 compressed base64
//	hist/propagation.hdr         control-plane scale runs: change-to-watcher latencies, µs, same form
//	summary.md                   Markdown for CI logs
//	report.html                  one page, inline SVG plots, no script, no network
//
// # Units
//
// Offsets are seconds since Result.Start; latencies are milliseconds
// measured from each request's intended send time, summarized from
// microsecond HDR histograms; memory is MiB from /proc/<pid>/status
// (VmRSS sampled, VmHWM the kernel's peak; both are kept and named);
// CPU is utime+stime from /proc/<pid>/stat.
//
// # Roles
//
// The runner fills a Result: phases (named time windows it defines) with
// per-path stats, the per-second series, the fault events as they happened,
// interleaved trials, and processes from a Sampler. Package results/assert
// turns each scenario assertion and the phase's metrics into an Assertion.
// Judge sets the verdict, Write stores the folder, Failures says what
// failed and ExitCode(Verdict) is the process's exit code: ExitAssertionFailed
// (99, as k6) when an assertion failed, ExitError (1) when the run could not
// be carried out or judged. Compare(a, b) tells what changed between two
// runs, with medians, 95 % confidence intervals and Mann–Whitney U p-values
// (golang.org/x/perf/benchmath).
package results
