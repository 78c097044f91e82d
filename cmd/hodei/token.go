package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/pki"
)

func init() {
	register("token", newTokenCreateCmd)
	register("token", newTokenListCmd)
	register("token", newTokenRevokeCmd)
}

// Token commands work on the data dir's token store directly (a running
// server sees changes at its next check): whoever can read the data dir
// already holds the CA key and the admin token, so this is the admin path.
func addDataFlag(c *cobra.Command, data *string) {
	c.Flags().StringVar(data, "data", "data", "data directory of the server (holds tokens.json and the CA)")
}

func newTokenCreateCmd() *cobra.Command {
	var (
		data, role, name string
		agent            bool
		ttl              time.Duration
		uses             int
	)
	c := &cobra.Command{
		Use:   "create (--agent | --role viewer|operator|admin)",
		Short: "Create a join token for agents or an API token with a role",
		Long: `Create a token and print it (the only time it is shown; only its hash is kept).

With --agent it is a join token "hodei1.<id>.<secret>.<ca-sha256>": it carries
the fingerprint of the server's CA, so an agent given only the token trusts
exactly this server. It expires after --ttl and admits --uses agents (0: any
number). With --role it is an API token for the CLI and the REST API
(HODEI_TOKEN): viewer reads, operator also submits, cancels and drains,
admin also manages secrets.`,
		Example: `  hodei token create --agent --ttl 1h --uses 3
  hodei token create --role viewer --name dashboards`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if agent == (role != "") {
				return usageError("give exactly one of --agent and --role")
			}
			if ttl < 0 || uses < 0 {
				return usageError("--ttl and --uses must not be negative")
			}
			store, err := auth.Open(data, nil)
			if err != nil {
				return err
			}
			if agent {
				b, err := pki.LoadOrCreate(data, pki.DefaultSANs(), time.Now())
				if err != nil {
					return err
				}
				jt, t, err := store.CreateJoin(b.Fingerprint(), name, ttl, uses)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), jt.String())
				fmt.Fprintf(cmd.ErrOrStderr(), "join token %s: %s, %s\n", t.ID, usesText(uses), expiryText(t.ExpiresAt))
				return nil
			}
			r, err := auth.ParseRole(role)
			if err != nil {
				return usageError("--role: %v", err)
			}
			tok, t, err := store.CreateAPI(r, name, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			fmt.Fprintf(cmd.ErrOrStderr(), "api token %s: role %s, %s\n", t.ID, r, expiryText(t.ExpiresAt))
			return nil
		},
	}
	addDataFlag(c, &data)
	c.Flags().BoolVar(&agent, "agent", false, "create a join token for agents")
	c.Flags().StringVar(&role, "role", "", "create an API token with this role: viewer, operator or admin")
	c.Flags().StringVar(&name, "name", "", "name recorded with the token (API tokens: the caller's name in events)")
	c.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime (0: never expires)")
	c.Flags().IntVar(&uses, "uses", 1, "agents a join token admits (0: any number)")
	_ = c.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"viewer", "operator", "admin"}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

func usesText(n int) string {
	if n == 0 {
		return "any number of agents"
	}
	return fmt.Sprintf("%d agent(s)", n)
}

func expiryText(t time.Time) string {
	if t.IsZero() {
		return "never expires"
	}
	return "expires " + t.Format(time.RFC3339)
}

func newTokenListCmd() *cobra.Command {
	var data string
	c := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := auth.Open(data, nil)
			if err != nil {
				return err
			}
			ts, err := store.List()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tROLE\tNAME\tCREATED\tEXPIRES\tUSED\tSTATE")
			now := time.Now()
			for _, t := range ts {
				state := "live"
				switch {
				case !t.RevokedAt.IsZero():
					state = "revoked"
				case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
					state = "expired"
				case t.MaxUses > 0 && t.Uses() >= t.MaxUses:
					state = "used up"
				}
				exp := "never"
				if !t.ExpiresAt.IsZero() {
					exp = t.ExpiresAt.Format(time.RFC3339)
				}
				used := "-"
				if t.Kind == auth.KindJoin {
					used = fmt.Sprintf("%d/%d", t.Uses(), t.MaxUses)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Kind, t.Role, t.Name,
					t.CreatedAt.Format(time.RFC3339), exp, used, state)
			}
			return tw.Flush()
		},
	}
	addDataFlag(c, &data)
	return c
}

func newTokenRevokeCmd() *cobra.Command {
	var data string
	c := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: it is refused from its next use",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := auth.Open(data, nil)
			if err != nil {
				return err
			}
			if err := store.Revoke(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return nil
		},
	}
	addDataFlag(c, &data)
	return c
}
