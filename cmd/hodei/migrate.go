package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/postgres"
	"github.com/hodei-jobs/hodei/migrate"
)

func init() { register("", newMigrateCmd) }

func newMigrateCmd() *cobra.Command {
	var from, to, output string
	var batch int
	c := &cobra.Command{
		Use:   "migrate --from DATA_DIR --to DSN",
		Short: "Copy the bbolt event log of a data directory into PostgreSQL, verified and resumable",
		Long: `Copy the event log in DATA_DIR/events.db into the PostgreSQL database at DSN,
event for event: positions, stream versions, ids, times and hashes are kept,
so both logs form the same hash chain. At the end both heads (position and
hash) are compared; the command exits 0 only when they are equal.

An interrupted migration (Ctrl-C, a lost connection) keeps what it copied:
run the same command again and it continues from the target's head. A target
whose log is not a prefix of the source (another history) is refused, naming
the first position at which they differ, and left untouched.

Stop the server first: the bbolt file is opened read-only, and the target must
not be written to while it is copied. On an empty database the schema is
applied first, which needs a role that may create roles and tables (see "Roles
and DSNs" in go doc ./eventstore/postgres). A progress bar is drawn on a
terminal.

Exit codes: 0 both logs end at the same head, 1 failure or refusal, 2 usage.`,
		Example: `  hodei migrate --from /var/lib/hodei --to 'postgres://hodei@db/hodei'
  hodei migrate --from data --to "$DSN" -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			switch {
			case from == "":
				return usageError("--from is required: the data directory holding %s", eventsFile)
			case to == "":
				return usageError("--to is required: the PostgreSQL DSN to copy into")
			case batch < 1 || batch > eventstore.MaxEventsPerWrite:
				return usageError("--batch %d: want 1 to %d events", batch, eventstore.MaxEventsPerWrite)
			}
			return runMigrate(cmd, from, to, batch, output)
		},
	}
	c.Flags().StringVar(&from, "from", "", "data directory holding the bbolt event log ("+eventsFile+")")
	c.Flags().StringVar(&to, "to", "", "PostgreSQL DSN of the target database")
	c.Flags().IntVar(&batch, "batch", migrate.DefaultBatchSize, "events per import transaction")
	addOutputFlag(c, &output)
	return c
}

func runMigrate(cmd *cobra.Command, from, to string, batch int, output string) error {
	ctx := cmd.Context()
	path := filepath.Join(from, eventsFile)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("open source: no event log at %s (is --from right?): %w", path, err)
	}
	src, err := openStore(ctx, from, "", true)
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return fmt.Errorf("open source: %w (a server still has it open: stop it first)", err)
		}
		return fmt.Errorf("open source: %w", err)
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, to, postgres.Options{})
	if err != nil {
		if errors.Is(err, postgres.ErrLockHeld) {
			return fmt.Errorf("open target %s: another process (a running server?) writes to this log; stop it, then migrate: %w",
				redactDSN(to), postgres.ErrLockHeld)
		}
		return fmt.Errorf("open target %s: %w", redactDSN(to), err)
	}
	defer dst.Close()

	bar := newProgress(cmd.ErrOrStderr(), "migrate", 0)
	drawn := false
	start := time.Now()
	res, err := migrate.Run(ctx, src, dst, migrate.Options{BatchSize: batch, Progress: func(p migrate.Progress) {
		bar.total = p.Source - p.Start
		if bar.total > 0 {
			drawn = true
			bar.update(p.Copied)
		}
	}})
	elapsed := time.Since(start)
	if drawn && err == nil {
		bar.finish()
	} else if drawn && bar.tty {
		fmt.Fprintln(cmd.ErrOrStderr())
	}
	rate := float64(res.Copied) / max(elapsed.Seconds(), 1e-9)

	if err != nil {
		var de *migrate.DivergedError
		switch {
		case errors.As(err, &de):
			err = fmt.Errorf("migrate: refused: %w (migrate into an empty database, or into the one this log was migrated to)", err)
		case ctx.Err() != nil:
			err = fmt.Errorf("migrate: interrupted after copying %d events; the target is at position %d: run the same command again to resume: %w",
				res.Copied, res.Head.Position, err)
		default:
			err = fmt.Errorf("migrate: %w (copied %d events this run; the target is at position %d: run again to resume)",
				err, res.Copied, res.Head.Position)
		}
		if output == "json" {
			out := map[string]any{"ok": false, "error": err.Error(), "copied": res.Copied, "resumed_from": res.Start,
				"target_position": res.Head.Position, "seconds": elapsed.Seconds()}
			if de != nil {
				out["diverged_at"] = de.Position
			}
			if jerr := writeJSON(cmd.OutOrStdout(), out); jerr != nil {
				return jerr
			}
		}
		return &exitError{code: exitFailure, err: err}
	}

	w := cmd.OutOrStdout()
	if output == "json" {
		return writeJSON(w, map[string]any{"ok": true, "copied": res.Copied, "resumed_from": res.Start,
			"batches": res.Batches, "head_position": res.Head.Position, "head_hash": res.Head.Hash.String(),
			"seconds": elapsed.Seconds(), "events_per_sec": rate})
	}
	switch {
	case res.Copied == 0:
		fmt.Fprintf(w, "already up to date: both logs end at position %d, hash %s\n", res.Head.Position, res.Head.Hash)
	default:
		if res.Start > 0 {
			fmt.Fprintf(w, "resumed after position %d: ", res.Start)
		}
		fmt.Fprintf(w, "copied %d events (positions %d-%d) in %s, %.0f events/s\n",
			res.Copied, res.Start+1, res.Head.Position, elapsed.Round(time.Millisecond), rate)
		fmt.Fprintf(w, "verified: both logs end at position %d, hash %s\n", res.Head.Position, res.Head.Hash)
	}
	return nil
}
