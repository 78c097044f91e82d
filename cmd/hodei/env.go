package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envName is the environment variable that sets flag name: HODEI_ and the
// flag's name in upper case with dashes as underscores (--join-token is
// HODEI_JOIN_TOKEN).
func envName(name string) string {
	return "HODEI_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyEnv sets every flag of c that is not on the command line from its
// HODEI_* environment variable. A flag given on the command line wins.
func applyEnv(c *cobra.Command) error {
	var err error
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if serr := f.Value.Set(v); serr != nil {
				err = usageError("%s=%q: %v", envName(f.Name), v, serr)
			}
		}
	})
	return err
}

// describeFlags lists every flag's effective value for the start-up log,
// with secret ones redacted.
func describeFlags(c *cobra.Command, secret ...string) []any {
	var out []any
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		v := f.Value.String()
		for _, s := range secret {
			if f.Name == s && v != "" {
				v = "[redacted]"
			}
		}
		out = append(out, f.Name, v)
	})
	return out
}

// redactDSN hides the password of a PostgreSQL DSN (URL or key=value form).
func redactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			userinfo := rest[:at]
			if c := strings.Index(userinfo, ":"); c >= 0 {
				return dsn[:i+3] + userinfo[:c] + ":[redacted]" + rest[at:]
			}
		}
		return dsn
	}
	var parts []string
	for _, p := range strings.Fields(dsn) {
		if strings.HasPrefix(p, "password=") {
			p = "password=[redacted]"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}
