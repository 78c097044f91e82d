package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/eventstore/bolt"
	"github.com/hodei-jobs/hodei/eventstore/memory"
	"github.com/hodei-jobs/hodei/projections"
	"github.com/hodei-jobs/hodei/replay"
)

var (
	update = flag.Bool("update", false, "rewrite the golden read models and timelines in testdata/eventlog from the recorded logs")
	record = flag.Bool("record", false, "record testdata/eventlog/"+currentLog+" (only if it is not there: recorded logs are never rewritten)")
)

// currentLog is the directory of the log this version records. A version
// that changes how events are written records a new directory beside the
// old ones and keeps every old one replaying (see testdata/README.md).
const currentLog = "v2"

// logsDir holds the recorded logs, one directory each.
var logsDir = filepath.Join("..", "testdata", "eventlog")

// goldenJobs, goldenWorkers and the timelines are what the goldens show.
const midPosition = 40 // a point inside the log for the state-at golden

// TestGoldenReplay replays every recorded log (testdata/eventlog/*) through
// this binary's codec and projections and compares the read models with the
// goldens recorded beside it. The bbolt file and the JSON-lines export must
// hold the same log; the export must import into an empty store with the
// same head.
func TestGoldenReplay(t *testing.T) {
	if *record {
		recordLog(t, filepath.Join(logsDir, currentLog))
	}
	dirs, err := filepath.Glob(filepath.Join(logsDir, "v*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no recorded logs in %s (record one with -record): %v", logsDir, err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) { replayRecorded(t, dir) })
	}
}

func replayRecorded(t *testing.T, dir string) {
	ctx := context.Background()
	codec := command.NewCodec()
	// The bbolt file, opened from a copy so the test never touches testdata.
	tmp := t.TempDir()
	copyFile(t, filepath.Join(dir, "events.db"), filepath.Join(tmp, "events.db"))
	bs, err := bolt.Open(filepath.Join(tmp, "events.db"), bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open recorded bbolt log: %v", err)
	}
	defer bs.Close()
	rep, err := replay.Verify(ctx, bs, nil)
	if err != nil || !rep.OK() {
		t.Fatalf("Verify(recorded log) = %+v, %v; want intact", rep, err)
	}

	// The export imports into an empty store, identical.
	f, err := os.Open(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms := memory.New(memory.Options{})
	irep, err := replay.Import(ctx, ms, f, replay.ImportOptions{BatchEvents: 17})
	if err != nil {
		t.Fatalf("Import(events.jsonl) error = %v", err)
	}
	if irep.Head != rep.Head {
		t.Fatalf("Import(events.jsonl) head = %d %s, the bbolt log's = %d %s", irep.Head.Position, irep.Head.Hash, rep.Head.Position, rep.Head.Hash)
	}
	fromBolt, _ := bs.ReadAll(ctx, 1, int(rep.Head.Position))
	fromJSON, _ := ms.ReadAll(ctx, 1, int(rep.Head.Position))
	if diff := cmp.Diff(fromBolt, fromJSON); diff != "" {
		t.Fatalf("imported export differs from the bbolt log (-bolt +import):\n%s", diff)
	}

	// Read models at the head, and at a point in the past, from both stores.
	jobs, workers := projections.NewJobs(), projections.NewWorkers()
	r, err := projections.NewRunner(bs, codec, projections.RunnerOptions{}, jobs, workers)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.CatchUp(ctx); err != nil {
		t.Fatalf("replay recorded log: %v", err)
	}
	golden(t, dir, "jobs.json", jsonOf(t, listJobs(jobs)))
	golden(t, dir, "workers.json", jsonOf(t, workers.List()))
	st, err := replay.StateAt(ctx, ms, codec, midPosition, replay.StateOptions{})
	if err != nil {
		t.Fatalf("StateAt(%d) error = %v", midPosition, err)
	}
	golden(t, dir, fmt.Sprintf("state-at-%d.json", midPosition), jsonOf(t, map[string]any{
		"position": st.Position, "jobs": listJobs(st.Jobs), "workers": st.Workers.List()}))

	// Timelines of every stream, through this binary's summaries.
	var tl bytes.Buffer
	for _, s := range streams(fromBolt) {
		entries, err := replay.Timeline(ctx, bs, codec, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !e.Known {
				t.Errorf("%s position %d: %s does not decode: %s", s, e.Position, e.Type, e.DecodeError)
			}
		}
		fmt.Fprintf(&tl, "== %s\n", s)
		if err := replay.WriteTimeline(&tl, entries); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, dir, "timelines.txt", tl.Bytes())
}

func listJobs(j *projections.Jobs) []projections.JobView {
	var out []projections.JobView
	j.Each(func(v projections.JobView) bool { out = append(out, v); return true })
	return out
}

func streams(log []eventstore.Envelope) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range log {
		if !seen[e.StreamID] {
			seen[e.StreamID] = true
			out = append(out, e.StreamID)
		}
	}
	return out
}

