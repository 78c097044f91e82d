package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"
)

// BenchConfig describes a synthetic scheduling benchmark: no I/O, no agents,
// only the scheduler's submit -> filter -> score -> reserve path and the
// releases that keep the cluster at a steady load.
type BenchConfig struct {
	// Workers lists the cluster sizes to run, one run each. Default 1,000
	// and 10,000.
	Workers []int
	// Jobs is how many jobs each run places. Default 100,000.
	Jobs int
	// Batch is how many jobs one Submit call carries; each batch is followed
	// by one ScheduleRound. Default 1,000.
	Batch int
	// Running is how many placed jobs stay running: past it, the oldest are
	// released (their jobs "end"). Default 10,000 at every cluster size, so
	// runs of different sizes hold the same number of reservations and
	// differ only in the number of workers: 39% of the CPU of 1,000 workers,
	// 4% of 10,000.
	Running int
	// LatencyJobs is how many extra jobs are placed one per ScheduleRound
	// call, timed each, for the latency percentiles. Default 10,000.
	LatencyJobs int
	// Seed makes the workload and the scheduler's choices reproducible.
	// Default 1.
	Seed uint64
	// Strategy is the scheduler's strategy.
	Strategy Strategy
	// SampleSize is the scheduler's Config.SampleSize (0: its default).
	SampleSize int
	// Repeat runs each size this many times, interleaving sizes, and keeps
	// the fastest run of each: on a shared machine the fastest run is the one
	// least disturbed by other work. Default 1.
	Repeat int
	// CPUTime, if set, returns the process's CPU time so far; runs then also
	// report CPU seconds, which other processes disturb less than wall time.
	// (The package does no system calls itself; the command injects it.)
	CPUTime func() time.Duration
}

// BenchRun is the result of one cluster size.
type BenchRun struct {
	Workers int `json:"workers"`
	Jobs    int `json:"jobs"`
	// Seconds is the wall time from the first Submit to the last placement,
	// all of it on one goroutine.
	Seconds          float64 `json:"seconds"`
	PlacementsPerSec float64 `json:"placements_per_sec"`
	// CPUSeconds is the process CPU time over the same span (GC included);
	// 0 without BenchConfig.CPUTime.
	CPUSeconds          float64 `json:"cpu_seconds,omitempty"`
	PlacementsPerCPUSec float64 `json:"placements_per_cpu_sec,omitempty"`
	// P50Micros and P99Micros are the wall time of one ScheduleRound(now, 1)
	// call that places one job: a decision plus the round's fixed overhead.
	P50Micros float64 `json:"p50_us"`
	P99Micros float64 `json:"p99_us"`
	// Decisions counts filter+score+reserve runs; above Jobs when jobs had to
	// retry.
	Decisions uint64 `json:"decisions"`
	// WorkersUsed is how many workers got at least one job.
	WorkersUsed int `json:"workers_used"`
	// Running is how many placed jobs were kept reserved at a time.
	Running int `json:"running"`
	// SampleSize is the number of candidates a decision scores (k).
	SampleSize int `json:"sample_size"`
}

// BenchResult holds one run per cluster size.
type BenchResult struct {
	Runs []BenchRun `json:"runs"`
}

// Bench runs the synthetic benchmark. The workload: workers in 10 label
// classes (class, zone, arch, disk, gpu) with 64 slots, 64 CPUs and
// 256 GiB; jobs of 1-4 CPUs and 1-8 GiB with 0-3 label requirements drawn
// from what one random class offers (so every job is feasible), priorities
// 1-100, spread over 4 queues. Heartbeats arrive at the rate 10,000 workers
// at one per 5s would send per placement at 200,000 placements/s.
func Bench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	if len(cfg.Workers) == 0 {
		cfg.Workers = []int{1000, 10000}
	}
	if cfg.Jobs == 0 {
		cfg.Jobs = 100000
	}
	if cfg.Batch == 0 {
		cfg.Batch = 1000
	}
	if cfg.LatencyJobs == 0 {
		cfg.LatencyJobs = 10000
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	switch {
	case cfg.Jobs < 0:
		return BenchResult{}, fmt.Errorf("bench scheduler: %w", invalid("jobs", "%d is negative", cfg.Jobs))
	case cfg.Batch < 0:
		return BenchResult{}, fmt.Errorf("bench scheduler: %w", invalid("batch", "%d is negative", cfg.Batch))
	case cfg.Running < 0:
		return BenchResult{}, fmt.Errorf("bench scheduler: %w", invalid("running", "%d is negative", cfg.Running))
	case cfg.LatencyJobs < 0:
		return BenchResult{}, fmt.Errorf("bench scheduler: %w", invalid("latency_jobs", "%d is negative", cfg.LatencyJobs))
	}
	if cfg.Repeat <= 0 {
		cfg.Repeat = 1
	}
	for _, n := range cfg.Workers {
		if n <= 0 || n > 1<<20 {
			return BenchResult{}, fmt.Errorf("bench scheduler: %w", invalid("workers", "%d is outside 1..%d", n, 1<<20))
		}
	}
	out := BenchResult{Runs: make([]BenchRun, len(cfg.Workers))}
	for rep := range cfg.Repeat {
		for i, n := range cfg.Workers {
			run, err := benchOne(ctx, cfg, n)
			if err != nil {
				return BenchResult{}, fmt.Errorf("bench scheduler (%d workers): %w", n, err)
			}
			if rep == 0 || run.PlacementsPerSec > out.Runs[i].PlacementsPerSec {
				out.Runs[i] = run
			}
		}
	}
	return out, nil
}

