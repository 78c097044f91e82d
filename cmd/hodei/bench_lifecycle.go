package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/bench"
)

func init() { register("bench", newBenchLifecycleCmd) }

func newBenchLifecycleCmd() *cobra.Command {
	var cfg bench.LifecycleConfig
	var output, profile, memProfile, memLimit, gcFlag string
	c := &cobra.Command{
		Use:   "lifecycle",
		Short: "Jobs per second from submit to succeeded through the real API and agents",
		Long: `Run a whole server in this process on a bbolt store in a temporary directory,
connect --agents agents as real gRPC clients over loopback, submit --jobs jobs
through the JobService in batches, and measure submit-to-succeeded.
At most --window jobs are in flight (submitted, not yet succeeded): the run
measures the server in a steady state. --window -1 submits as fast as the
server takes jobs, so the queue grows as deep as submitting outruns running.

--executor noop: agents report each job done at once (the server's own cost).
--executor pty: real agents run ` + "`true`" + ` in a PTY; the result adds
raw_spawn_per_sec, the same spawns without Hodei in the same run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if cfg.Jobs < 1 || cfg.Jobs > 10_000_000 {
				return usageError("--jobs %d: want 1..10000000", cfg.Jobs)
			}
			if cfg.Agents < 1 || cfg.Agents > 1000 {
				return usageError("--agents %d: want 1..1000", cfg.Agents)
			}
			if cfg.Batch < 1 || cfg.Batch > 1000 {
				return usageError("--batch %d: want 1..1000", cfg.Batch)
			}
			if cfg.Window < -1 || (cfg.Window > 0 && cfg.Window < cfg.Batch) {
				return usageError("--window %d: want 0 (--submitters x --batch), -1 (no bound) or at least --batch (%d)", cfg.Window, cfg.Batch)
			}
			// The in-process server gets the memory limit `hodei server`
			// would set with the same flag (off included).
			lim, err := resolveMemoryLimit(memLimit, "/sys/fs/cgroup", os.Getenv)
			if err != nil {
				return err
			}
			lim.apply()
			gc, err := resolveGCPercent(gcFlag, os.Getenv)
			if err != nil {
				return err
			}
			gc.apply()
			if profile != "" {
				f, err := os.Create(profile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if memProfile != "" {
				cfg.AtEnd = func() error {
					f, err := os.Create(memProfile)
					if err != nil {
						return err
					}
					defer f.Close()
					return pprof.Lookup("heap").WriteTo(f, 0)
				}
			}
			res, err := bench.Lifecycle(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d jobs on %d %s agents: %.0f jobs/s (%.0f events/s), submit to succeeded p50 %.1f ms p99 %.1f ms, peak RSS %.0f MB\n",
				res.Jobs, res.Agents, res.Executor, res.JobsPerSec, res.EventsPerSec, res.P50MS, res.P99MS, res.PeakRSSMB)
			if res.RawSpawnPerSec > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "raw PTY spawns of `true` at the same concurrency: %.0f/s\n", res.RawSpawnPerSec)
			}
			return nil
		},
	}
	c.Flags().IntVar(&cfg.Jobs, "jobs", 10_000, "jobs to submit")
	c.Flags().IntVar(&cfg.Agents, "agents", 16, "agents to connect")
	c.Flags().StringVar(&cfg.Executor, "executor", "noop", "noop or pty")
	c.Flags().IntVar(&cfg.Batch, "batch", 500, "jobs per SubmitJobs call")
	c.Flags().IntVar(&cfg.Submitters, "submitters", 4, "SubmitJobs calls in flight")
	c.Flags().IntVar(&cfg.Window, "window", 0, "most jobs submitted and not yet succeeded (0: --submitters x --batch, one batch in flight per submitter; -1: no bound, submit as fast as the server takes jobs)")
	c.Flags().IntVar(&cfg.Slots, "slots", 0, "slots per agent (default 1024 for noop, 2 for pty)")
	c.Flags().DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "give up after this long")
	c.Flags().StringVar(&memLimit, "memory-limit", "auto", "Go soft memory limit for the run, as for hodei server: a size (200Mi), off, or auto")
	c.Flags().StringVar(&gcFlag, "gc-percent", "auto", "Go GC percent for the run, as for hodei server: 10-1000, or auto")
	c.Flags().StringVar(&cfg.Dir, "dir", "", "where to put the data dir (default a temp dir, removed after)")
	c.Flags().StringVar(&profile, "cpuprofile", "", "write a CPU profile of the run to this file")
	c.Flags().StringVar(&memProfile, "memprofile", "", "write a heap profile at the end of the run to this file")
	addOutputFlag(c, &output)
	return c
}
