package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
)

// TestMetrics scrapes /metrics after a job ran and lints it as promtool
// check metrics does.
func TestMetrics(t *testing.T) {
	srv := startServer(t, time.Second)
	sub := &watcher{sub: srv.store.Subscribe(0)}
	defer sub.sub.Close()
	startAgent(t, srv, "m1")
	res := srv.Core().Submit(srv.ctx, "alice", []core.SubmitRequest{{Spec: domain.JobSpec{Name: "m", Script: "true"}}})
	done := waitEvent(t, srv.ctx, sub, domain.TypeJobSucceeded, domain.JobStream(res[0].JobID))
	// The read models behind /metrics apply it a moment after it commits.
	if err := srv.Core().WaitFor(srv.ctx, done.Position); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Get("http://" + srv.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics = %d, %v", resp.StatusCode, err)
	}
	text := string(b)
	for _, want := range []string{
		`hodei_jobs{status="succeeded"} 1`,
		`hodei_workers{status="online"} 1`,
		`hodei_agent_streams 1`,
		`hodei_job_queue_wait_seconds_count 1`,
		`hodei_scheduler_placements_total 1`,
		`hodei_store_append_seconds_count{call="append_many"}`,
		`hodei_grpc_streams{method="/hodei.hwp.v1.WorkerProtocol/Connect"} 1`,
		`hodei_queue_depth{state="parked"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
