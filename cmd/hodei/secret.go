package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/secrets"
)

func init() {
	register("secret", newSecretSetCmd)
	register("secret", newSecretListCmd)
	register("secret", newSecretRmCmd)
}

func newSecretSetCmd() *cobra.Command {
	var (
		f        clientFlags
		fromFile string
	)
	c := &cobra.Command{
		Use:   "set NAME",
		Short: "Create or replace a secret; the value is read from stdin (or --from-file)",
		Long: `Create or replace a secret. The value is read from stdin, or from --from-file,
never from the command line (where it would land in shell history). One
trailing newline is dropped. It must be at least 6 bytes long, so the agent
can mask it in job output. Jobs use it with --secret ENV=NAME.`,
		Example: `  printf '%s' "$DB_PASSWORD" | hodei secret set prod/db-password
  hodei secret set ci/deploy-key --from-file ~/.ssh/deploy_key`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSecrets(&f),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := secrets.ValidateName(args[0]); err != nil {
				return usageError("secret %v", err)
			}
			in := cmd.InOrStdin()
			what := "stdin"
			if fromFile != "" {
				fh, err := os.Open(fromFile)
				if err != nil {
					return usageError("--from-file: %v", err)
				}
				defer fh.Close()
				in, what = fh, fromFile
			} else if isTerminal(in) {
				fmt.Fprintln(cmd.ErrOrStderr(), "hodei: type the value, then Enter and Ctrl-D (it is echoed; prefer a pipe or --from-file)")
			}
			b, err := io.ReadAll(io.LimitReader(in, secrets.MaxValueBytes+3))
			if err != nil {
				return fmt.Errorf("read the value from %s: %w", what, err)
			}
			value := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			if err := secrets.ValidateValue(args[0], value); err != nil {
				return usageError("the value from %s: %v", what, err)
			}
			cl, err := dial(cmd, &f)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := cl.call(cmd.Context())
			defer cancel()
			s, err := cl.SetSecret(ctx, &jobpb.SetSecretRequest{Name: args[0], Value: value})
			if err != nil {
				return cl.callError("set secret", err)
			}
			if f.output == "json" {
				return writeJSON(cmd.OutOrStdout(), api.SecretFromPB(s))
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "secret %s set\n", s.GetName())
			return err
		},
	}
	c.Flags().StringVar(&fromFile, "from-file", "", "read the value from this file")
	addClientFlags(c, &f)
	return c
}

func newSecretListCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List secret names (values are never shown)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := dial(cmd, &f)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := cl.call(cmd.Context())
			defer cancel()
			resp, err := cl.ListSecrets(ctx, &jobpb.ListSecretsRequest{})
			if err != nil {
				return cl.callError("list secrets", err)
			}
			if f.output == "json" {
				out := struct {
					Secrets []api.Secret `json:"secrets"`
				}{Secrets: []api.Secret{}}
				for _, s := range resp.GetSecrets() {
					out.Secrets = append(out.Secrets, api.SecretFromPB(s))
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tCREATED\tUPDATED")
			for _, s := range resp.GetSecrets() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.GetName(), s.GetCreatedAt().AsTime().Local().Format("2006-01-02 15:04"),
					s.GetUpdatedAt().AsTime().Local().Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		},
	}
	addClientFlags(c, &f)
	return c
}

func newSecretRmCmd() *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:               "rm NAME",
		Aliases:           []string{"delete"},
		Short:             "Delete a secret (jobs that name it fail to start)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSecrets(&f),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := dial(cmd, &f)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := cl.call(cmd.Context())
			defer cancel()
			if _, err := cl.DeleteSecret(ctx, &jobpb.DeleteSecretRequest{Name: args[0]}); err != nil {
				return cl.callError("delete secret", err)
			}
			if f.output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"deleted": args[0]})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "secret %s deleted\n", args[0])
			return err
		},
	}
	addClientFlags(c, &f)
	return c
}
