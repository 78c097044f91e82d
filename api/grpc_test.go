package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/domain"
)

// logResult is what a WatchLog stream delivered.
type logResult struct {
	data     []byte
	attempts []uint32
	err      error
}

// watchLog reads a WatchLog stream to its end in a goroutine.
func (h *harness) watchLog(req *jobpb.WatchLogRequest) <-chan logResult {
	h.t.Helper()
	return h.watchLogNotify(req, nil)
}

// watchLogStarted is watchLog that returns once the first chunk arrived:
// the server has taken the request and chosen its attempt.
func (h *harness) watchLogStarted(req *jobpb.WatchLogRequest) <-chan logResult {
	h.t.Helper()
	first := make(chan struct{})
	out := h.watchLogNotify(req, first)
	select {
	case <-first:
	case <-h.ctx.Done():
		h.t.Fatal("WatchLog sent nothing before the deadline")
	}
	return out
}

// watchLogNotify is watchLog that closes first (if not nil) when the first
// chunk arrives.
func (h *harness) watchLogNotify(req *jobpb.WatchLogRequest, first chan struct{}) <-chan logResult {
	h.t.Helper()
	stream, err := h.client.WatchLog(h.ctx, req)
	if err != nil {
		h.t.Fatalf("WatchLog() = %v", err)
	}
	out := make(chan logResult, 1)
	go func() {
		var r logResult
		next := map[uint32]uint64{}
		for {
			c, err := stream.Recv()
			if err != nil {
				if err != io.EOF {
					r.err = err
				}
				out <- r
				return
			}
			if want := next[c.GetAttempt()]; c.GetOffset() != want && !(want == 0 && c.GetOffset() == req.GetOffset()) {
				r.err = errors.New("offset gap or repeat")
				out <- r
				return
			}
			next[c.GetAttempt()] = c.GetOffset() + uint64(len(c.GetData()))
			if len(r.attempts) == 0 || r.attempts[len(r.attempts)-1] != c.GetAttempt() {
				r.attempts = append(r.attempts, c.GetAttempt())
			}
			r.data = append(r.data, c.GetData()...)
			if first != nil {
				close(first)
				first = nil
			}
		}
	}()
	return out
}

func (h *harness) logResult(ch <-chan logResult) logResult {
	h.t.Helper()
	select {
	case r := <-ch:
		return r
	case <-h.ctx.Done():
		h.t.Fatal("WatchLog did not end before the deadline")
		return logResult{}
	}
}

