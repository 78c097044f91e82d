package main

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/replay"
)

func init() { register("replay", newReplayAnchorCmd) }

func newReplayAnchorCmd() *cobra.Command {
	var data, dsn, out, output string
	c := &cobra.Command{
		Use:   "anchor --out FILE",
		Short: "Write a signed anchor of the log's head (position, hash, time) to a file",
		Long: `Sign the head of the event log (its last position and hash, and the time) with
the data dir's Ed25519 anchor key (DATA/anchor.key, created with mode 0600 on
first use; DATA/anchor.pub is its public half) and write it as a small JSON
file. Keep anchors, and a copy of anchor.pub, away from the data volume:
'hodei replay verify --anchor FILE' then proves that the log still holds the
anchored event, so a tail cut off or a history rewritten after the anchor is
found even when the chain itself was recomputed.

The server writes anchors itself with --anchor-dir. The bbolt file is opened
read-only: stop the server first, or anchor a copy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			if out == "" {
				return usageError("--out is required")
			}
			ctx := cmd.Context()
			store, err := openStore(ctx, data, dsn, true)
			if err != nil {
				return err
			}
			defer store.Close()
			key, err := replay.LoadOrCreateKey(data)
			if err != nil {
				return err
			}
			a, err := replay.NewAnchor(ctx, store, key, time.Now())
			if err != nil {
				return err
			}
			if err := replay.WriteAnchorFile(out, a); err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"file": out, "anchor": a,
					"public_key": fmt.Sprintf("%x", key.Public().(ed25519.PublicKey))})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "anchored position %d hash %s at %s, signed by %s, in %s\n",
				a.Position, a.Hash, a.Time.Format(replay.TimeFormat), a.KeyID, out)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "anchor file to write")
	c.Flags().StringVar(&data, "data", "data", "data directory holding events.db and anchor.key")
	c.Flags().StringVar(&dsn, "postgres", "", "anchor the PostgreSQL event log at this DSN (the key stays in --data)")
	addOutputFlag(c, &output)
	return c
}
