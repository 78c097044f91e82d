package main

import (
	"crypto/ed25519"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/replay"
)

func init() { register("replay", newReplayVerifyCmd) }

func newReplayVerifyCmd() *cobra.Command {
	var data, dsn, output, anchorFile, pubFile string
	c := &cobra.Command{
		Use:   "verify [--anchor FILE]",
		Short: "Check the event log: dense positions, contiguous stream versions, the hash chain, the indexes",
		Long: `Check the whole event log: positions dense from 1, stream versions contiguous,
every hash chained to its predecessor, and the stream index and heads in
agreement with the log. Prints a one-line summary and exits 0 when the log is
intact; prints the first bad position and exits 1 otherwise.

With --anchor FILE (written by 'hodei replay anchor' or the server's
--anchor-dir), also check the anchor: its signature (with --anchor-pubkey, or
the data dir's anchor.pub or anchor.key), then that the log still holds the
anchored position with the anchored hash. A log whose tail was cut off (it ends
before the anchor) or that was rewritten at or before the anchor (another hash
there, even with a recomputed chain) exits 1.

The bbolt file is opened read-only: stop the server first, or verify a copy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			var anchor *replay.Anchor
			var pub ed25519.PublicKey
			if anchorFile != "" {
				a, err := replay.ReadAnchorFile(anchorFile)
				if err != nil {
					return err
				}
				if pubFile != "" {
					pub, err = replay.LoadPublicKey(pubFile)
				} else {
					pub, err = replay.DataDirPublicKey(data)
				}
				if err != nil {
					return err
				}
				anchor = &a
			}
			store, err := openStore(cmd.Context(), data, dsn, true)
			if err != nil {
				return err
			}
			defer store.Close()
			head, err := store.Head(cmd.Context())
			if err != nil {
				return err
			}
			batchGC()
			bar := newProgress(cmd.ErrOrStderr(), "verify", head.Position)
			ahead, stop := replay.ReadAhead(cmd.Context(), store)
			rep, err := replay.Verify(cmd.Context(), ahead, bar.update)
			stop()
			bar.finish()
			if err != nil {
				return err
			}
			// The anchor: signature first (an anchor we cannot trust proves
			// nothing), then whether the log still holds it.
			var sigErr error
			var check *replay.AnchorCheck
			if anchor != nil {
				if sigErr = anchor.Verify(pub); sigErr == nil {
					if check, err = replay.CheckAnchor(cmd.Context(), store, *anchor); err != nil {
						return err
					}
				}
			}
			if output == "json" {
				out := map[string]any{"ok": rep.OK(), "events": rep.Events, "streams": rep.Streams,
					"head_position": rep.Head.Position, "head_hash": rep.Head.Hash.String()}
				if !rep.OK() {
					out["bad_position"] = rep.Problem.Position
					out["problem"] = rep.Problem.Reason
				}
				if anchor != nil {
					a := map[string]any{"file": anchorFile, "position": anchor.Position, "hash": anchor.Hash.String(),
						"time": anchor.Time.Format(replay.NanoTimeFormat), "key_id": anchor.KeyID, "signature_ok": sigErr == nil}
					if sigErr != nil {
						a["status"], a["problem"] = "bad signature", sigErr.Error()
					} else {
						a["status"] = check.Status
						if !check.OK() {
							a["problem"] = check.Problem
						}
					}
					out["anchor"] = a
					out["ok"] = rep.OK() && sigErr == nil && check.OK()
				}
				if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			}
			if !rep.OK() {
				return &exitError{code: exitFailure, err: fmt.Errorf("log is damaged at position %d: %s",
					rep.Problem.Position, rep.Problem.Reason)}
			}
			if sigErr != nil {
				return &exitError{code: exitFailure, err: fmt.Errorf("anchor %s: %w", anchorFile, sigErr)}
			}
			if check != nil && !check.OK() {
				return &exitError{code: exitFailure, err: fmt.Errorf("anchor %s: log %s: %s", anchorFile, check.Status, check.Problem)}
			}
			if output == "text" {
				fmt.Fprintf(cmd.OutOrStdout(), "ok: %d events in %d streams, head %d %s\n",
					rep.Events, rep.Streams, rep.Head.Position, rep.Head.Hash)
				if check != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "anchor ok: position %d hash %s (signed by %s at %s) is still in the log\n",
						anchor.Position, anchor.Hash, anchor.KeyID, anchor.Time.Format(replay.TimeFormat))
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&data, "data", "data", "data directory holding events.db")
	c.Flags().StringVar(&dsn, "postgres", "", "verify the PostgreSQL event log at this DSN instead")
	c.Flags().StringVar(&anchorFile, "anchor", "", "also check the log against this signed anchor file")
	c.Flags().StringVar(&pubFile, "anchor-pubkey", "", "public key that signed the anchor (default DATA/anchor.pub, else DATA/anchor.key)")
	addOutputFlag(c, &output)
	return c
}
