package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/bench"
)

func init() { register("bench", newBenchStoreCmd) }

func newBenchStoreCmd() *cobra.Command {
	var (
		output    string
		dir       string
		pgDSN     string
		events    int
		duration  time.Duration
		appenders []int
		repeat    int
	)
	c := &cobra.Command{
		Use:   "store",
		Short: "Measure durable appends/s of the bolt event store against a raw bbolt loop, and read scans",
		Long: `Measure the bolt event store on this machine's disk (or the PostgreSQL one with --postgres).

For 1, 8, 64 and 512 concurrent appenders, each appending single 200-byte
events (stored size) to its own streams, it measures durable appends per
second and the batch size group commit achieved, then a raw bbolt loop
writing the same number of records of the same size in transactions of that
size (the limit of this disk and engine). Each is measured --repeat times,
alternating, and the best kept. Last it times a scan of a whole log with
ReadAll. Files go to a temporary directory (under --dir when given) that is
removed. -o json prints one object: events_per_sec, raw_events_per_sec and
ratio keyed by appender count, read_events_per_sec, and more.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if events <= 0 {
				return usageError("--events %d: want a positive number", events)
			}
			if duration <= 0 {
				return usageError("--duration %s: want a positive duration", duration)
			}
			if repeat <= 0 {
				return usageError("--repeat %d: want a positive count", repeat)
			}
			for _, n := range appenders {
				if n <= 0 {
					return usageError("--appenders %d: want positive counts", n)
				}
			}
			tmp, err := os.MkdirTemp(dir, "hodei-bench-store-")
			if err != nil {
				return fmt.Errorf("bench store: %w", err)
			}
			defer os.RemoveAll(tmp)
			var target bench.Target = &bench.BoltTarget{Dir: tmp}
			if pgDSN != "" {
				target = &bench.PostgresTarget{AdminDSN: pgDSN}
			}
			cfg := bench.StoreConfig{
				Target:      target,
				Appenders:   appenders,
				Events:      events,
				MaxDuration: duration,
				Repeat:      repeat,
			}
			if output == "text" {
				cfg.Progress = cmd.ErrOrStderr()
			}
			res, err := bench.Store(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return printStoreResult(cmd.OutOrStdout(), res, cfg)
		},
	}
	c.Flags().StringVar(&pgDSN, "postgres", "", "measure the PostgreSQL store instead: an admin DSN (a superuser; scratch databases hodei_bench_* are created and dropped); the raw limit is a COPY loop of the same rows into a table shaped like es_events, and raw_kv one into a plain key/value table")
	addOutputFlag(c, &output)
	c.Flags().StringVar(&dir, "dir", "", "parent directory for the temporary files (default: the system temp dir)")
	c.Flags().IntVar(&events, "events", bench.DefaultEvents, "most events appended at each appender count")
	c.Flags().DurationVar(&duration, "duration", bench.DefaultMaxDuration, "most time spent appending at each appender count")
	c.Flags().IntSliceVar(&appenders, "appenders", bench.DefaultAppenders, "appender counts to measure")
	c.Flags().IntVar(&repeat, "repeat", bench.DefaultRepeat, "measurements per appender count (store and raw loop alternating; the best of each is kept)")
	return c
}

func printStoreResult(w io.Writer, res bench.StoreResult, cfg bench.StoreConfig) error {
	fmt.Fprintf(w, "target %s, %d-byte events\n\n", res.Target, res.EventBytes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "appenders\tevents\tevents/s\tavg batch\traw records/s\tratio\tclose s\twith close/s\t")
	appenders := cfg.Appenders
	if len(appenders) == 0 {
		appenders = bench.DefaultAppenders
	}
	for _, n := range appenders {
		k := strconv.Itoa(n)
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.1f\t%.0f\t%.2f\t%.3f\t%.0f\t\n", n, res.Events[k], res.EventsPerSec[k], res.AvgBatch[k],
			res.RawEventsPerSec[k], res.Ratio[k], res.CloseSeconds[k], res.EventsPerSecWithClose[k])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(res.RawKVEventsPerSec) > 0 {
		fmt.Fprintln(w, "\nraw records/s: the store's rows into a table shaped like its own; against a plain key/value table:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "appenders\tkey/value records/s\tratio\t")
		for _, n := range appenders {
			k := strconv.Itoa(n)
			fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t\n", n, res.RawKVEventsPerSec[k], res.RatioKV[k])
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\nread scan: %.0f events/s (%d events)\n", res.ReadEventsPerSec, res.ReadEvents)
	return err
}
