package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/replay"
)

func init() { register("replay", newReplayTimelineCmd) }

func newReplayTimelineCmd() *cobra.Command {
	var data, dsn, output, job, worker, instance string
	c := &cobra.Command{
		Use:   "timeline (--job ID | --worker ID | --instance ID)",
		Short: "Show every event of one job, worker or provisioned instance: time, actor, position and what happened",
		Long: `Show every event of one job's, worker's or provisioned instance's stream
(why a provider started a container or Pod, and why it ended), in order: its log
position and stream version, time, actor (who caused it), type and a one-line
summary. Events of types this binary does not know are shown with their raw
fields (their type is marked with "?"). -o json adds every envelope field and
the payload's fields.

The bbolt file is opened read-only: stop the server first, or use a copy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			var stream, what string
			given := 0
			for _, v := range []string{job, worker, instance} {
				if v != "" {
					given++
				}
			}
			switch {
			case given > 1:
				return usageError("--job, --worker and --instance: give one")
			case job != "":
				stream, what = domain.JobStream(job), "job "+job
			case worker != "":
				stream, what = domain.WorkerStream(worker), "worker "+worker
			case instance != "":
				stream, what = domain.InstanceStream(instance), "instance "+instance
			default:
				return usageError("--job, --worker or --instance is required")
			}
			store, err := openStore(cmd.Context(), data, dsn, true)
			if err != nil {
				return err
			}
			defer store.Close()
			entries, err := replay.Timeline(cmd.Context(), store, command.NewCodec(), stream)
			if err != nil {
				return err
			}
			if len(entries) == 0 {
				return &exitError{code: exitFailure, err: fmt.Errorf("timeline: %s has no events (stream %s is empty)", what, stream)}
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"stream": stream, "events": entries})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d events (stream %s)\n", what, len(entries), stream)
			return replay.WriteTimeline(cmd.OutOrStdout(), entries)
		},
	}
	c.Flags().StringVar(&job, "job", "", "job id")
	c.Flags().StringVar(&worker, "worker", "", "worker id")
	c.Flags().StringVar(&instance, "instance", "", "provisioned instance id (see instance ids in a job's or worker's timeline)")
	c.Flags().StringVar(&data, "data", "data", "data directory holding events.db")
	c.Flags().StringVar(&dsn, "postgres", "", "read the PostgreSQL event log at this DSN instead")
	addOutputFlag(c, &output)
	return c
}
