package main

import (
	"fmt"
	"io"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/scheduler"
)

func init() { register("bench", newBenchSchedulerCmd) }

// benchSchedulerResult is the JSON of `hodei bench scheduler -o json`. The
// _1k and _10k fields come from the runs with 1,000 and 10,000 workers and
// are left out when --workers has no such run.
type benchSchedulerResult struct {
	PlacementsPerSec1k  float64 `json:"placements_per_sec_1k,omitempty"`
	PlacementsPerSec10k float64 `json:"placements_per_sec_10k,omitempty"`
	P50Micros1k         float64 `json:"p50_us_1k,omitempty"`
	P99Micros1k         float64 `json:"p99_us_1k,omitempty"`
	P50Micros10k        float64 `json:"p50_us_10k,omitempty"`
	P99Micros10k        float64 `json:"p99_us_10k,omitempty"`
	// Slowdown10k is 1 - placements_per_sec_10k / placements_per_sec_1k:
	// the target is at most 0.20.
	Slowdown10k float64 `json:"slowdown_10k,omitempty"`
	// The same ratio from CPU time, which other processes on a shared
	// machine disturb less than wall time.
	CPUSlowdown10k float64              `json:"cpu_slowdown_10k,omitempty"`
	Jobs           int                  `json:"jobs"`
	Repeat         int                  `json:"repeat"`
	Strategy       string               `json:"strategy"`
	Runs           []scheduler.BenchRun `json:"runs"`
}

func newBenchSchedulerCmd() *cobra.Command {
	var (
		output   string
		workers  []int
		jobs     int
		batch    int
		running  int
		repeat   int
		seed     uint64
		strategy string
		sample   int
	)
	c := &cobra.Command{
		Use:   "scheduler",
		Short: "Measure scheduler placements/s with synthetic workers and no I/O",
		Long: `Measure the scheduler alone: no store, no agents, no network.

For each cluster size (1,000 and 10,000 workers by default) it registers
workers in 10 label classes, submits --jobs jobs (1-4 CPUs, 1-8 GiB, 0-3 label
requirements, priorities 1-100, 4 queues) in batches, runs a scheduling round
after each batch and releases the oldest placements beyond --running, so every
job is placed. It reports placements per second over the whole
submit -> filter -> score -> reserve path on one goroutine, and the p50/p99
latency of a one-job round. Sizes are interleaved and each is run --repeat
times; the fastest run of each size is kept, since on a shared machine it is
the least disturbed one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			var strat scheduler.Strategy
			switch strategy {
			case "spread":
				strat = scheduler.Spread
			case "binpack":
				strat = scheduler.BinPack
			default:
				return usageError("--strategy %q: want \"spread\" or \"binpack\"", strategy)
			}
			switch {
			case jobs <= 0:
				return usageError("--jobs %d: want a positive number", jobs)
			case batch <= 0:
				return usageError("--batch %d: want a positive number", batch)
			case running < 0:
				return usageError("--running %d: want 0 (the default) or more", running)
			case repeat <= 0:
				return usageError("--repeat %d: want a positive number", repeat)
			case sample < 0 || sample > 4096:
				return usageError("--sample-size %d: want 0 (the default) to 4096", sample)
			}
			for _, n := range workers {
				if n <= 0 {
					return usageError("--workers %d: want positive numbers", n)
				}
			}
			res, err := scheduler.Bench(cmd.Context(), scheduler.BenchConfig{
				Workers: workers, Jobs: jobs, Batch: batch, Running: running, Repeat: repeat,
				Seed: seed, Strategy: strat, SampleSize: sample, CPUTime: processCPUTime,
			})
			if err != nil {
				return err
			}
			out := benchSchedulerResult{Jobs: jobs, Repeat: repeat, Strategy: strat.String(), Runs: res.Runs}
			var r1k, r10k *scheduler.BenchRun
			for i := range res.Runs {
				switch res.Runs[i].Workers {
				case 1000:
					r1k = &res.Runs[i]
				case 10000:
					r10k = &res.Runs[i]
				}
			}
			if r1k != nil {
				out.PlacementsPerSec1k, out.P50Micros1k, out.P99Micros1k = r1k.PlacementsPerSec, r1k.P50Micros, r1k.P99Micros
			}
			if r10k != nil {
				out.PlacementsPerSec10k, out.P50Micros10k, out.P99Micros10k = r10k.PlacementsPerSec, r10k.P50Micros, r10k.P99Micros
			}
			if r1k != nil && r10k != nil {
				out.Slowdown10k = 1 - r10k.PlacementsPerSec/r1k.PlacementsPerSec
				if r1k.PlacementsPerCPUSec > 0 && r10k.PlacementsPerCPUSec > 0 {
					out.CPUSlowdown10k = 1 - r10k.PlacementsPerCPUSec/r1k.PlacementsPerCPUSec
				}
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			return printSchedulerResult(cmd.OutOrStdout(), out)
		},
	}
	addOutputFlag(c, &output)
	c.Flags().IntSliceVar(&workers, "workers", []int{1000, 10000}, "cluster sizes to measure")
	c.Flags().IntVar(&jobs, "jobs", 100000, "jobs placed per cluster size")
	c.Flags().IntVar(&batch, "batch", 1000, "jobs per Submit call and scheduling round")
	c.Flags().IntVar(&running, "running", 0, "placed jobs kept reserved before the oldest are released (0: 10,000)")
	c.Flags().IntVar(&repeat, "repeat", 5, "runs per cluster size, interleaved; the fastest is kept")
	c.Flags().Uint64Var(&seed, "seed", 1, "seed of the workload and the scheduler")
	c.Flags().StringVar(&strategy, "strategy", "spread", `scoring strategy: "spread" or "binpack"`)
	c.Flags().IntVar(&sample, "sample-size", 0, "candidates scored per decision (0: max(2, ceil(log2 workers)))")
	return c
}

// processCPUTime is the user+system CPU time of this process so far.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func printSchedulerResult(w io.Writer, res benchSchedulerResult) error {
	fmt.Fprintf(w, "%d jobs per size, strategy %s, fastest of %d runs\n\n", res.Jobs, res.Strategy, res.Repeat)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workers\tk\tplacements/s\tper CPU-s\tp50 µs\tp99 µs\tdecisions\tworkers used\t")
	for _, r := range res.Runs {
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.0f\t%.1f\t%.1f\t%d\t%d\t\n", r.Workers, r.SampleSize, r.PlacementsPerSec,
			r.PlacementsPerCPUSec, r.P50Micros, r.P99Micros, r.Decisions, r.WorkersUsed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if res.PlacementsPerSec1k > 0 && res.PlacementsPerSec10k > 0 {
		_, err := fmt.Fprintf(w, "\n10,000 workers vs 1,000: %.1f%% slower (wall), %.1f%% (CPU); target <= 20%%\n",
			100*res.Slowdown10k, 100*res.CPUSlowdown10k)
		return err
	}
	return nil
}