func TestSubmitRunFollowLog(t *testing.T) {
	h := start(t)
	w, agent := h.connect("w1", 2)
	job := h.submit(&jobpb.JobSpec{Name: "hello", Script: "echo hi; exit 3", Env: map[string]string{"A": "1"},
		Labels: map[string]string{"team": "infra"}, Timeout: durationpb.New(time.Minute)}, "build-1")
	if !strings.HasPrefix(job.GetId(), "k") || job.GetSubmitter() != "anonymous" || job.GetSpec().GetPriority() != domain.DefaultPriority {
		t.Fatalf("submitted job = %v", job)
	}
	// Follow before the job runs: the stream waits for its first attempt.
	logs := h.watchLog(&jobpb.WatchLogRequest{JobId: job.GetId(), Follow: true})

	as := h.assignment(agent)
	if as.JobID != job.GetId() || as.Script != "echo hi; exit 3" || as.Env["A"] != "1" {
		t.Fatalf("assignment = %+v", as)
	}
	h.run(w, as)
	h.write(as, "hello \x1b[31mred")
	h.write(as, "\x1b[0m world\r\n")
	h.finish(w, as, 3)

	r := h.logResult(logs)
	if r.err != nil || string(r.data) != "hello \x1b[31mred\x1b[0m world\r\n" {
		t.Fatalf("WatchLog() = %q, %v", r.data, r.err)
	}
	got, err := h.client.GetJob(h.ctx, &jobpb.GetJobRequest{JobId: job.GetId()})
	if err != nil || got.GetStatus() != jobpb.JobStatus_JOB_STATUS_FAILED || got.GetExitCode() != 3 || len(got.GetAttempts()) != 1 {
		t.Fatalf("GetJob() = %v, %v", got, err)
	}

	// The stored log, without follow, from an offset.
	r = h.logResult(h.watchLog(&jobpb.WatchLogRequest{JobId: job.GetId(), Offset: 6}))
	if r.err != nil || string(r.data) != "\x1b[31mred\x1b[0m world\r\n" {
		t.Fatalf("WatchLog(offset 6) = %q, %v", r.data, r.err)
	}

	list, err := h.client.ListJobs(h.ctx, &jobpb.ListJobsRequest{Labels: map[string]string{"team": "infra"},
		Statuses: []jobpb.JobStatus{jobpb.JobStatus_JOB_STATUS_FAILED}})
	if err != nil || len(list.GetJobs()) != 1 || list.GetJobs()[0].GetId() != job.GetId() || list.GetJobs()[0].GetExitCode() != 3 {
		t.Fatalf("ListJobs() = %v, %v", list, err)
	}
	evs, err := h.client.ListJobEvents(h.ctx, &jobpb.ListJobEventsRequest{JobId: job.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs.GetEvents() {
		types = append(types, e.GetType())
	}
	if strings.Join(types, ",") != "job.submitted,job.scheduled,job.accepted,job.started,job.failed" {
		t.Fatalf("ListJobEvents() types = %v", types)
	}
	if p := evs.GetEvents()[0].GetPayloadJson(); !strings.Contains(p, `"script":"echo hi; exit 3"`) || evs.GetEvents()[0].GetActor() != "user:anonymous" {
		t.Fatalf("job.submitted = %v", evs.GetEvents()[0])
	}
}

// With attempt 0 the log follows the job across re-queued attempts; an
// attempt whose agent was lost (its log never finished) ends when the job's
// events say so.
func TestWatchLogFollowsRequeuedAttempts(t *testing.T) {
	h := start(t)
	w1, a1 := h.connect("w1", 1)
	job := h.submit(&jobpb.JobSpec{Name: "retry", Script: "run"}, "")
	as1 := h.assignment(a1)
	h.run(w1, as1)
	h.write(as1, "one\n")
	// Attempt 0 starts at the attempt current when the server takes the
	// request: wait for its first chunk before the job is re-queued.
	logs := h.watchLogStarted(&jobpb.WatchLogRequest{JobId: job.GetId(), Follow: true})

	w2, a2 := h.connect("w2", 1)
	h.core.Disconnect(w1, a1)
	h.clock.advance(time.Second)
	_ = h.core.Heartbeat(w2, core.Telemetry{CPUPercent: 1})
	as2 := h.assignment(a2)
	if as2.Attempt != 2 {
		t.Fatalf("second assignment = %+v", as2)
	}
	h.run(w2, as2)
	h.write(as2, "two\n")
	h.finish(w2, as2, 0)

	r := h.logResult(logs)
	if r.err != nil || string(r.data) != "one\ntwo\n" || len(r.attempts) != 2 {
		t.Fatalf("WatchLog() = %q (attempts %v), %v", r.data, r.attempts, r.err)
	}
	// A given attempt only.
	r = h.logResult(h.watchLog(&jobpb.WatchLogRequest{JobId: job.GetId(), Attempt: 1, Follow: true}))
	if r.err != nil || string(r.data) != "one\n" {
		t.Fatalf("WatchLog(attempt 1) = %q, %v", r.data, r.err)
	}
}

// A job cancelled while queued ends a follower that waits for its first
// attempt.
func TestWatchLogOfJobCancelledWhileQueued(t *testing.T) {
	h := start(t)
	job := h.submit(&jobpb.JobSpec{Name: "q", Script: "true"}, "")
	logs := h.watchLog(&jobpb.WatchLogRequest{JobId: job.GetId(), Follow: true})
	got, err := h.client.CancelJob(h.ctx, &jobpb.CancelJobRequest{JobId: job.GetId(), Reason: "not needed"})
	if err != nil || got.GetStatus() != jobpb.JobStatus_JOB_STATUS_CANCELLED || got.GetCancelledBy() != "anonymous" {
		t.Fatalf("CancelJob() = %v, %v", got, err)
	}
	if r := h.logResult(logs); r.err != nil || len(r.data) != 0 {
		t.Fatalf("WatchLog() = %q, %v", r.data, r.err)
	}
	_, err = h.client.CancelJob(h.ctx, &jobpb.CancelJobRequest{JobId: job.GetId()})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("CancelJob(ended) = %v, want FailedPrecondition", err)
	}
	_, err = h.client.CancelJob(h.ctx, &jobpb.CancelJobRequest{JobId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("CancelJob(unknown) = %v, want NotFound", err)
	}
	_, err = h.client.WatchLog(h.ctx, &jobpb.WatchLogRequest{JobId: "nope"})
	if err == nil {
		s, _ := h.client.WatchLog(h.ctx, &jobpb.WatchLogRequest{JobId: "nope", Follow: true})
		_, err = s.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("WatchLog(unknown job) = %v, want NotFound", err)
	}
}

func TestIdempotentSubmit(t *testing.T) {
	h := start(t)
	spec := &jobpb.JobSpec{Name: "nightly", Script: "make", Labels: map[string]string{}}
	first := h.submit(spec, "nightly-2026-11-27")
	resp, err := h.client.SubmitJobs(h.ctx, &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{
		{IdempotencyKey: "nightly-2026-11-27", Spec: &jobpb.JobSpec{Name: "nightly", Script: "make", Priority: 50}},
		{IdempotencyKey: "other", Spec: spec},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.GetResults()[0]; r.GetCreated() || r.GetJob().GetId() != first.GetId() {
		t.Fatalf("retry = %v, want the existing job %s", r, first.GetId())
	}
	if r := resp.GetResults()[1]; !r.GetCreated() || r.GetJob().GetId() == first.GetId() {
		t.Fatalf("new key = %v, want a new job", r)
	}
	if first.GetId() != api.JobIDForKey("anonymous", "nightly-2026-11-27") {
		t.Fatalf("job id %s is not derived from the key", first.GetId())
	}

	// Same key, other spec: ALREADY_EXISTS naming the key, and nothing of
	// the batch is submitted.
	_, err = h.client.SubmitJobs(h.ctx, &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{
		{IdempotencyKey: "fresh", Spec: spec},
		{IdempotencyKey: "nightly-2026-11-27", Spec: &jobpb.JobSpec{Name: "nightly", Script: "make -j8"}},
	}})
	if status.Code(err) != codes.AlreadyExists || api.FieldOf(err) != "jobs[1].idempotency_key" {
		t.Fatalf("SubmitJobs(reused key) = %v (field %q), want AlreadyExists on jobs[1].idempotency_key", err, api.FieldOf(err))
	}
	list, err := h.client.ListJobs(h.ctx, &jobpb.ListJobsRequest{})
	if err != nil || len(list.GetJobs()) != 2 {
		t.Fatalf("ListJobs() = %d jobs, %v; want 2", len(list.GetJobs()), err)
	}
}

func TestBadGRPCInputNamesTheField(t *testing.T) {
	h := start(t)
	ok := &jobpb.JobSpec{Name: "ok", Script: "true"}
	tests := []struct {
		name  string
		req   *jobpb.SubmitJobsRequest
		field string
	}{
		{"no jobs", &jobpb.SubmitJobsRequest{}, "jobs"},
		{"no spec", &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{}}}, "jobs[0].spec"},
		{"empty script", &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{Spec: ok}, {Spec: &jobpb.JobSpec{Name: "x"}}}}, "jobs[1].spec.script"},
		{"absurd cpu", &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{Spec: &jobpb.JobSpec{Name: "x", Script: "y",
			Resources: &jobpb.Resources{CpuMillis: 1 << 40}}}}}, "jobs[0].spec.resources.cpu_millis"},
		{"negative memory", &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{Spec: &jobpb.JobSpec{Name: "x", Script: "y",
			Resources: &jobpb.Resources{MemoryBytes: -1}}}}}, "jobs[0].spec.resources.memory_bytes"},
		{"bad selector", &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{Spec: &jobpb.JobSpec{Name: "x", Script: "y",
			Selector: map[string]string{"bad key!": "v"}}}}}, "jobs[0].spec.selector"},
		{"bad timeout", &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{Spec: &jobpb.JobSpec{Name: "x", Script: "y",
			Timeout: &durationpb.Duration{Seconds: 1, Nanos: -5}}}}}, "jobs[0].spec.timeout"},
		{"huge script", &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{Spec: &jobpb.JobSpec{Name: "x",
			Script: strings.Repeat("x", domain.MaxScriptBytes+1)}}}}, "jobs[0].spec.script"},
		{"control key", &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{IdempotencyKey: "a\nb", Spec: ok}}}, "jobs[0].idempotency_key"},
		{"duplicate key", &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{IdempotencyKey: "k", Spec: ok}, {IdempotencyKey: "k", Spec: ok}}},
			"jobs[1].idempotency_key"},
	}
	for _, tt := range tests {
		_, err := h.client.SubmitJobs(h.ctx, tt.req)
		if status.Code(err) != codes.InvalidArgument || api.FieldOf(err) != tt.field {
			t.Errorf("%s: SubmitJobs() = %v (field %q), want InvalidArgument on %s", tt.name, err, api.FieldOf(err), tt.field)
		}
	}
	others := []struct {
		name  string
		call  func() error
		field string
	}{
		{"get bad id", func() error { _, err := h.client.GetJob(h.ctx, &jobpb.GetJobRequest{JobId: "../x"}); return err }, "job_id"},
		{"list bad status", func() error {
			_, err := h.client.ListJobs(h.ctx, &jobpb.ListJobsRequest{Statuses: []jobpb.JobStatus{99}})
			return err
		}, "statuses[0]"},
		{"list bad token", func() error {
			_, err := h.client.ListJobs(h.ctx, &jobpb.ListJobsRequest{PageToken: "zzz"})
			return err
		}, "page_token"},
		{"list bad label", func() error {
			_, err := h.client.ListJobs(h.ctx, &jobpb.ListJobsRequest{Labels: map[string]string{"a b": "c"}})
			return err
		}, "labels"},
		{"short secret", func() error {
			_, err := h.client.SetSecret(h.ctx, &jobpb.SetSecretRequest{Name: "db", Value: "abc"})
			return err
		}, "value"},
		{"bad secret name", func() error {
			_, err := h.client.SetSecret(h.ctx, &jobpb.SetSecretRequest{Name: "-db", Value: "abcdefgh"})
			return err
		}, "name"},
		{"events bad stream", func() error {
			s, err := h.client.WatchEvents(h.ctx, &jobpb.WatchEventsRequest{Stream: "nonsense"})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, "stream"},
	}
	for _, tt := range others {
		err := tt.call()
		if status.Code(err) != codes.InvalidArgument || api.FieldOf(err) != tt.field {
			t.Errorf("%s: %v (field %q), want InvalidArgument on %s", tt.name, err, api.FieldOf(err), tt.field)
		}
	}
	if list, err := h.client.ListJobs(h.ctx, &jobpb.ListJobsRequest{}); err != nil || len(list.GetJobs()) != 0 {
		t.Fatalf("bad input created jobs: %v, %v", list, err)
	}
}

