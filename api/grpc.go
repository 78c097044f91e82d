package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/projections"
)

// Paging of ListJobs.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// grpcServer implements jobpb.JobServiceServer. REST handlers call the same
// methods.
type grpcServer struct {
	jobpb.UnimplementedJobServiceServer
	s *Service
}

// fail translates err for the client and logs internal errors.
func (g *grpcServer) fail(op string, err error) error {
	st := toStatus(err)
	if code, _ := classify(err); code == codes.Internal {
		g.s.log.Error("api: internal error", "op", op, "err", err)
	}
	return st
}

// SubmitJobs implements jobpb.JobServiceServer.
func (g *grpcServer) SubmitJobs(ctx context.Context, req *jobpb.SubmitJobsRequest) (*jobpb.SubmitJobsResponse, error) {
	caller, err := g.s.caller(ctx, "SubmitJobs")
	if err != nil {
		return nil, g.fail("SubmitJobs", err)
	}
	items, err := parseSubmit(req)
	if err != nil {
		return nil, g.fail("SubmitJobs", err)
	}
	results, pos, err := g.s.submit(ctx, caller, items)
	if err != nil {
		return nil, g.fail("SubmitJobs", err)
	}
	return &jobpb.SubmitJobsResponse{Results: results, Position: pos}, nil
}

// GetJob implements jobpb.JobServiceServer.
func (g *grpcServer) GetJob(ctx context.Context, req *jobpb.GetJobRequest) (*jobpb.Job, error) {
	if _, err := g.s.caller(ctx, "GetJob"); err != nil {
		return nil, g.fail("GetJob", err)
	}
	if err := domain.ValidateID(req.GetJobId()); err != nil {
		return nil, g.fail("GetJob", badInput("job_id", "%v", err))
	}
	j, err := g.s.core.Job(ctx, req.GetJobId())
	if err != nil {
		return nil, g.fail("GetJob", err)
	}
	return jobToPB(j), nil
}

// pageToken is ListJobs' cursor: the last seq of the page and the order.
func encodePageToken(seq uint64, oldestFirst bool) string {
	order := "new"
	if oldestFirst {
		order = "old"
	}
	return keyIDs.EncodeToString(fmt.Appendf(nil, "v1:%s:%d", order, seq))
}

func decodePageToken(tok string, oldestFirst bool) (uint64, error) {
	raw, err := keyIDs.DecodeString(tok)
	var order string
	var seq uint64
	if err == nil {
		_, err = fmt.Sscanf(string(raw), "v1:%3s:%d", &order, &seq)
	}
	if err != nil || seq == 0 || (order != "new" && order != "old") {
		return 0, badInput("page_token", "not a token from a previous page")
	}
	if (order == "old") != oldestFirst {
		return 0, badInput("page_token", "comes from a list in the other order")
	}
	return seq, nil
}

// ListJobs implements jobpb.JobServiceServer.
func (g *grpcServer) ListJobs(ctx context.Context, req *jobpb.ListJobsRequest) (*jobpb.ListJobsResponse, error) {
	if _, err := g.s.caller(ctx, "ListJobs"); err != nil {
		return nil, g.fail("ListJobs", err)
	}
	f, err := listFilter(req)
	if err != nil {
		return nil, g.fail("ListJobs", err)
	}
	pos := g.s.core.Position() // the list reflects at least this
	views, next := g.s.core.Jobs().List(f)
	out := &jobpb.ListJobsResponse{Jobs: make([]*jobpb.JobSummary, len(views)), Position: pos}
	for i, v := range views {
		out.Jobs[i] = summaryToPB(v)
	}
	if next != 0 {
		out.NextPageToken = encodePageToken(next, req.GetOldestFirst())
	}
	return out, nil
}

