package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/replay"
)

func init() {
	register("replay", newReplayExportCmd)
	register("replay", newReplayImportCmd)
}

func newReplayExportCmd() *cobra.Command {
	var data, dsn, out string
	var from, to uint64
	c := &cobra.Command{
		Use:   "export [--from P] [--to P] [--out FILE]",
		Short: "Write the event log as JSON lines, one decoded event a line",
		Long: `Write events of the log as JSON lines, one event a line, in position order:
every envelope field (position, stream, version, type, schema version, event id,
time in RFC 3339 with nanoseconds, actor, correlation and causation ids, prev
hash, hash), the payload's fields as a JSON object, and the stored payload
bytes (payload_msgpack, base64) so that 'hodei replay import' can rebuild the
log with identical hashes on any adapter.

The chain is checked as the events are written: a damaged log is not exported
(the error names the first bad position). Writes to stdout unless --out is
given. The bbolt file is opened read-only: stop the server first, or use a copy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if from > 0 && to > 0 && from > to {
				return usageError("--from %d is after --to %d", from, to)
			}
			batchGC()
			ctx := cmd.Context()
			store, err := openStore(ctx, data, dsn, true)
			if err != nil {
				return err
			}
			defer store.Close()
			w := cmd.OutOrStdout()
			var f *os.File
			if out != "" && out != "-" {
				if f, err = os.Create(out); err != nil {
					return fmt.Errorf("export: %w", err)
				}
				defer f.Close()
				w = f
			}
			bar := newProgress(cmd.ErrOrStderr(), "export", 0)
			rep, err := replay.Export(ctx, store, w, replay.ExportOptions{From: from, To: to,
				Progress: func(done, total uint64) { bar.total = total; bar.update(done) }})
			bar.finish()
			if err != nil {
				if f != nil {
					_ = os.Remove(out) // no partial exports
				}
				return err
			}
			if f != nil {
				if err := f.Sync(); err != nil {
					return fmt.Errorf("export: %w", err)
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("export: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "exported %d events (positions %d to %d, last hash %s) to %s\n",
					rep.Events, rep.First, rep.Last, rep.LastHash, out)
			}
			return nil
		},
	}
	c.Flags().Uint64Var(&from, "from", 1, "first position to export")
	c.Flags().Uint64Var(&to, "to", 0, "last position to export (default the head)")
	c.Flags().StringVar(&out, "out", "", "write to this file instead of stdout")
	c.Flags().StringVar(&data, "data", "data", "data directory holding events.db")
	c.Flags().StringVar(&dsn, "postgres", "", "read the PostgreSQL event log at this DSN instead")
	return c
}

func newReplayImportCmd() *cobra.Command {
	var data, dsn, output string
	c := &cobra.Command{
		Use:   "import FILE (--data DIR | --postgres DSN)",
		Short: "Rebuild an event log from an export, into an empty store, with identical hashes",
		Long: `Append the events of an export ('hodei replay export' from position 1) to an
empty event log: the bbolt file in --data (created), or the PostgreSQL log at
--postgres. The whole file is checked first and nothing is written if any line
is wrong: positions dense from 1, versions contiguous, ids unique, each
payload's JSON equal to its bytes, and every hash recomputed and chained. Then
the events are appended in order with their original ids, times, actors,
correlation and causation ids and payload bytes, and every stored envelope is
read back and compared with the export: the resulting log, hashes included, is
the exported one, or the command fails naming the first position that differs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			batchGC()
			ctx := cmd.Context()
			in, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			defer in.Close()
			st, err := in.Stat()
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			created := false
			if dsn == "" {
				_, err := os.Stat(filepath.Join(data, eventsFile))
				created = errors.Is(err, fs.ErrNotExist)
			}
			store, err := openStore(ctx, data, dsn, false)
			if err != nil {
				return err
			}
			check := newProgress(cmd.ErrOrStderr(), "check ", uint64(st.Size()))
			var load *progress
			rep, err := replay.Import(ctx, store, in, replay.ImportOptions{
				Progress: func(phase string, done, total uint64) {
					if phase == "check" {
						check.update(done)
						return
					}
					if load == nil {
						check.finish()
						load = newProgress(cmd.ErrOrStderr(), "import", total)
					}
					load.update(done)
				}})
			if load != nil {
				load.finish()
			}
			cerr := store.Close()
			if err != nil {
				if created {
					_ = os.Remove(filepath.Join(data, eventsFile)) // leave no half-imported log behind
				} else if rep.Events > 0 {
					err = fmt.Errorf("%w (the store now holds %d imported events: discard it)", err, rep.Events)
				}
				return err
			}
			if cerr != nil {
				return cerr
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"ok": true, "events": rep.Events,
					"head_position": rep.Head.Position, "head_hash": rep.Head.Hash.String()})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d events; head %d %s, identical to the export\n",
				rep.Events, rep.Head.Position, rep.Head.Hash)
			return nil
		},
	}
	c.Flags().StringVar(&data, "data", "data", "data directory for the new events.db")
	c.Flags().StringVar(&dsn, "postgres", "", "import into the (empty) PostgreSQL event log at this DSN instead")
	addOutputFlag(c, &output)
	return c
}
