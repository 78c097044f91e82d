package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/replay"
)

func init() { register("replay", newReplayVerifyCmd) }

func newReplayVerifyCmd() *cobra.Command {
	var data, dsn, output string
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check the event log: dense positions, contiguous stream versions, the hash chain, the indexes",
		Long: `Check the whole event log: positions dense from 1, stream versions contiguous,
every hash chained to its predecessor, and the stream index and heads in
agreement with the log. Prints a one-line summary and exits 0 when the log is
intact; prints the first bad position and exits 1 otherwise.

The bbolt file is opened read-only: stop the server first, or verify a copy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			store, err := openStore(cmd.Context(), data, dsn, true)
			if err != nil {
				return err
			}
			defer store.Close()
			rep, err := replay.Verify(cmd.Context(), store, nil)
			if err != nil {
				return err
			}
			if output == "json" {
				out := map[string]any{"ok": rep.OK(), "events": rep.Events, "streams": rep.Streams,
					"head_position": rep.Head.Position, "head_hash": rep.Head.Hash.String()}
				if !rep.OK() {
					out["bad_position"] = rep.Problem.Position
					out["problem"] = rep.Problem.Reason
				}
				if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			}
			if !rep.OK() {
				return &exitError{code: exitFailure, err: fmt.Errorf("log is damaged at position %d: %s",
					rep.Problem.Position, rep.Problem.Reason)}
			}
			if output == "text" {
				fmt.Fprintf(cmd.OutOrStdout(), "ok: %d events in %d streams, head %d %s\n",
					rep.Events, rep.Streams, rep.Head.Position, rep.Head.Hash)
			}
			return nil
		},
	}
	c.Flags().StringVar(&data, "data", "data", "data directory holding events.db")
	c.Flags().StringVar(&dsn, "postgres", "", "verify the PostgreSQL event log at this DSN instead")
	addOutputFlag(c, &output)
	return c
}
