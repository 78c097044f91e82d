// Command hodei is the Hodei Jobs control plane: the server, the CLI and the
// operator tools (replay, projections, migrate, bench) as subcommands of one
// binary. This package only wires things together; the logic lives in the
// packages it imports.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes that scripts can rely on.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and found a problem, or failed
	exitUsage   = 2 // the command line is wrong
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks an error in the command line (exit code 2).
func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// Main runs hodei with args and returns the process exit code. Tests call it
// directly with their own streams.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "hodei: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") ||
		strings.Contains(err.Error(), "flag needs an argument") || strings.Contains(err.Error(), "invalid argument") ||
		strings.Contains(err.Error(), "accepts ") || strings.Contains(err.Error(), "required flag") {
		return exitUsage
	}
	return exitFailure
}

// groups are the parent commands subcommand files attach to.
var groups = map[string]string{
	"bench":       "Measure Hodei on this machine (every benchmark takes -o json)",
	"replay":      "Audit the event log: verify the chain, timelines, past state, export",
	"projections": "Manage read models built from the event log",
	"job":         "Submit, list, follow and cancel jobs",
	"worker":      "List and drain workers",
	"secret":      "Manage secrets (stored encrypted, masked in job output)",
	"token":       "Create tokens for agents and API callers",
}

type registration struct {
	parent string
	build  func() *cobra.Command
}

var registrations []registration

// register adds a subcommand under parent ("" for the root, or a key of
// groups). Each subcommand's file calls it from init.
func register(parent string, build func() *cobra.Command) {
	registrations = append(registrations, registration{parent, build})
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "hodei",
		Short:         "Hodei Jobs: a job orchestration server on an auditable event log",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	parents := map[string]*cobra.Command{"": root}
	names := make([]string, 0, len(groups))
	for n := range groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := &cobra.Command{Use: n, Short: groups[n]}
		parents[n] = c
	}
	used := map[string]bool{}
	for _, r := range registrations {
		p, ok := parents[r.parent]
		if !ok {
			panic("hodei: unknown command group " + r.parent)
		}
		p.AddCommand(r.build())
		used[r.parent] = true
	}
	for _, n := range names {
		if used[n] {
			root.AddCommand(parents[n])
		}
	}
	return root
}
