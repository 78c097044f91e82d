package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/bench"
)

func init() { register("bench", newBenchReplayCmd) }

func newBenchReplayCmd() *cobra.Command {
	var output, dir, positions string
	var events, runs int
	var cacheEvery uint64
	var inProcess bool
	c := &cobra.Command{
		Use:   "replay",
		Short: "Time `replay verify` and `replay state --at` on a log of N events, each from a cold start",
		Long: `Write a log of --events events (a realistic mix: workers registering, being
lost and reconnecting, draining, leaving; jobs queued, parked, scheduled,
re-queued, finished, failed, cancelled, timed out) into a temporary data dir,
then time, each in a fresh 'hodei replay' process:

  verify        --runs times; verify_events_per_sec is from the median run
  state --at    first at the head with an empty replay cache (it replays
                everything and leaves a snapshot every --cache-every events),
                then at each of --positions; state_at_ms is the slowest.

The page cache is not dropped (that needs root): the log is read from memory.
CPU times (user+system of each process) are reported beside wall times.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if events < 10 || events > 100_000_000 {
				return usageError("--events %d: want 10..100000000", events)
			}
			cfg := bench.ReplayConfig{Dir: dir, Events: events, Runs: runs, CacheEvery: cacheEvery}
			for _, f := range strings.FieldsFunc(positions, func(r rune) bool { return r == ',' }) {
				p, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
				if err != nil || p == 0 || p > uint64(events) {
					return usageError("--positions: %q is not a position in 1..%d", f, events)
				}
				cfg.Positions = append(cfg.Positions, p)
			}
			if !inProcess {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				cfg.Binary = self
			}
			bar := newProgress(cmd.ErrOrStderr(), "writing log", uint64(events))
			cfg.Progress = func(done, _ uint64) { bar.update(done) }
			res, err := bench.Replay(cmd.Context(), cfg)
			bar.finish()
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%d events (%d MiB log, written in %.1fs)\n", res.Events, res.LogBytes>>20, res.GenerateSeconds)
			fmt.Fprintf(w, "verify: %.0f events/s (runs %v ms, cpu %v ms)\n", res.VerifyEventsPerSec, res.VerifyMS, res.VerifyCPUMS)
			fmt.Fprintf(w, "state --at %d with an empty cache: %.0f ms\n", res.Events, res.StateAtFirstMS)
			for _, p := range res.StateAt {
				fmt.Fprintf(w, "state --at %d: %.0f ms (cpu %.0f ms; snapshot %d + %d events)\n", p.Position, p.MS, p.CPUMS, p.FromSnapshot, p.Replayed)
			}
			fmt.Fprintf(w, "slowest state --at: %.0f ms; %s\n", res.StateAtMS, res.Note)
			return nil
		},
	}
	c.Flags().IntVar(&events, "events", 1_000_000, "events in the log")
	c.Flags().IntVar(&runs, "runs", 3, "timed verify runs")
	c.Flags().StringVar(&positions, "positions", "", "comma-separated positions for state --at (default six spread over the log)")
	c.Flags().Uint64Var(&cacheEvery, "cache-every", 0, "replay cache snapshot distance (default 100000)")
	c.Flags().BoolVar(&inProcess, "in-process", false, "measure in this process instead of fresh ones")
	c.Flags().StringVar(&dir, "dir", "", "where to build the data dir (default a temp dir, removed after)")
	addOutputFlag(c, &output)
	return c
}
