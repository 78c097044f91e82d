package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
	"github.com/hodei-jobs/hodei/projections"
)

// writeJobsLog writes a small job lifecycle log into dir/events.db and, like
// a server on its way out, snapshots of the read models into snapDir.
func writeJobsLog(t *testing.T, dir, snapDir, name string) {
	t.Helper()
	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(dir, eventsFile), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	codec := command.NewCodec()
	h := command.New(s, codec, command.Options{})
	meta := command.Meta{Actor: "user:test"}
	at := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	info := domain.WorkerInfo{Name: "w", Capacity: domain.Resources{Slots: 4, CPUMillis: 1000, MemoryBytes: 1 << 30}, AgentVersion: "test", ProtocolVersion: 1}
	if _, err := h.Worker(ctx, "w1", domain.Register{WorkerID: "w1", Info: info, At: at}, meta); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("j%d", i)
		cmds := []command.JobCommand{
			{JobID: id, Meta: meta, Cmd: domain.Submit{JobID: id, Submitter: "t", At: at, Spec: domain.JobSpec{Name: name, Script: "true"}}},
			{JobID: id, Meta: meta, Cmd: domain.Schedule{WorkerID: "w1", At: at}},
			{JobID: id, Meta: meta, Cmd: domain.Start{WorkerID: "w1", Attempt: 1, At: at}},
			{JobID: id, Meta: meta, Cmd: domain.Finish{WorkerID: "w1", Attempt: 1, ExitCode: i % 3, At: at}},
		}
		if _, errs := h.Jobs(ctx, cmds); errs[0] != nil || errs[3] != nil {
			t.Fatal(errs)
		}
	}
	r, err := projections.NewRunner(s, codec, projections.RunnerOptions{SnapshotDir: snapDir}, projections.NewJobs(), projections.NewWorkers())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Snapshot(); err != nil {
		t.Fatal(err)
	}
}

func TestProjectionsRebuildVerify(t *testing.T) {
	dir := t.TempDir()
	writeJobsLog(t, dir, filepath.Join(dir, "snapshots"), "build")
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"projections", "rebuild", "--verify", "--data", dir}, nil, &out, &errb)
	if code != exitOK || !strings.Contains(out.String(), "equal to the live snapshot at position 81") {
		t.Fatalf("rebuild --verify = exit %d:\n%s%s", code, out.String(), errb.String())
	}

	// A live state that differs from the log (a snapshot of other content at
	// the same position) is reported and exits 1.
	other := t.TempDir()
	writeJobsLog(t, other, filepath.Join(dir, "snapshots"), "deploy")
	out.Reset()
	errb.Reset()
	code = Main(context.Background(), []string{"projections", "rebuild", "--verify", "--data", dir}, nil, &out, &errb)
	if code != exitFailure || !strings.Contains(errb.String(), "rebuilt state at position 81") {
		t.Fatalf("rebuild --verify with a foreign snapshot = exit %d:\n%s%s", code, out.String(), errb.String())
	}
	// Without --verify it rebuilds and rewrites the snapshots; then they agree.
	if code := Main(context.Background(), []string{"projections", "rebuild", "--data", dir}, nil, &out, &errb); code != exitOK {
		t.Fatalf("rebuild = exit %d:\n%s", code, errb.String())
	}
	out.Reset()
	if code := Main(context.Background(), []string{"projections", "rebuild", "--verify", "--data", dir, "-o", "json"}, nil, &out, &errb); code != exitOK ||
		!strings.Contains(out.String(), `"ok":true`) {
		t.Fatalf("rebuild --verify after a rebuild = exit %d:\n%s", code, out.String())
	}
}
