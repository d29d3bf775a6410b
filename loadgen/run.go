package loadgen

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

// maxStalledHits bounds how many hits a pacer may schedule at one instant
// before Run gives up on it as an unlimited-rate pacer.
const maxStalledHits = 100_000

// job is one scheduled request: its intended send time as an offset from the
// run's start.
type job struct {
	intended time.Duration
}

// run is the state of one Run call.
type run struct {
	ctx    context.Context
	o      *Options
	start  time.Time
	client client
	rec    *recorder

	jobs    chan job // unbuffered: a send succeeds only into an idle worker
	wg      sync.WaitGroup
	workers int // owned by the scheduler goroutine
}

// Run sends requests to o.Target on o's schedule until the schedule reaches
// o.Duration (or the pacer stops), waits for the requests in flight, closes
// its connections and returns what it measured. No goroutine outlives it.
//
// If ctx ends first, Run stops sending, aborts the requests in flight and
// returns the partial Result, with Interrupted set, together with ctx's
// error. Any other error (invalid options) comes with a nil Result.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.Normalize(); err != nil {
		return nil, err
	}
	c, err := newClient(&o)
	if err != nil {
		return nil, fmt.Errorf("loadgen: connecting to %s: %w", o.Target.URL, err)
	}
	defer c.close()

	r := &run{
		ctx:    ctx,
		o:      &o,
		client: c,
		rec:    newRecorder(&o),
		jobs:   make(chan job),
	}
	var stopNoise func() *Noise
	if runtime.GOOS == "linux" {
		stopNoise = measureNoise(procNoiseProbe(os.Getpid()))
	}
	r.start = time.Now()
	stopProgress := r.progress()
	schedErr := r.schedule()
	close(r.jobs)
	r.wg.Wait()
	stopProgress()
	elapsed := time.Since(r.start)

	interrupted := ctx.Err() != nil
	res, err := r.rec.result(&o, r.start.Round(0).UTC(), elapsed, interrupted)
	if stopNoise != nil {
		noise := stopNoise()
		if res != nil {
			res.Noise = noise
		}
	}
	switch {
	case err != nil:
		return nil, err
	case schedErr != nil:
		return nil, schedErr
	case interrupted:
		return res, fmt.Errorf("loadgen: run interrupted: %w", context.Cause(ctx))
	}
	return res, nil
}

// progress calls Options.Progress once a second until the returned stop
// function is called.
func (r *run) progress() (stop func()) {
	if r.o.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for n := 0; ; {
			select {
			case <-done:
				return
			case <-r.ctx.Done():
				return
			case <-t.C:
			}
			n++
			if s, ok := r.rec.second(n - 1); ok {
				r.o.Progress(s)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// schedule walks the pacer's schedule and hands each hit to a worker at its
// intended time. The schedule has its own clock: the pacer is asked with the
// intended time of the previous hit, not the wall clock, so a late generator
// sends late but never shifts or thins the schedule.
func (r *run) schedule() error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	deadline := time.NewTimer(time.Until(r.start.Add(r.o.Duration)))
	defer deadline.Stop()

	var (
		hits     uint64
		at       time.Duration // intended time of the previous hit
		stalled  int
		draining bool // the duration has ended with hits still waiting for a slot
	)
	for {
		wait, stop := r.o.Pacer.Pace(at, hits)
		if stop {
			return nil
		}
		if wait <= 0 {
			if stalled++; stalled > maxStalledHits {
				return fmt.Errorf("loadgen: pacer %v scheduled %d requests at the same instant: it looks unlimited; give it a finite rate", r.o.Pacer, stalled)
			}
			wait = 0
		} else {
			stalled = 0
		}
		next := at + wait
		if next >= r.o.Duration {
			return nil
		}
		at, hits = next, hits+1

		if draining {
			r.rec.due(next)
			r.rec.record(sample{intended: next, done: time.Since(r.start), out: outcome{code: CodeNone}, dropped: true})
			continue
		}
		if d := time.Until(r.start.Add(next)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-r.ctx.Done():
				return nil
			}
		}
		r.rec.due(next)
		switch r.dispatch(job{intended: next}, deadline.C) {
		case dispatched:
		case canceled:
			return nil
		case expired:
			draining = true
			r.rec.record(sample{intended: next, done: time.Since(r.start), out: outcome{code: CodeNone}, dropped: true})
		}
	}
}

type dispatchResult int

const (
	dispatched dispatchResult = iota
	canceled
	expired
)

// dispatch hands j to an idle worker, or to a new one while fewer than
// MaxInFlight exist, or else waits for a worker to free up, until the run's
// duration ends or the context does.
func (r *run) dispatch(j job, deadline <-chan time.Time) dispatchResult {
	select {
	case r.jobs <- j:
		return dispatched
	default:
	}
	if r.workers < r.o.MaxInFlight {
		r.workers++
		r.wg.Add(1)
		go r.work(j)
		return dispatched
	}
	select {
	case r.jobs <- j:
		return dispatched
	case <-r.ctx.Done():
		return canceled
	case <-deadline:
		return expired
	}
}

// work sends first, then every job it receives until the scheduler closes
// the channel.
func (r *run) work(first job) {
	defer r.wg.Done()
	r.send(first)
	for j := range r.jobs {
		r.send(j)
	}
}

func (r *run) send(j job) {
	sent := time.Since(r.start)
	ctx, cancel := context.WithTimeout(r.ctx, r.o.Timeout)
	out := r.client.call(ctx)
	cancel()
	done := time.Since(r.start)
	if r.ctx.Err() != nil && (out.err != nil || !r.o.Success(out.code)) {
		return // aborted by the run's context: not a measurement
	}
	r.rec.record(sample{intended: j.intended, sent: sent, done: done, out: out})
}