func listFilter(req *jobpb.ListJobsRequest) (projections.JobFilter, error) {
	f := projections.JobFilter{Queue: req.GetQueue(), Worker: req.GetWorker(), Labels: req.GetLabels(),
		Descending: !req.GetOldestFirst(), Limit: int(req.GetPageSize())}
	for i, st := range req.GetStatuses() {
		ds, ok := statusFromPB[st]
		if !ok {
			return f, badInput(fmt.Sprintf("statuses[%d]", i), "%v is not a job status", st)
		}
		f.Statuses = append(f.Statuses, ds)
	}
	switch {
	case f.Limit < 0:
		return f, badInput("page_size", "%d is negative", f.Limit)
	case f.Limit == 0:
		f.Limit = DefaultPageSize
	case f.Limit > MaxPageSize:
		f.Limit = MaxPageSize
	}
	if len(f.Labels) > 0 {
		// The domain owns label syntax: check the filter as job labels.
		spec := domain.JobSpec{Name: "x", Script: "x", Labels: f.Labels}
		var fe *domain.FieldError
		if err := spec.Validate(); errors.As(err, &fe) {
			return f, badInput(fe.Field, "%s", fe.Reason)
		}
	}
	for _, v := range []struct{ field, value string }{{"queue", f.Queue}, {"worker", f.Worker}} {
		if len(v.value) > 256 {
			return f, badInput(v.field, "%d bytes, at most 256", len(v.value))
		}
	}
	if tok := req.GetPageToken(); tok != "" {
		seq, err := decodePageToken(tok, req.GetOldestFirst())
		if err != nil {
			return f, err
		}
		f.After = seq
	}
	return f, nil
}

// CancelJob implements jobpb.JobServiceServer.
func (g *grpcServer) CancelJob(ctx context.Context, req *jobpb.CancelJobRequest) (*jobpb.Job, error) {
	caller, err := g.s.caller(ctx, "CancelJob")
	if err != nil {
		return nil, g.fail("CancelJob", err)
	}
	if err := domain.ValidateID(req.GetJobId()); err != nil {
		return nil, g.fail("CancelJob", badInput("job_id", "%v", err))
	}
	j, err := g.s.core.Cancel(ctx, req.GetJobId(), caller.Name, req.GetReason())
	if err != nil {
		return nil, g.fail("CancelJob", commandFieldError(err))
	}
	if err := g.s.settle(ctx); err != nil {
		return nil, g.fail("CancelJob", err)
	}
	return jobToPB(j), nil
}

// commandFieldError renames a command's bad field ("cancel.reason") to the
// request's ("reason").
func commandFieldError(err error) error {
	var fe *domain.FieldError
	if errors.As(err, &fe) && errors.Is(err, domain.ErrInvalidCommand) {
		field := fe.Field
		if _, rest, ok := strings.Cut(field, "."); ok {
			field = rest
		}
		return badInput(field, "%s", fe.Reason)
	}
	return err
}

// settle waits until the read models reflect everything committed so far,
// so the caller's next read sees its write.
func (s *Service) settle(ctx context.Context) error {
	head, err := s.core.Store().Head(ctx)
	if err != nil {
		return err
	}
	return s.core.WaitFor(ctx, head.Position)
}

// ListJobEvents implements jobpb.JobServiceServer.
func (g *grpcServer) ListJobEvents(ctx context.Context, req *jobpb.ListJobEventsRequest) (*jobpb.ListJobEventsResponse, error) {
	if _, err := g.s.caller(ctx, "ListJobEvents"); err != nil {
		return nil, g.fail("ListJobEvents", err)
	}
	evs, err := g.s.timeline(ctx, req.GetJobId())
	if err != nil {
		return nil, g.fail("ListJobEvents", err)
	}
	out := &jobpb.ListJobEventsResponse{Events: make([]*jobpb.Event, len(evs))}
	for i := range evs {
		out.Events[i] = eventToPB(g.s.core.Codec(), &evs[i])
	}
	return out, nil
}

// WatchLog implements jobpb.JobServiceServer.
func (g *grpcServer) WatchLog(req *jobpb.WatchLogRequest, stream jobpb.JobService_WatchLogServer) error {
	ctx := stream.Context()
	if _, err := g.s.caller(ctx, "WatchLog"); err != nil {
		return g.fail("WatchLog", err)
	}
	err := g.s.watchLog(ctx, logRequest{JobID: req.GetJobId(), Attempt: req.GetAttempt(), Offset: req.GetOffset(), Follow: req.GetFollow()},
		func(c logChunk) error {
			return stream.Send(&jobpb.LogChunk{Attempt: c.Attempt, Offset: c.Offset, Data: c.Data})
		})
	if err != nil {
		return g.fail("WatchLog", err)
	}
	return nil
}

