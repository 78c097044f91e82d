package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/projections"
)

func init() { register("projections", newProjectionsRebuildCmd) }

func newProjectionsRebuildCmd() *cobra.Command {
	var data, dsn, output string
	var verify bool
	c := &cobra.Command{
		Use:   "rebuild",
		Short: "Rebuild every read model from position 1 and rewrite its snapshot",
		Long: `Rebuild every read model (jobs, workers) from position 1 of the event log and
write fresh snapshots, so the next server start uses them.

With --verify, first compare: each projection is rebuilt up to the position of
its current snapshot (the live state the server last saved) and the two state
hashes must be equal; a difference exits 1 and leaves the snapshots alone.

Run it with the server stopped (the bbolt file is opened read-only).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			ctx := cmd.Context()
			store, err := openStore(ctx, data, dsn, true)
			if err != nil {
				return err
			}
			defer store.Close()
			head, err := store.Head(ctx)
			if err != nil {
				return err
			}
			snapDir := filepath.Join(data, "snapshots")
			fresh := []projections.Projection{projections.NewJobs(), projections.NewWorkers()}
			live := []projections.Projection{projections.NewJobs(), projections.NewWorkers()}
			bar := newProgress(cmd.ErrOrStderr(), "rebuild", head.Position)
			r, err := projections.NewRunner(store, command.NewCodec(), projections.RunnerOptions{Progress: bar.update}, fresh...)
			if err != nil {
				return err
			}
			if err := r.Open(ctx); err != nil {
				return err
			}
			type result struct {
				Name     string `json:"name"`
				Position uint64 `json:"position"`
				Verified *bool  `json:"verified,omitempty"`
				Hash     string `json:"state_hash"`
			}
			var results []result
			if verify {
				// Compare at each snapshot's position, in position order.
				for i, p := range live {
					pos, _, err := projections.LoadSnapshot(snapDir, p)
					if err != nil {
						return fmt.Errorf("verify %s: no usable snapshot in %s: %w", p.Name(), snapDir, err)
					}
					if pos < r.Position() {
						return fmt.Errorf("verify %s: snapshots are at different positions; rebuild without --verify first", p.Name())
					}
					if err := r.CatchUpTo(ctx, pos); err != nil {
						return err
					}
					want, err := projections.StateHash(p)
					if err != nil {
						return err
					}
					got, err := projections.StateHash(fresh[i])
					if err != nil {
						return err
					}
					ok := got == want
					results = append(results, result{Name: p.Name(), Position: pos, Verified: &ok, Hash: fmt.Sprintf("%x", got)})
					if !ok {
						bar.finish()
						if output == "json" {
							_ = writeJSON(cmd.OutOrStdout(), map[string]any{"ok": false, "projections": results})
						}
						return &exitError{code: exitFailure, err: fmt.Errorf(
							"projection %s: rebuilt state at position %d hashes %x, the live snapshot %x", p.Name(), pos, got, want)}
					}
				}
			}
			if err := r.CatchUpTo(ctx, head.Position); err != nil {
				return err
			}
			bar.finish()
			// Write the rebuilt state as the new snapshots.
			w, err := projections.NewRunner(store, command.NewCodec(), projections.RunnerOptions{SnapshotDir: snapDir}, fresh...)
			if err != nil {
				return err
			}
			if err := w.Adopt(head.Position); err != nil {
				return err
			}
			if err := w.Snapshot(); err != nil {
				return err
			}
			if !verify {
				for _, p := range fresh {
					h, _ := projections.StateHash(p)
					results = append(results, result{Name: p.Name(), Position: head.Position, Hash: fmt.Sprintf("%x", h)})
				}
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"ok": true, "position": head.Position, "projections": results})
			}
			for _, res := range results {
				v := ""
				if res.Verified != nil {
					v = fmt.Sprintf(", equal to the live snapshot at position %d", res.Position)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: state hash %s%s\n", res.Name, res.Hash[:16], v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rebuilt %d events; snapshots written to %s\n", head.Position, snapDir)
			return nil
		},
	}
	c.Flags().StringVar(&data, "data", "data", "data directory")
	c.Flags().StringVar(&dsn, "postgres", "", "read the PostgreSQL event log at this DSN instead")
	c.Flags().BoolVar(&verify, "verify", false, "compare with the live snapshots before replacing them")
	addOutputFlag(c, &output)
	return c
}