func TestListJobsPaging(t *testing.T) {
	h := start(t)
	var ids []string
	for i := range 5 {
		ids = append(ids, h.submit(&jobpb.JobSpec{Name: "j", Script: "true", Queue: []string{"a", "b"}[i%2]}, "").GetId())
	}
	var got []string
	tok := ""
	for page := 0; ; page++ {
		resp, err := h.client.ListJobs(h.ctx, &jobpb.ListJobsRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range resp.GetJobs() {
			got = append(got, j.GetId())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("pages newest first = %v, want %v", got, want)
	}
	resp, err := h.client.ListJobs(h.ctx, &jobpb.ListJobsRequest{PageSize: 2, OldestFirst: true, Queue: "a"})
	if err != nil || len(resp.GetJobs()) != 2 || resp.GetJobs()[0].GetId() != ids[0] || resp.GetJobs()[1].GetId() != ids[2] {
		t.Fatalf("oldest first in queue a = %v, %v", resp, err)
	}
	_, err = h.client.ListJobs(h.ctx, &jobpb.ListJobsRequest{PageToken: resp.GetNextPageToken()})
	if status.Code(err) != codes.InvalidArgument || api.FieldOf(err) != "page_token" {
		t.Fatalf("token of the other order = %v", err)
	}
}

func TestSecretsReachOnlyTheAgent(t *testing.T) {
	h := start(t)
	const value = "s3cr3t-value-xyz"
	sec, err := h.client.SetSecret(h.ctx, &jobpb.SetSecretRequest{Name: "prod/db", Value: value})
	if err != nil || sec.GetName() != "prod/db" {
		t.Fatalf("SetSecret() = %v, %v", sec, err)
	}
	list, err := h.client.ListSecrets(h.ctx, &jobpb.ListSecretsRequest{})
	if err != nil || len(list.GetSecrets()) != 1 || strings.Contains(list.String(), value) {
		t.Fatalf("ListSecrets() = %v, %v", list, err)
	}
	w, agent := h.connect("w1", 1)
	job := h.submit(&jobpb.JobSpec{Name: "deploy", Script: "deploy", Secrets: map[string]string{"DB_PASSWORD": "prod/db"}}, "")
	as := h.assignment(agent)
	if as.Secrets["DB_PASSWORD"] != value {
		t.Fatalf("assignment secrets = %v", as.Secrets)
	}
	h.run(w, as)
	h.finish(w, as, 0)
	all, err := h.store.ReadAll(h.ctx, 1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if bytes.Contains(e.Payload, []byte(value)) {
			t.Fatalf("event %s at %d holds the secret value", e.Type, e.Position)
		}
	}
	got, err := h.client.GetJob(h.ctx, &jobpb.GetJobRequest{JobId: job.GetId()})
	if err != nil || strings.Contains(got.String(), value) || got.GetSpec().GetSecrets()["DB_PASSWORD"] != "prod/db" {
		t.Fatalf("GetJob() = %v, %v", got, err)
	}
	if _, err := h.client.DeleteSecret(h.ctx, &jobpb.DeleteSecretRequest{Name: "prod/db"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.DeleteSecret(h.ctx, &jobpb.DeleteSecretRequest{Name: "prod/db"}); status.Code(err) != codes.NotFound {
		t.Fatalf("DeleteSecret(twice) = %v, want NotFound", err)
	}
	// A job naming a deleted secret fails to start, saying which.
	job = h.submit(&jobpb.JobSpec{Name: "deploy", Script: "deploy", Secrets: map[string]string{"DB_PASSWORD": "prod/db"}}, "")
	e := h.waitEvent(0, domain.TypeJobFailed, domain.JobStream(job.GetId()))
	if !bytes.Contains(e.Payload, []byte("prod/db")) {
		t.Fatalf("job.failed does not name the missing secret: %q", e.Payload)
	}
}

func TestWorkersAndDrain(t *testing.T) {
	h := start(t)
	w, _ := h.connect("w1", 2)
	if err := h.core.Heartbeat(w, core.Telemetry{CPUPercent: 42.5, MemoryUsedBytes: 3 << 30, MemoryTotal: 8 << 30, FreeSlots: 2}); err != nil {
		t.Fatal(err)
	}
	list, err := h.client.ListWorkers(h.ctx, &jobpb.ListWorkersRequest{})
	if err != nil || len(list.GetWorkers()) != 1 {
		t.Fatalf("ListWorkers() = %v, %v", list, err)
	}
	wk := list.GetWorkers()[0]
	if wk.GetId() != w || !wk.GetConnected() || wk.GetTelemetry().GetCpuPercent() != 42.5 || wk.GetTelemetry().GetMemoryUsedBytes() != 3<<30 ||
		wk.GetStatus() != jobpb.WorkerStatus_WORKER_STATUS_ONLINE || wk.GetCapacity().GetSlots() != 2 {
		t.Fatalf("worker = %v", wk)
	}
	got, err := h.client.DrainWorker(h.ctx, &jobpb.DrainWorkerRequest{WorkerId: w})
	if err != nil || !got.GetDraining() {
		t.Fatalf("DrainWorker() = %v, %v", got, err)
	}
	if _, err := h.client.DrainWorker(h.ctx, &jobpb.DrainWorkerRequest{WorkerId: "w-nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("DrainWorker(unknown) = %v, want NotFound", err)
	}
}

func TestWatchEventsFromPosition(t *testing.T) {
	h := start(t)
	job := h.submit(&jobpb.JobSpec{Name: "e", Script: "true"}, "")
	stream, err := h.client.WatchEvents(h.ctx, &jobpb.WatchEventsRequest{FromPosition: 1, Stream: domain.JobStream(job.GetId())})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stream.Recv()
	if err != nil || e.GetType() != domain.TypeJobSubmitted || e.GetPosition() != 1 || e.GetHash() == "" {
		t.Fatalf("first event = %v, %v", e, err)
	}
	if _, err := h.client.CancelJob(h.ctx, &jobpb.CancelJobRequest{JobId: job.GetId()}); err != nil {
		t.Fatal(err)
	}
	for e.GetType() != domain.TypeJobCancelled && err == nil {
		e, err = stream.Recv() // job.parked may come first
	}
	if err != nil || !strings.Contains(e.GetPayloadJson(), `"by":"anonymous"`) {
		t.Fatalf("live event = %v, %v", e, err)
	}
}

// authFunc is an Authenticator from a function.
type authFunc func(op, cred string) (api.Caller, error)

func (f authFunc) Authenticate(_ context.Context, op, cred string) (api.Caller, error) {
	return f(op, cred)
}

func TestAuthenticatorDerivesTheCaller(t *testing.T) {
	var ops []string
	h := start(t, harnessOptions{auth: authFunc(func(op, cred string) (api.Caller, error) {
		ops = append(ops, op)
		switch cred {
		case "alice-token":
			return api.Caller{Name: "alice", Role: "operator"}, nil
		case "":
			return api.Caller{}, fmt.Errorf("no token: %w", api.ErrUnauthenticated)
		}
		return api.Caller{}, fmt.Errorf("token not valid: %w", api.ErrPermissionDenied)
	})})
	spec := &jobpb.JobSpec{Name: "x", Script: "true"}
	_, err := h.client.SubmitJobs(h.ctx, &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{Spec: spec}}})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("SubmitJobs(no token) = %v, want Unauthenticated", err)
	}
	ctx := metadata.AppendToOutgoingContext(h.ctx, "authorization", "Bearer alice-token")
	resp, err := h.client.SubmitJobs(ctx, &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{{Spec: spec}}})
	if err != nil || resp.GetResults()[0].GetJob().GetSubmitter() != "alice" {
		t.Fatalf("SubmitJobs(alice) = %v, %v", resp, err)
	}
	ctx = metadata.AppendToOutgoingContext(h.ctx, "authorization", "Bearer mallory")
	if _, err := h.client.ListJobs(ctx, &jobpb.ListJobsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ListJobs(bad token) = %v, want PermissionDenied", err)
	}
	if strings.Join(ops, ",") != "SubmitJobs,SubmitJobs,ListJobs" {
		t.Fatalf("ops = %v", ops)
	}
}

// Shutdown ends open streams, so the gRPC server can stop gracefully.
func TestShutdownEndsStreams(t *testing.T) {
	h := start(t)
	job := h.submit(&jobpb.JobSpec{Name: "s", Script: "true"}, "")
	events, err := h.client.WatchEvents(h.ctx, &jobpb.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	logs := h.watchLog(&jobpb.WatchLogRequest{JobId: job.GetId(), Follow: true})
	req, _ := http.NewRequestWithContext(h.ctx, "GET", h.http.URL+"/api/v1/events", nil)
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	h.svc.Shutdown()
	if _, err := events.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("WatchEvents after Shutdown = %v, want Unavailable", err)
	}
	if r := h.logResult(logs); status.Code(r.err) != codes.Unavailable {
		t.Fatalf("WatchLog after Shutdown = %v, want Unavailable", r.err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || strings.Contains(string(b), "event: error") {
		t.Fatalf("SSE after Shutdown = %q, %v; want a plain close", b, err)
	}
	// Unary calls still work.
	if _, err := h.client.GetJob(h.ctx, &jobpb.GetJobRequest{JobId: job.GetId()}); err != nil {
		t.Fatal(err)
	}
}

// Server reflection lists the JobService, as grpcurl -plaintext ADDR list does.
func TestReflectionListsJobService(t *testing.T) {
	h := start(t)
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, "hodei.api.v1.JobService") {
		t.Fatalf("reflection lists %v", names)
	}
	// The file descriptor is there too, so grpcurl can describe and call it.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: "hodei.api.v1.JobService"}}); err != nil {
		t.Fatal(err)
	}
	if resp, err = stream.Recv(); err != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("file containing JobService = %v, %v", resp, err)
	}
	_ = stream.CloseSend()
}
