// Package loadgen is skiff's open-model load generator for HTTP/1.1, h2c,
// gRPC unary and gRPC server-streaming targets, for protocols whose every
// request is a connection of its own (an opaque TCP echo, a TLS echo, a
// server-speaks-first banner dialogue), or a mix of them (Options.Mix). It
// measures latency honestly, as the harness's
// "Measuring honestly" section asks: from each request's intended send time,
// into HDR histograms with microsecond resolution.
//
// # Model
//
// Run walks a vegeta pacer's schedule (Constant, Ramp, Steps, or any
// vegeta.Pacer) and sends each request when it is due, without waiting for
// earlier responses. The schedule has its own clock: the pacer is asked for
// the next hit given the intended time of the previous one, not the wall
// clock, so the intended times (and the per-second counts) do not depend on
// how busy the machine is.
//
// # Coordinated omission
//
// A request's latency runs from start+intended offset to the end of its
// response body (or its error; for a streaming call, its trailers), not
// from the moment it actually left. If the generator runs late, if every
// worker is busy, or if the HTTP/1.1 pool has no free connection, the time
// waited is part of the latency, so a stalled target cannot hide its stall
// by slowing the generator down. Result.SendLag shows how much of the
// latency was waiting to be sent.
//
// # Bounded concurrency
//
// Requests are sent by a pool of worker goroutines that grows on demand up to
// Options.MaxInFlight and is reused for the whole run (no goroutine per
// request). A request due while MaxInFlight requests are in flight waits for
// a free worker, and that wait counts in its latency. When Options.Duration
// has elapsed, requests still waiting are not sent: they are recorded as
// ErrDropped ("dropped: in-flight limit"), with status CodeNone and no
// latency. So the generator's memory is bounded by MaxInFlight whatever the
// target does, and a run lasts at most Duration plus Timeout.
//
// # Output
//
// Result is a plain struct with JSON tags: whole-run percentiles, success
// rate (Options.Success decides, DefaultSuccess by default), status codes
// ("200", "grpc:Unavailable", CodeNone), error messages with bounded
// cardinality, scheduled and achieved rates, and a per-second series by
// intended send time. The raw histograms travel in the JSON in the standard
// HdrHistogram V2 compressed form; Latency.Histogram and Second.Histogram
// decode them, WritePercentiles prints the standard percentile distribution
// and Result.WriteHistogramLog writes an HdrHistogram interval log. Requests
// due during Options.WarmUp are sent but not recorded.
//
// # Lifecycle
//
// Run stops on its own at the end of the schedule, or early when its context
// ends; either way it waits for its workers and closes its connections before
// returning, so no goroutine outlives it.
package loadgen
