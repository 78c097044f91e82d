package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/bench"
)

func init() { register("bench", newBenchColdstartCmd) }

func newBenchColdstartCmd() *cobra.Command {
	var output, dir string
	var events, starts int
	c := &cobra.Command{
		Use:   "coldstart",
		Short: "Time from process start to a ready server with N events already in the log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if events < 1 || events > 100_000_000 {
				return usageError("--events %d: want 1..100000000", events)
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			bar := newProgress(cmd.ErrOrStderr(), "writing log", uint64(events))
			res, err := bench.ColdStart(cmd.Context(), bench.ColdStartConfig{Binary: self, Dir: dir, Events: events, Starts: starts,
				Progress: func(done, _ uint64) { bar.update(done) }})
			bar.finish()
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d events: ready in %.1f ms (median of %d, slowest %.1f ms); first start without snapshots %.1f ms\n",
				res.Events, res.ReadyMS, starts, res.ReadyMaxMS, res.FirstStartMS)
			return nil
		},
	}
	c.Flags().IntVar(&events, "events", 1_000_000, "events in the log")
	c.Flags().IntVar(&starts, "starts", 5, "timed starts with snapshots")
	c.Flags().StringVar(&dir, "dir", "", "where to build the data dir (default a temp dir, removed after)")
	addOutputFlag(c, &output)
	return c
}
