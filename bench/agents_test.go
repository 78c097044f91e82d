package bench

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/agent/agentbench"
)

// TestAgentServerRunsTheAgentBenches runs both agent benches, shortened,
// against the real server with in-process agents (`hodei bench logs` and
// `hodei bench connect` use agent processes).
func TestAgentServerRunsTheAgentBenches(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PTY jobs; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := StartAgentServer(ctx, AgentServerConfig{Dir: t.TempDir(), Store: "memory"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	}()
	quiet := slog.New(slog.DiscardHandler)
	stop, err := agentbench.InProcessAgent(srv.Addr(), agent.Config{WorkDir: t.TempDir(), Slots: 4,
		Labels: map[string]string{AgentLabel: "a1"}, Logger: quiet})(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	res, err := agentbench.LogLatency(ctx, srv, agentbench.LogLatencyOptions{Agent: "a1", Samples: 20, Flooders: 2, Dir: t.TempDir()})
	if err := stop(); err != nil {
		t.Errorf("stop agent: %v", err)
	}
	if err != nil {
		t.Fatalf("LogLatency() = %v", err)
	}
	if res.Samples != 20 || res.P50Ms <= 0 || res.P99Ms < res.P50Ms || res.FloodP50Ms <= 0 || res.FloodMBPerSec <= 0 {
		t.Fatalf("LogLatency() = %+v, want 20 samples and positive figures", res)
	}
	t.Logf("logs: %+v", res)

	cres, err := agentbench.ConnectLatency(ctx, srv, agentbench.ConnectOptions{Runs: 3,
		Start: agentbench.InProcessAgent(srv.Addr(), agent.Config{WorkDir: t.TempDir(), Logger: quiet})})
	if err != nil || cres.Runs != 3 || cres.P50Ms <= 0 {
		t.Fatalf("ConnectLatency() = %+v, %v; want 3 runs", cres, err)
	}
	t.Logf("connect: %+v", cres)
}

// TestStartJobNeedsTheAgentLabel checks the error that says how to start a
// bench agent.
func TestStartJobNeedsTheAgentLabel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := StartAgentServer(ctx, AgentServerConfig{Dir: t.TempDir(), Store: "bolt"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	}()
	if _, err := srv.StartJob(ctx, "nobody", agentbench.Job{ID: "j1", Script: "true"}); err == nil {
		t.Fatal("StartJob() on an unknown agent = nil error")
	}
	stop, err := agentbench.InProcessAgent(srv.Addr(), agent.Config{WorkDir: t.TempDir(),
		Logger: slog.New(slog.DiscardHandler)})(ctx, "unlabelled")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("stop agent: %v", err)
		}
	}()
	if err := srv.WaitAgent(ctx, "unlabelled"); err != nil {
		t.Fatalf("WaitAgent() = %v", err)
	}
	_, err = srv.StartJob(ctx, "unlabelled", agentbench.Job{ID: "j2", Script: "true"})
	if err == nil || !strings.Contains(err.Error(), "-labels "+AgentLabel+"=unlabelled") {
		t.Fatalf("StartJob() = %v, want an error naming -labels %s=unlabelled", err, AgentLabel)
	}
}
