package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hodei-jobs/hodei/agent/agentbench"
	"github.com/hodei-jobs/hodei/bench"
)

func init() { register("bench", newBenchLogsCmd) }

// benchAgentName is the agent `hodei bench logs` starts.
const benchAgentName = "bench"

func newBenchLogsCmd() *cobra.Command {
	var (
		output, agentBin, store, agentArgs string
		samples, flooders                  int
		interval, timeout                  time.Duration
	)
	c := &cobra.Command{
		Use:   "logs",
		Short: "Latency from a write in a job's PTY to a server-side log subscriber, idle and under flood",
		Long: `Measure how fast job output reaches a viewer on the server.

It runs a real server in this process (bbolt event store and log store in a
temporary directory, loopback port 0; --store memory for an in-memory event
log) and one hodei-agent process. A probe job runs ` + "`cat FIFO`" + `; the bench
writes a unique marker line into the FIFO and times until the server's log
follower (what a viewer of the job's log reads) wakes with it. --samples
probes while idle give p50_ms and p99_ms; then --flooders jobs write output
as fast as they can (` + "`yes`" + `) while --samples more probes give flood_p50_ms
and flood_p99_ms, and the flood's stored throughput gives flood_mb_per_sec.
Everything runs on one host (one clock).

The agent is --agent-binary: by default hodei-agent next to this executable,
else on PATH (` + "`make build`" + ` puts both in bin/).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if samples < 1 || samples > 100_000 {
				return usageError("--samples %d: want 1..100000", samples)
			}
			if flooders < 0 || flooders > 64 {
				return usageError("--flooders %d: want 0..64", flooders)
			}
			if interval < 0 || interval > time.Second {
				return usageError("--interval %s: want 0..1s", interval)
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
			res, err := runBenchLogs(ctx, bin, store, strings.Fields(agentArgs), agentbench.LogLatencyOptions{
				Agent: benchAgentName, Samples: samples, Flooders: flooders, Interval: interval})
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "PTY write to server subscriber, idle: p50 %.2f ms, p99 %.2f ms (%d probes)\n", res.P50Ms, res.P99Ms, res.Samples)
			if res.Flooders > 0 {
				fmt.Fprintf(w, "with %d jobs flooding output: p50 %.2f ms, p99 %.2f ms; flood stored at %.1f MB/s\n",
					res.Flooders, res.FloodP50Ms, res.FloodP99Ms, res.FloodMBPerSec)
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&agentBin, "agent-binary", "", "hodei-agent to run (default: next to hodei, else on PATH)")
	fl.StringVar(&agentArgs, "agent-args", "", `extra hodei-agent flags, space-separated (e.g. "-job-nice 10")`)
	fl.StringVar(&store, "store", "bolt", "event store of the bench server: bolt (as hodei server) or memory")
	fl.IntVar(&samples, "samples", 200, "probes per phase")
	fl.IntVar(&flooders, "flooders", 4, "jobs flooding output in the second phase (0: skip it)")
	fl.DurationVar(&interval, "interval", 2*time.Millisecond, "pause between probes")
	fl.DurationVar(&timeout, "timeout", 5*time.Minute, "time limit of the whole bench")
	addOutputFlag(c, &output)
	return c
}

// runBenchLogs starts the bench server and one agent process and runs
// agentbench.LogLatency. The agent is stopped (drained) before the server.
func runBenchLogs(ctx context.Context, bin, store string, extra []string, opts agentbench.LogLatencyOptions) (res agentbench.LogLatencyResult, err error) {
	if opts.Flooders == 0 {
		opts.Flooders = -1 // agentbench: negative skips the flood phase
	}
	srv, err := bench.StartAgentServer(ctx, bench.AgentServerConfig{Store: store})
	if err != nil {
		return res, err
	}
	benchAgentPlaintext()
	defer func() { err = errors.Join(err, srv.Close()) }()
	args := append([]string{"-slots", strconv.Itoa(max(opts.Flooders, 0) + 2),
		"-labels", bench.AgentLabel + "=" + opts.Agent}, extra...)
	stop, err := agentbench.AgentProcess(bin, srv.Addr(), args...)(ctx, opts.Agent)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	res, err = agentbench.LogLatency(ctx, srv, opts)
	return res, err
}

// findAgentBinary returns the hodei-agent to run: flag when given, else
// hodei-agent in this executable's directory, else on PATH.
func findAgentBinary(flag string) (string, error) {
	if flag != "" {
		if _, err := os.Stat(flag); err != nil {
			return "", usageError("--agent-binary: %v", err)
		}
		return flag, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "hodei-agent")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("hodei-agent"); err == nil {
		return p, nil
	}
	return "", errors.New("no hodei-agent binary next to hodei or on PATH: run `make build` (it puts both in bin/) or pass --agent-binary")
}

// benchAgentPlaintext makes the agent processes the benches start dial
// without TLS: the bench server serves plaintext on loopback (no CA, no join
// tokens), so the figures leave out the TLS handshake. The agent reads
// HODEI_INSECURE_PLAINTEXT from the environment agentbench.AgentProcess
// passes on; a setting already in the environment wins.
func benchAgentPlaintext() {
	if _, ok := os.LookupEnv("HODEI_INSECURE_PLAINTEXT"); !ok {
		_ = os.Setenv("HODEI_INSECURE_PLAINTEXT", "true")
	}
}