type benchClass struct {
	labels map[string]string
	reqs   []Requirement // requirements this class satisfies
}

func benchClasses() []benchClass {
	classes := make([]benchClass, 10)
	for c := range classes {
		l := map[string]string{
			"class": fmt.Sprintf("c%d", c),
			"zone":  fmt.Sprintf("z%d", c%5),
			"arch":  map[bool]string{true: "amd64", false: "arm64"}[c < 7],
			"disk":  map[bool]string{true: "ssd", false: "hdd"}[c%2 == 0],
		}
		reqs := []Requirement{
			Eq("class", l["class"]), Eq("zone", l["zone"]), Eq("arch", l["arch"]), Eq("disk", l["disk"]),
			In("zone", l["zone"], fmt.Sprintf("z%d", (c+1)%5)), NotEq("arch", map[bool]string{true: "arm64", false: "amd64"}[c < 7]),
		}
		if c == 9 {
			l["gpu"] = "true"
			reqs = append(reqs, Exists("gpu"))
		} else {
			reqs = append(reqs, NotExists("gpu"))
		}
		classes[c] = benchClass{l, reqs}
	}
	return classes
}

func benchJobs(r *rand.Rand, classes []benchClass, prefix string, n int) []Job {
	jobs := make([]Job, n)
	for i := range jobs {
		c := classes[r.IntN(len(classes))]
		var sel Selector
		for _, k := range r.Perm(len(c.reqs))[:r.IntN(4)] {
			sel = append(sel, c.reqs[k])
		}
		jobs[i] = Job{
			ID:        fmt.Sprintf("%s%d", prefix, i),
			Attempt:   1,
			Queue:     fmt.Sprintf("q%d", i%4),
			Priority:  1 + r.IntN(100),
			Resources: Resources{Slots: 1, CPUMillis: int64(1+r.IntN(4)) * 1000, MemoryBytes: int64(1+r.IntN(8)) << 30},
			Selector:  sel,
		}
	}
	return jobs
}

// benchEnv is one cluster under benchmark, set up and ready to place jobs.
type benchEnv struct {
	s        *Scheduler
	r        *rand.Rand
	classes  []benchClass
	names    []string
	now      time.Time
	batch    int
	running  int
	ring     []Placement // running jobs, oldest first
	placedOn []string    // worker of every placement, for WorkersUsed
}

// simulated time per placed job: 100,000 jobs span 1s.
const benchStep = 10 * time.Microsecond