// WatchEvents implements jobpb.JobServiceServer.
func (g *grpcServer) WatchEvents(req *jobpb.WatchEventsRequest, stream jobpb.JobService_WatchEventsServer) error {
	ctx := stream.Context()
	if _, err := g.s.caller(ctx, "WatchEvents"); err != nil {
		return g.fail("WatchEvents", err)
	}
	f, err := parseEventFilter(req.GetFromPosition(), req.GetStream(), req.GetTypes())
	if err != nil {
		return g.fail("WatchEvents", err)
	}
	err = g.s.watchEvents(ctx, f, func(e *eventstore.Envelope) error {
		return stream.Send(eventToPB(g.s.core.Codec(), e))
	})
	return g.fail("WatchEvents", err)
}

// ListWorkers implements jobpb.JobServiceServer.
func (g *grpcServer) ListWorkers(ctx context.Context, _ *jobpb.ListWorkersRequest) (*jobpb.ListWorkersResponse, error) {
	if _, err := g.s.caller(ctx, "ListWorkers"); err != nil {
		return nil, g.fail("ListWorkers", err)
	}
	ws := g.s.core.ListWorkers()
	out := &jobpb.ListWorkersResponse{Workers: make([]*jobpb.Worker, len(ws))}
	for i, w := range ws {
		out.Workers[i] = workerToPB(w)
	}
	return out, nil
}

// DrainWorker implements jobpb.JobServiceServer.
func (g *grpcServer) DrainWorker(ctx context.Context, req *jobpb.DrainWorkerRequest) (*jobpb.Worker, error) {
	caller, err := g.s.caller(ctx, "DrainWorker")
	if err != nil {
		return nil, g.fail("DrainWorker", err)
	}
	id := req.GetWorkerId()
	if err := domain.ValidateID(id); err != nil {
		return nil, g.fail("DrainWorker", badInput("worker_id", "%v", err))
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "drained by " + caller.Name
	}
	if _, err := g.s.core.DrainWorker(ctx, id, caller.Name, reason); err != nil {
		return nil, g.fail("DrainWorker", commandFieldError(err))
	}
	if err := g.s.settle(ctx); err != nil {
		return nil, g.fail("DrainWorker", err)
	}
	for _, w := range g.s.core.ListWorkers() {
		if w.ID == id {
			return workerToPB(w), nil
		}
	}
	return nil, g.fail("DrainWorker", fmt.Errorf("drain worker %s: %w", id, domain.ErrNotFound))
}

// SetSecret implements jobpb.JobServiceServer.
func (g *grpcServer) SetSecret(ctx context.Context, req *jobpb.SetSecretRequest) (*jobpb.Secret, error) {
	if _, err := g.s.caller(ctx, "SetSecret"); err != nil {
		return nil, g.fail("SetSecret", err)
	}
	if g.s.secrets == nil {
		return nil, g.fail("SetSecret", errNoSecretStore)
	}
	info, _, err := g.s.secrets.Set(ctx, req.GetName(), req.GetValue())
	if err != nil {
		return nil, g.fail("SetSecret", err)
	}
	return secretToPB(info), nil
}

// ListSecrets implements jobpb.JobServiceServer.
func (g *grpcServer) ListSecrets(ctx context.Context, _ *jobpb.ListSecretsRequest) (*jobpb.ListSecretsResponse, error) {
	if _, err := g.s.caller(ctx, "ListSecrets"); err != nil {
		return nil, g.fail("ListSecrets", err)
	}
	if g.s.secrets == nil {
		return nil, g.fail("ListSecrets", errNoSecretStore)
	}
	list, err := g.s.secrets.List(ctx)
	if err != nil {
		return nil, g.fail("ListSecrets", err)
	}
	out := &jobpb.ListSecretsResponse{Secrets: make([]*jobpb.Secret, len(list))}
	for i, info := range list {
		out.Secrets[i] = secretToPB(info)
	}
	return out, nil
}

// DeleteSecret implements jobpb.JobServiceServer.
func (g *grpcServer) DeleteSecret(ctx context.Context, req *jobpb.DeleteSecretRequest) (*jobpb.DeleteSecretResponse, error) {
	if _, err := g.s.caller(ctx, "DeleteSecret"); err != nil {
		return nil, g.fail("DeleteSecret", err)
	}
	if g.s.secrets == nil {
		return nil, g.fail("DeleteSecret", errNoSecretStore)
	}
	if err := g.s.secrets.Delete(ctx, req.GetName()); err != nil {
		return nil, g.fail("DeleteSecret", err)
	}
	return &jobpb.DeleteSecretResponse{}, nil
}
