package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/agent/agentbench"
	"github.com/hodei-jobs/hodei/bench"
)

func init() { register("bench", newBenchConnectCmd) }

func newBenchConnectCmd() *cobra.Command {
	var (
		output, agentBin, store, agentArgs string
		runs                               int
		timeout                            time.Duration
	)
	c := &cobra.Command{
		Use:   "connect",
		Short: "Time from starting a hodei-agent process to the server having registered it",
		Long: `Measure how fast a new agent joins.

It runs a real server in this process (bbolt event store in a temporary
directory, loopback port 0; --store memory for an in-memory event log)
and starts --runs hodei-agent processes one after another, each with a new
name. Each is timed from starting the process to the server having
registered it (its worker.registered is in the event log and the core holds
its stream, so a job would be sent to it); then it is stopped (drained) and
the next starts. -o json prints p50_ms, p99_ms and runs.

The agent is --agent-binary: by default hodei-agent next to this executable,
else on PATH (` + "`make build`" + ` puts both in bin/).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if runs < 1 || runs > 10_000 {
				return usageError("--runs %d: want 1..10000", runs)
			}
			if timeout <= 0 {
				return usageError("--timeout %s: want a positive duration", timeout)
			}
			bin, err := findAgentBinary(agentBin)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := runBenchConnect(ctx, bin, store, strings.Fields(agentArgs), runs)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "agent process start to registered: p50 %.1f ms, p99 %.1f ms (%d runs)\n",
				res.P50Ms, res.P99Ms, res.Runs)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&agentBin, "agent-binary", "", "hodei-agent to run (default: next to hodei, else on PATH)")
	fl.StringVar(&agentArgs, "agent-args", "", "extra hodei-agent flags, space-separated")
	fl.StringVar(&store, "store", "bolt", "event store of the bench server: bolt (as hodei server) or memory")
	fl.IntVar(&runs, "runs", 20, "agent processes to start, one after another")
	fl.DurationVar(&timeout, "timeout", 2*time.Minute, "time limit of the whole bench")
	addOutputFlag(c, &output)
	return c
}

// runBenchConnect starts the bench server and runs agentbench.ConnectLatency
// with agent processes.
func runBenchConnect(ctx context.Context, bin, store string, extra []string, runs int) (res agentbench.ConnectResult, err error) {
	srv, err := bench.StartAgentServer(ctx, bench.AgentServerConfig{Store: store})
	if err != nil {
		return res, err
	}
	benchAgentPlaintext()
	defer func() { err = errors.Join(err, srv.Close()) }()
	return agentbench.ConnectLatency(ctx, srv, agentbench.ConnectOptions{Runs: runs,
		Start: agentbench.AgentProcess(bin, srv.Addr(), extra...)})
}
