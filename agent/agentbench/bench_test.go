package agentbench_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/agent/agentbench"
	"github.com/hodei-jobs/hodei/agent/agenttest"
)

// setup runs a fake server and one in-process agent named "bench".
func setup(tb testing.TB) agentbench.Server {
	tb.Helper()
	fs := agenttest.New(agenttest.Options{HeartbeatInterval: time.Second, MaxStoredBytes: 1 << 20})
	if err := fs.Start("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(fs.Stop)
	srv := agentbench.Fake(fs)
	start := agentbench.InProcessAgent(srv.Addr(), agent.Config{
		WorkDir: tb.TempDir(),
		Slots:   8,
		JobNice: niceFromEnv(),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	stop, err := start(context.Background(), "bench")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := stop(); err != nil {
			tb.Errorf("stop agent: %v", err)
		}
	})
	return srv
}

func TestLogLatencyRuns(t *testing.T) {
	srv := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := agentbench.LogLatency(ctx, srv, agentbench.LogLatencyOptions{Agent: "bench", Samples: 20, Flooders: 2, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("LogLatency() = %v", err)
	}
	if res.Samples != 20 || res.P50Ms <= 0 || res.P99Ms < res.P50Ms || res.FloodP50Ms <= 0 || res.FloodMBPerSec <= 0 {
		t.Fatalf("LogLatency() = %+v", res)
	}
	t.Logf("%+v", res)
}

func TestConnectLatencyRuns(t *testing.T) {
	fs := agenttest.New(agenttest.Options{})
	if err := fs.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer fs.Stop()
	srv := agentbench.Fake(fs)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := agentbench.ConnectLatency(ctx, srv, agentbench.ConnectOptions{Runs: 3,
		Start: agentbench.InProcessAgent(srv.Addr(), agent.Config{WorkDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})})
	if err != nil || res.Runs != 3 || res.P50Ms <= 0 {
		t.Fatalf("ConnectLatency() = %+v, %v", res, err)
	}
}

// BenchmarkLogLatency reports PTY-write -> subscriber latency against the
// fake server with an in-process agent (one full LogLatency run per b.N).
func BenchmarkLogLatency(b *testing.B) {
	srv := setup(b)
	var res agentbench.LogLatencyResult
	for b.Loop() {
		var err error
		res, err = agentbench.LogLatency(context.Background(), srv, agentbench.LogLatencyOptions{Agent: "bench", Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(res.P50Ms, "p50_ms")
	b.ReportMetric(res.P99Ms, "p99_ms")
	b.ReportMetric(res.FloodP50Ms, "flood_p50_ms")
	b.ReportMetric(res.FloodP99Ms, "flood_p99_ms")
	b.ReportMetric(res.FloodMBPerSec, "flood_MB/s")
}

// agentBinary returns $HODEI_AGENT_BIN (a built hodei-agent) or skips.
func agentBinary(b *testing.B) string {
	bin := os.Getenv("HODEI_AGENT_BIN")
	if bin == "" {
		b.Skip("set HODEI_AGENT_BIN to a built hodei-agent to run the agent as a process")
	}
	return bin
}

// BenchmarkLogLatencyProcess is BenchmarkLogLatency with the agent running as
// its own process ($HODEI_AGENT_BIN), as in production.
func BenchmarkLogLatencyProcess(b *testing.B) {
	bin := agentBinary(b)
	fs := agenttest.New(agenttest.Options{HeartbeatInterval: time.Second, MaxStoredBytes: 1 << 20})
	if err := fs.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer fs.Stop()
	srv := agentbench.Fake(fs)
	args := append([]string{"-slots", "8"}, strings.Fields(os.Getenv("HODEI_AGENT_ARGS"))...)
	stop, err := agentbench.AgentProcess(bin, srv.Addr(), args...)(context.Background(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			b.Error(err)
		}
	}()
	var res agentbench.LogLatencyResult
	for b.Loop() {
		res, err = agentbench.LogLatency(context.Background(), srv, agentbench.LogLatencyOptions{Agent: "bench", Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(res.P50Ms, "p50_ms")
	b.ReportMetric(res.P99Ms, "p99_ms")
	b.ReportMetric(res.FloodP50Ms, "flood_p50_ms")
	b.ReportMetric(res.FloodP99Ms, "flood_p99_ms")
	b.ReportMetric(res.FloodMBPerSec, "flood_MB/s")
}

// BenchmarkConnectProcess measures hodei-agent process start -> registered.
func BenchmarkConnectProcess(b *testing.B) {
	bin := agentBinary(b)
	fs := agenttest.New(agenttest.Options{})
	if err := fs.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer fs.Stop()
	srv := agentbench.Fake(fs)
	var res agentbench.ConnectResult
	for b.Loop() {
		var err error
		res, err = agentbench.ConnectLatency(context.Background(), srv, agentbench.ConnectOptions{Runs: 20, Start: agentbench.AgentProcess(bin, srv.Addr())})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(res.P50Ms, "p50_ms")
	b.ReportMetric(res.P99Ms, "p99_ms")
}

func niceFromEnv() int {
	n, _ := strconv.Atoi(os.Getenv("HODEI_JOB_NICE"))
	return n
}