func newBenchEnv(cfg BenchConfig, nw int) (*benchEnv, error) {
	s, err := New(Config{Seed: cfg.Seed, Strategy: cfg.Strategy, SampleSize: cfg.SampleSize})
	if err != nil {
		return nil, err
	}
	e := &benchEnv{
		s:       s,
		r:       rand.New(rand.NewPCG(cfg.Seed, uint64(nw))),
		classes: benchClasses(),
		names:   make([]string, nw),
		now:     time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		batch:   max(cfg.Batch, 1),
		running: cfg.Running,
	}
	if e.running == 0 {
		e.running = 10000
	}
	for i := range nw {
		e.names[i] = fmt.Sprintf("w%d", i)
		err := s.UpsertWorker(e.now, Worker{ID: e.names[i], Labels: e.classes[i%len(e.classes)].labels,
			Capacity: Resources{Slots: 64, CPUMillis: 64000, MemoryBytes: 256 << 30}})
		if err != nil {
			return nil, err
		}
		if err := s.Heartbeat(e.names[i], Telemetry{At: e.now, CPUFraction: 0.05, MemoryUsedBytes: 2 << 30}); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// run submits jobs in batches, with a round after each batch and a few
// heartbeats, and returns when all are placed.
func (e *benchEnv) run(ctx context.Context, jobs []Job) error {
	s := e.s
	for off := 0; off < len(jobs); off += e.batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := jobs[off:min(off+e.batch, len(jobs))]
		for i := range batch {
			batch[i].SubmittedAt = e.now
		}
		if err := s.Submit(e.now, batch...); err != nil {
			return err
		}
		if err := e.place(len(batch), 0, nil); err != nil {
			return err
		}
		for range max(1, len(batch)/100) {
			id := e.names[e.r.IntN(len(e.names))]
			err := s.Heartbeat(id, Telemetry{At: e.now, CPUFraction: e.r.Float64() * 0.5, MemoryUsedBytes: int64(e.r.IntN(64)) << 30})
			if err != nil {
				return err
			}
		}
		e.now = e.now.Add(time.Duration(len(batch)) * benchStep)
	}
	return nil
}

// place runs rounds of up to roundMax placements until n more jobs are
// placed, releasing the oldest beyond the running window; lat, if not nil,
// gets the wall time of each round in µs.
func (e *benchEnv) place(n, roundMax int, lat *[]float64) error {
	s := e.s
	placed, stuck := 0, 0
	for placed < n {
		t := time.Now()
		round := s.ScheduleRound(e.now, roundMax)
		if lat != nil {
			*lat = append(*lat, float64(time.Since(t).Nanoseconds())/1e3)
		}
		placed += len(round.Placements)
		e.ring = append(e.ring, round.Placements...)
		for _, p := range round.Placements {
			e.placedOn = append(e.placedOn, p.WorkerID)
		}
		e.releaseDown(e.running)
		if len(round.Placements) == 0 {
			// The cluster is full for what is left (the window is more
			// than it holds): end some running jobs early, and let
			// backed-off jobs come due.
			if len(round.Parked) > 0 || stuck > 1000 || len(e.ring) == 0 && round.NextRetry.IsZero() {
				return fmt.Errorf("stuck with %d of %d placed; %d parked", placed, n, len(round.Parked))
			}
			stuck++
			e.releaseDown(len(e.ring) - max(1, n-placed))
			if !round.NextRetry.IsZero() && len(e.ring) == 0 {
				e.now = round.NextRetry
			}
		}
	}
	return nil
}

// releaseDown ends the oldest running jobs until at most keep run.
func (e *benchEnv) releaseDown(keep int) {
	for len(e.ring) > max(keep, 0) {
		e.s.Release(e.ring[0].JobID, e.ring[0].Attempt)
		e.ring = e.ring[1:]
	}
}

func benchOne(ctx context.Context, cfg BenchConfig, nw int) (BenchRun, error) {
	e, err := newBenchEnv(cfg, nw)
	if err != nil {
		return BenchRun{}, err
	}
	jobs := benchJobs(e.r, e.classes, "j", cfg.Jobs)
	extra := benchJobs(e.r, e.classes, "l", cfg.LatencyJobs)
	e.placedOn = make([]string, 0, len(jobs)+len(extra))

	runtime.GC() // start each run from the same heap state
	var cpu0 time.Duration
	if cfg.CPUTime != nil {
		cpu0 = cfg.CPUTime()
	}
	start := time.Now()
	if err := e.run(ctx, jobs); err != nil {
		return BenchRun{}, err
	}
	elapsed := time.Since(start)
	var cpu time.Duration
	if cfg.CPUTime != nil {
		cpu = cfg.CPUTime() - cpu0
	}

	lat := make([]float64, 0, len(extra))
	if len(extra) > 0 {
		if err := e.s.Submit(e.now, extra...); err != nil {
			return BenchRun{}, err
		}
		for i := range extra {
			if i%1000 == 0 {
				if err := ctx.Err(); err != nil {
					return BenchRun{}, err
				}
			}
			if err := e.place(1, 1, &lat); err != nil {
				return BenchRun{}, err
			}
			e.now = e.now.Add(benchStep)
		}
	}
	for _, wi := range e.s.Workers() {
		if !wi.Reserved.LessOrEqual(wi.Capacity) {
			return BenchRun{}, fmt.Errorf("worker %s over-committed: %v > %v", wi.ID, wi.Reserved, wi.Capacity)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	used := map[string]bool{}
	for _, w := range e.placedOn {
		used[w] = true
	}
	run := BenchRun{
		Workers:          nw,
		Jobs:             len(jobs),
		Seconds:          elapsed.Seconds(),
		PlacementsPerSec: float64(len(jobs)) / elapsed.Seconds(),
		P50Micros:        pct(0.50),
		P99Micros:        pct(0.99),
		Decisions:        e.s.Stats().Decisions,
		WorkersUsed:      len(used),
		Running:          e.running,
		SampleSize:       e.s.sampleSize(&item{}),
	}
	if cpu > 0 {
		run.CPUSeconds = cpu.Seconds()
		run.PlacementsPerCPUSec = float64(len(jobs)) / cpu.Seconds()
	}
	return run, nil
}