func jsonOf(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// golden compares got with dir/name, or rewrites the file with -update.
func golden(t *testing.T, dir, name string, got []byte) {
	t.Helper()
	path := filepath.Join(dir, name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (write it with -update)", path, err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the replay (-golden +replay); if the change is intended, rerun with -update and review the diff:\n%s", path, diff)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// recordLog writes the scenario's log into dir as a bbolt file and its
// export. It refuses to overwrite a recorded log.
func recordLog(t *testing.T, dir string) {
	if _, err := os.Stat(filepath.Join(dir, "events.db")); err == nil {
		t.Fatalf("%s already holds a recorded log; recorded logs are never rewritten (record a new version beside it)", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	path := filepath.Join(dir, "events.db")
	s, err := bolt.Open(path, bolt.Options{InitialMmapSize: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	tick := func() time.Time { clock = clock.Add(250 * time.Millisecond); return clock }
	h := command.New(s, command.NewCodec(), command.Options{Clock: tick})
	if err := scenario(ctx, h, func() time.Time { return clock.Add(250 * time.Millisecond) }); err != nil {
		t.Fatalf("record scenario: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := bolt.Open(path, bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var buf bytes.Buffer
	if _, err := replay.Export(ctx, ro, &buf, replay.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "events.jsonl"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	*update = true // a new log needs its goldens
}

// scenario drives a small cluster through every event type of
// domain.Events(): the log testdata keeps. at is the time of the next event.
func scenario(ctx context.Context, h *command.Handler, at func() time.Time) error {
	user := command.Meta{Actor: "user:alice", CorrelationID: mustID("0b9e8a52-7c1d-4f3e-9a61-2d5c8e7f1a01")}
	sched := command.Meta{Actor: "system:scheduler"}
	ops := command.Meta{Actor: "user:ops"}
	agent := func(w string) command.Meta { return command.Meta{Actor: "agent:" + w} }
	info := func(name string, slots int64, pool string) domain.WorkerInfo {
		return domain.WorkerInfo{Name: name, Labels: map[string]string{"os": "linux", "pool": pool},
			Capacity: domain.Resources{Slots: slots, CPUMillis: slots * 1000, MemoryBytes: slots << 30}, AgentVersion: "1.0.0", ProtocolVersion: 1}
	}
	var err error
	worker := func(id string, cmd domain.WorkerCommand, meta command.Meta) {
		if err == nil {
			_, err = h.Worker(ctx, id, cmd, meta)
			if err != nil {
				err = fmt.Errorf("worker %s %s: %w", id, cmd.CommandName(), err)
			}
		}
	}
	job := func(id string, cmd domain.JobCommand, meta command.Meta) {
		if err == nil {
			_, err = h.Job(ctx, id, cmd, meta)
			if err != nil {
				err = fmt.Errorf("job %s %s: %w", id, cmd.CommandName(), err)
			}
		}
	}
	spec := func(name string) domain.JobSpec {
		return domain.JobSpec{Name: name, Script: "make " + name, Env: map[string]string{"CI": "1"},
			Labels: map[string]string{"team": "core"}, Resources: domain.Resources{Slots: 1, CPUMillis: 500, MemoryBytes: 256 << 20}}
	}
	submit := func(id string, s domain.JobSpec) {
		job(id, domain.Submit{JobID: id, Spec: s, Submitter: "alice", At: at()}, user)
	}
	run := func(id, w string, attempt uint32) {
		job(id, domain.Schedule{WorkerID: w, AcceptBy: at().Add(30 * time.Second), At: at()}, sched)
		job(id, domain.Accept{WorkerID: w, Attempt: attempt, At: at()}, agent(w))
		job(id, domain.Start{WorkerID: w, Attempt: attempt, At: at()}, agent(w))
	}
	finish := func(id, w string, attempt uint32, exit int, signal string, runtime time.Duration) {
		job(id, domain.Finish{WorkerID: w, Attempt: attempt, ExitCode: exit, Signal: signal, Runtime: runtime, At: at()}, agent(w))
	}

	for i, pool := range []string{"a", "a", "b", "b"} {
		w := fmt.Sprintf("w-%d", i+1)
		worker(w, domain.Register{WorkerID: w, Info: info("node-"+w, 4, pool), At: at()}, agent(w))
		now := at()
		worker(w, domain.Enrol{TokenID: "0123456789abcdef", Cert: domain.CertRef{Serial: fmt.Sprintf("c0ffee%02d", i),
			Fingerprint: strings.Repeat(fmt.Sprint(i), 64), NotAfter: now.Add(24 * time.Hour)},
			IdentityExpiresAt: now.Add(15 * time.Minute), At: now}, agent(w))
	}
	submit("j-1", spec("build"))
	run("j-1", "w-1", 1)
	finish("j-1", "w-1", 1, 0, "", 42*time.Second)

	submit("j-2", spec("test"))
	run("j-2", "w-2", 1)
	finish("j-2", "w-2", 1, 2, "", 3*time.Second)

	gpu := spec("train")
	gpu.Selector = map[string]string{"pool": "b"}
	gpu.Resources = domain.Resources{Slots: 2, CPUMillis: 2000, MemoryBytes: 2 << 30}
	gpu.Priority = 90
	submit("j-3", gpu)
	job("j-3", domain.Park{Reason: "no online worker in pool b has 2 slots free", At: at()}, sched)
	job("j-3", domain.Unpark{At: at()}, sched)
	run("j-3", "w-3", 1)
	finish("j-3", "w-3", 1, 0, "", 10*time.Minute)

	submit("j-4", spec("lint"))
	job("j-4", domain.Cancel{By: "alice", Reason: "wrong branch", At: at()}, user)

	slow := spec("soak")
	slow.Timeout = 10 * time.Minute
	submit("j-5", slow)
	run("j-5", "w-1", 1)
	job("j-5", domain.Finish{WorkerID: "w-1", Attempt: 1, ExitCode: -1, Signal: "SIGKILL", TimedOut: true, Runtime: 10 * time.Minute, At: at()}, agent("w-1"))

	quick := spec("ping")
	quick.Timeout = time.Second
	submit("j-6", quick)
	run("j-6", "w-2", 1)
	job("j-6", domain.TimeOut{At: at().Add(2 * time.Second)}, command.Meta{Actor: "system:timeouts"})

	submit("j-7", spec("package"))
	run("j-7", "w-4", 1)
	worker("w-4", domain.MarkLost{LastSeen: at().Add(-15 * time.Second), At: at()}, command.Meta{Actor: "system:heartbeat"})
	job("j-7", domain.FailAttempt{WorkerID: "w-4", Attempt: 1, Reason: domain.ReasonAgentLost, At: at()}, command.Meta{Actor: "system:heartbeat"})
	run("j-7", "w-3", 2)
	finish("j-7", "w-3", 2, 0, "", 90*time.Second)
	worker("w-4", domain.Reconnect{Info: info("node-w-4", 4, "b"), At: at()}, agent("w-4"))

	submit("j-8", spec("deploy"))
	run("j-8", "w-1", 1)
	job("j-8", domain.Cancel{By: "bob", Reason: "superseded", At: at()}, command.Meta{Actor: "user:bob", CausationID: mustID("5f0c4e2a-1b3d-4c5e-8f7a-9b0c1d2e3f40")})
	finish("j-8", "w-1", 1, -1, "SIGTERM", 5*time.Second)

	once := spec("migrate")
	once.MaxAttempts = 1
	once.Secrets = map[string]string{"DB_PASSWORD": "prod-db"}
	submit("j-9", once)
	job("j-9", domain.Schedule{WorkerID: "w-2", AcceptBy: at().Add(time.Second), At: at()}, sched)
	job("j-9", domain.FailAttempt{WorkerID: "w-2", Attempt: 1, Reason: domain.ReasonAcceptTimeout, At: at()}, command.Meta{Actor: "system:scheduler"})

	worker("w-2", domain.Drain{By: "ops", Reason: "kernel upgrade", At: at()}, ops)
	worker("w-2", domain.Resume{By: "ops", At: at()}, ops)
	worker("w-3", domain.Drain{By: "ops", Reason: "decommission", At: at()}, ops)
	worker("w-3", domain.Deregister{Reason: "decommissioned", At: at()}, ops)

	submit("j-10", spec("nightly"))
	run("j-10", "w-1", 1) // still running at the end
	submit("j-11", spec("docs"))
	job("j-11", domain.Schedule{WorkerID: "w-2", At: at()}, sched)
	job("j-11", domain.Accept{WorkerID: "w-2", Attempt: 1, At: at()}, agent("w-2")) // accepted, not started
	big := spec("render")
	big.Resources.Slots = 8
	submit("j-12", big)
	job("j-12", domain.Park{Reason: "no worker has 8 slots", At: at()}, sched) // parked at the end

	now := at()
	worker("w-1", domain.RenewIdentity{IdentityExpiresAt: now.Add(15 * time.Minute), At: now}, command.Meta{Actor: "system:identity"})
	worker("w-4", domain.RevokeIdentity{By: "ops", Reason: "host compromised", At: at()}, ops)

	// A provider starts an agent for a job no worker can take, it runs the
	// job and is removed when idle; a second instance fails to start.
	prov := command.Meta{Actor: "system:provider:docker"}
	instance := func(id string, cmd domain.InstanceCommand) {
		if err == nil {
			_, err = h.Instance(ctx, id, cmd, prov)
			if err != nil {
				err = fmt.Errorf("instance %s %s: %w", id, cmd.CommandName(), err)
			}
		}
	}
	docker := spec("package")
	docker.Selector = map[string]string{"pool": "docker"}
	submit("j-13", docker)
	job("j-13", domain.Park{Reason: "no worker matches pool=docker", At: at()}, sched)
	instance("docker-0a1b2c3d", domain.RequestInstance{InstanceID: "docker-0a1b2c3d", Provider: "docker", Driver: "docker",
		Jobs: []string{"j-13"}, Reason: "1 queued job(s) match pool=docker and no connected agent can take them", At: at()})
	instance("docker-0a1b2c3d", domain.MarkInstanceStarted{Handle: "3f2a9c1be0d4", At: at()})
	worker("w-5", domain.Register{WorkerID: "w-5", Info: info("hodei-docker-0a1b2c3d", 1, "docker"), At: at()}, agent("w-5"))
	instance("docker-0a1b2c3d", domain.MarkInstanceConnected{WorkerID: "w-5", At: at()})
	run("j-13", "w-5", 1)
	finish("j-13", "w-5", 1, 0, "", 2*time.Second)
	worker("w-5", domain.Drain{By: "system:provider:docker", Reason: "idle for 1m0s", At: at()}, prov)
	worker("w-5", domain.Deregister{Reason: "drained", At: at()}, agent("w-5"))
	instance("docker-0a1b2c3d", domain.TerminateInstance{Reason: "the agent drained and left (idle for 1m0s)", At: at()})
	instance("docker-4e5f6a7b", domain.RequestInstance{InstanceID: "docker-4e5f6a7b", Provider: "docker", Driver: "docker",
		Ephemeral: true, Jobs: []string{"j-12"}, Reason: "1 queued job(s) match pool=docker", At: at()})
	instance("docker-4e5f6a7b", domain.FailInstance{Reason: "start: image hodei-agent:dev not found in the local engine", At: at()})
	return err
}

func mustID(s string) eventstore.ID {
	id, err := eventstore.ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// TestGoldenScenarioCoversEveryEventType keeps the recorded scenario honest:
// the current log must hold every event type this binary writes.
func TestGoldenScenarioCoversEveryEventType(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(logsDir, currentLog, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range domain.Events() {
		if !strings.Contains(string(b), `"type":"`+ev.EventType()+`"`) {
			t.Errorf("recorded log %s has no %s event", currentLog, ev.EventType())
		}
	}
}
