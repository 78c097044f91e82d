package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
)

// HTTPHandler returns the REST API and the web UI:
//
//	POST   /api/v1/jobs                  submit one job (SubmitJob); 201, or 200 for an existing key
//	POST   /api/v1/jobs/batch            submit many (SubmitJobsRequest)
//	GET    /api/v1/jobs                  list: status, queue, worker, label=k=v, page_size, page_token, order=newest|oldest
//	GET    /api/v1/jobs/{id}             one job with its spec and attempts
//	POST   /api/v1/jobs/{id}/cancel      cancel ({"reason": …} optional)
//	GET    /api/v1/jobs/{id}/events      the job's timeline
//	GET    /api/v1/jobs/{id}/log         the stored log as text; attempt, offset;
//	                                     follow=1: SSE "log" messages (LogChunk), then "end"
//	GET    /api/v1/events                SSE "event" messages (Event): from, stream, type
//	GET    /api/v1/workers               workers with live telemetry
//	POST   /api/v1/workers/{id}/drain    drain ({"reason": …} optional)
//	GET    /api/v1/providers             providers: live instances, failures, next retry
//	GET    /api/v1/secrets               secret names
//	PUT    /api/v1/secrets/{name...}     set ({"value": …})
//	DELETE /api/v1/secrets/{name...}     delete
//	/ui/...                              the web UI (Options.UI); / redirects to /ui/
//
// Errors are ErrorBody with the status httpStatus gives. Mount it at "/".
func (s *Service) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(pattern, s.rest(h))
	}
	route("POST /api/v1/jobs", s.restSubmit)
	route("POST /api/v1/jobs/batch", s.restSubmitBatch)
	route("GET /api/v1/jobs", s.restListJobs)
	route("GET /api/v1/jobs/{id}", s.restGetJob)
	route("POST /api/v1/jobs/{id}/cancel", s.restCancel)
	route("GET /api/v1/jobs/{id}/events", s.restJobEvents)
	route("GET /api/v1/jobs/{id}/log", s.restLog)
	route("GET /api/v1/events", s.restEvents)
	route("GET /api/v1/workers", s.restWorkers)
	route("POST /api/v1/workers/{id}/drain", s.restDrain)
	route("GET /api/v1/providers", s.restProviders)
	route("GET /api/v1/secrets", s.restListSecrets)
	route("PUT /api/v1/secrets/{name...}", s.restSetSecret)
	route("DELETE /api/v1/secrets/{name...}", s.restDeleteSecret)
	route("/api/", func(_ http.ResponseWriter, r *http.Request) error {
		return status.Errorf(codes.NotFound, "no API route %s %s: see /api/v1/jobs, /api/v1/workers, /api/v1/providers, /api/v1/events, /api/v1/secrets",
			r.Method, r.URL.Path)
	})
	if s.opts.UI != nil {
		mux.Handle("/ui/", s.opts.UI)
		mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	}
	return mux
}

// rest adapts a handler that returns an error: it puts the request's
// credential where Service.caller finds it and writes errors as ErrorBody.
func (s *Service) rest(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := bearer(r.Header.Get("Authorization"))
		if cred == "" {
			cred = r.URL.Query().Get("access_token") // EventSource cannot set headers
		}
		r = r.WithContext(context.WithValue(r.Context(), credentialKey{}, cred))
		w.Header().Set("Cache-Control", "no-store")
		if err := h(w, r); err != nil {
			s.writeError(w, err, nil)
		}
	})
}

// writeError writes err as an ErrorBody; rename, if set, rewrites the
// field name (and its mentions in the message).
func (s *Service) writeError(w http.ResponseWriter, err error, rename func(string) string) {
	code, field := classify(err)
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	if code == codes.Internal {
		if _, ok := status.FromError(err); !ok {
			s.log.Error("api: internal error", "err", err)
		}
	}
	if rename != nil && field != "" {
		nf := rename(field)
		msg = strings.ReplaceAll(msg, field, nf)
		field = nf
	}
	writeJSON(w, httpStatus(code, field), ErrorBody{Error: msg, Field: field, Code: codeName(code)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// query checks that r's query has only the allowed parameters.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q := r.URL.Query()
	for k := range q {
		if k == "access_token" {
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return nil, badInput(k, "unknown query parameter (want one of %s)", strings.Join(allowed, ", "))
		}
	}
	return q, nil
}

func parseUint(q url.Values, name string, bits int) (uint64, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, bits)
	if err != nil {
		return 0, badInput(name, "%q is not a non-negative integer of %d bits", v, bits)
	}
	return n, nil
}

func parseBool(q url.Values, name string) (bool, error) {
	switch v := q.Get(name); v {
	case "", "0", "false", "no":
		return false, nil
	case "1", "true", "yes":
		return true, nil
	default:
		return false, badInput(name, "%q: want 1 or 0", v)
	}
}

// list splits repeated and comma-separated values.
func list(q url.Values, name string) []string {
	var out []string
	for _, v := range q[name] {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// parseSubmitBody decodes a REST submit body: one SubmitJob, or (batch) a
// SubmitJobsRequest.
func parseSubmitBody(body []byte, batch bool) (*jobpb.SubmitJobsRequest, error) {
	var jobs []SubmitJob
	if batch {
		var req SubmitJobsRequest
		if err := decodeJSON(body, &req); err != nil {
			return nil, err
		}
		jobs = req.Jobs
	} else {
		var one SubmitJob
		if err := decodeJSON(body, &one); err != nil {
			return nil, renameField(err, func(f string) string { return "jobs[0]." + f })
		}
		jobs = []SubmitJob{one}
	}
	out := &jobpb.SubmitJobsRequest{Jobs: make([]*jobpb.SubmitJob, len(jobs))}
	for i, j := range jobs {
		spec, err := j.Spec.toPB(fmt.Sprintf("jobs[%d].spec", i))
		if err != nil {
			return nil, err
		}
		out.Jobs[i] = &jobpb.SubmitJob{IdempotencyKey: j.IdempotencyKey, Spec: spec}
	}
	return out, nil
}

// renameField rewrites the field of an *InputError other than "body".
func renameField(err error, fn func(string) string) error {
	var in *InputError
	if errors.As(err, &in) && in.Field != "body" {
		return &InputError{Field: fn(in.Field), Reason: in.Reason}
	}
	return err
}

// singleField turns "jobs[0].spec.x" into "spec.x" for single submits.
func singleField(f string) string { return strings.TrimPrefix(f, "jobs[0].") }

func (s *Service) restSubmit(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, maxBody)
	if err != nil {
		return err
	}
	req, err := parseSubmitBody(body, false)
	if err == nil && req.Jobs[0].IdempotencyKey == "" {
		req.Jobs[0].IdempotencyKey = r.Header.Get("Idempotency-Key")
	}
	var resp *jobpb.SubmitJobsResponse
	if err == nil {
		resp, err = s.rpc.SubmitJobs(r.Context(), req)
	}
	if err != nil {
		s.writeError(w, err, singleField)
		return nil
	}
	res := resp.GetResults()[0]
	code := http.StatusOK
	if res.GetCreated() {
		code = http.StatusCreated
	}
	w.Header().Set("Location", "/api/v1/jobs/"+res.GetJob().GetId())
	writeJSON(w, code, SubmitJobResult{Job: JobFromPB(res.GetJob()), Created: res.GetCreated()})
	return nil
}

func (s *Service) restSubmitBatch(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, maxBatchBody)
	if err != nil {
		return err
	}
	req, err := parseSubmitBody(body, true)
	if err != nil {
		return err
	}
	resp, err := s.rpc.SubmitJobs(r.Context(), req)
	if err != nil {
		return err
	}
	out := SubmitJobsResponse{Results: make([]SubmitJobResult, len(resp.GetResults())), Position: resp.GetPosition()}
	created := false
	for i, res := range resp.GetResults() {
		out.Results[i] = SubmitJobResult{Job: JobFromPB(res.GetJob()), Created: res.GetCreated()}
		created = created || res.GetCreated()
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, out)
	return nil
}

func (s *Service) restListJobs(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "status", "queue", "worker", "label", "page_size", "page_token", "order")
	if err != nil {
		return err
	}
	req := &jobpb.ListJobsRequest{Queue: q.Get("queue"), Worker: q.Get("worker"), PageToken: q.Get("page_token")}
	for _, name := range list(q, "status") {
		st, ok := ParseStatus(name)
		if !ok {
			return badInput("status", "%q is not a job status (queued, scheduled, accepted, running, succeeded, failed, cancelled, timed_out)", name)
		}
		req.Statuses = append(req.Statuses, st)
	}
	for _, kv := range list(q, "label") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return badInput("label", "%q: want key=value", kv)
		}
		if req.Labels == nil {
			req.Labels = map[string]string{}
		}
		req.Labels[k] = v
	}
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			return badInput("page_size", "%q is not an integer", v)
		}
		req.PageSize = int32(n)
	}
	switch q.Get("order") {
	case "", "newest":
	case "oldest":
		req.OldestFirst = true
	default:
		return badInput("order", "%q: want newest or oldest", q.Get("order"))
	}
	resp, err := s.rpc.ListJobs(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ListJobsFromPB(resp))
	return nil
}

func (s *Service) restGetJob(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	j, err := s.rpc.GetJob(r.Context(), &jobpb.GetJobRequest{JobId: r.PathValue("id")})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, JobFromPB(j))
	return nil
}

// reasonBody is the optional body of cancel and drain.
type reasonBody struct {
	Reason string `json:"reason"`
}

func readReason(w http.ResponseWriter, r *http.Request) (string, error) {
	body, err := readBody(w, r, 64<<10)
	if err != nil || len(body) == 0 {
		return "", err
	}
	var rb reasonBody
	if err := decodeJSON(body, &rb); err != nil {
		return "", err
	}
	return rb.Reason, nil
}

func (s *Service) restCancel(w http.ResponseWriter, r *http.Request) error {
	reason, err := readReason(w, r)
	if err != nil {
		return err
	}
	j, err := s.rpc.CancelJob(r.Context(), &jobpb.CancelJobRequest{JobId: r.PathValue("id"), Reason: reason})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, JobFromPB(j))
	return nil
}

func (s *Service) restJobEvents(w http.ResponseWriter, r *http.Request) error {
	resp, err := s.rpc.ListJobEvents(r.Context(), &jobpb.ListJobEventsRequest{JobId: r.PathValue("id")})
	if err != nil {
		return err
	}
	out := struct {
		Events []Event `json:"events"`
	}{Events: make([]Event, len(resp.GetEvents()))}
	for i, e := range resp.GetEvents() {
		out.Events[i] = EventFromPB(e)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) restLog(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.caller(r.Context(), "WatchLog"); err != nil {
		return err
	}
	q, err := query(r, "attempt", "offset", "follow")
	if err != nil {
		return err
	}
	attempt, err := parseUint(q, "attempt", 32)
	if err != nil {
		return err
	}
	offset, err := parseUint(q, "offset", 64)
	if err != nil {
		return err
	}
	follow, err := parseBool(q, "follow")
	if err != nil {
		return err
	}
	req := logRequest{JobID: r.PathValue("id"), Attempt: uint32(attempt), Offset: offset, Follow: follow}
	if !follow {
		started := false
		err := s.watchLog(r.Context(), req, func(c logChunk) error {
			if !started {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.Header().Set("X-Content-Type-Options", "nosniff")
				started = true
			}
			_, err := w.Write(c.Data)
			return err
		})
		if err != nil && !started {
			return err
		}
		if !started {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusOK)
		}
		return nil
	}
	// Resume after a reconnect: Last-Event-ID is "<attempt>:<offset>".
	if a, o, ok := parseLogID(r.Header.Get("Last-Event-ID")); ok {
		if req.Attempt == 0 {
			req.From, req.Offset = a, o
		} else if a == req.Attempt {
			req.Offset = o
		}
	}
	// Check the job exists before answering 200.
	if err := domain.ValidateID(req.JobID); err != nil {
		return badInput("job_id", "%v", err)
	}
	if _, err := s.core.Job(r.Context(), req.JobID); err != nil {
		return err
	}
	sse, err := startSSE(w)
	if err != nil {
		return err
	}
	req.Idle = sse.comment
	u := &utf8Splitter{}
	last := req.Attempt
	err = s.watchLog(r.Context(), req, func(c logChunk) error {
		last = c.Attempt
		for _, out := range u.add(c) {
			if err := sse.send("log", fmt.Sprintf("%d:%d", out.Attempt, out.Offset+uint64(len(out.Text))), out); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		if out, ok := u.flush(); ok {
			err = sse.send("log", fmt.Sprintf("%d:%d", out.Attempt, out.Offset+uint64(len(out.Text))), out)
		}
	}
	if err != nil {
		if r.Context().Err() == nil && err != errShuttingDown { // on shutdown: close, the client reconnects
			code, field := classify(err)
			_ = sse.send("error", "", ErrorBody{Error: err.Error(), Field: field, Code: codeName(code)})
		}
		return nil
	}
	end := struct {
		Attempt  uint32 `json:"attempt"`
		Status   string `json:"status,omitempty"`
		ExitCode int32  `json:"exit_code"`
	}{Attempt: last, ExitCode: -1}
	if j, err := s.rpc.GetJob(r.Context(), &jobpb.GetJobRequest{JobId: req.JobID}); err == nil {
		end.Status, end.ExitCode = StatusName(j.GetStatus()), j.GetExitCode()
	}
	_ = sse.send("end", "", end)
	return nil
}

func parseLogID(id string) (uint32, uint64, bool) {
	a, o, ok := strings.Cut(id, ":")
	if !ok {
		return 0, 0, false
	}
	an, err1 := strconv.ParseUint(a, 10, 32)
	on, err2 := strconv.ParseUint(o, 10, 64)
	if err1 != nil || err2 != nil || an == 0 {
		return 0, 0, false
	}
	return uint32(an), on, true
}

// utf8Splitter holds back an incomplete UTF-8 sequence at the end of a
// chunk until the next chunk completes it, so SSE text never splits a
// character.
type utf8Splitter struct {
	attempt uint32
	off     uint64 // offset of held[0]
	held    []byte
}

func (u *utf8Splitter) add(c logChunk) []LogChunk {
	var out []LogChunk
	if len(u.held) > 0 && (u.attempt != c.Attempt || u.off+uint64(len(u.held)) != c.Offset) {
		if f, ok := u.flush(); ok {
			out = append(out, f)
		}
	}
	if len(u.held) == 0 {
		u.attempt, u.off = c.Attempt, c.Offset
	}
	buf := append(u.held, c.Data...)
	cut := len(buf)
	// Look back at most 3 bytes for the start of an unfinished sequence.
	for i := len(buf) - 1; i >= 0 && i >= len(buf)-3; i-- {
		if b := buf[i]; b&0xC0 != 0x80 { // a start byte (or ASCII)
			if b >= 0xC0 && !utf8.FullRune(buf[i:]) {
				cut = i
			}
			break
		}
	}
	if cut > 0 {
		out = append(out, LogChunk{Attempt: u.attempt, Offset: u.off, Text: string(buf[:cut])})
	}
	u.off += uint64(cut)
	u.held = append([]byte(nil), buf[cut:]...)
	return out
}

func (u *utf8Splitter) flush() (LogChunk, bool) {
	if len(u.held) == 0 {
		return LogChunk{}, false
	}
	c := LogChunk{Attempt: u.attempt, Offset: u.off, Text: string(u.held)}
	u.off += uint64(len(u.held))
	u.held = nil
	return c, true
}

func (s *Service) restEvents(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.caller(r.Context(), "WatchEvents"); err != nil {
		return err
	}
	q, err := query(r, "from", "stream", "type")
	if err != nil {
		return err
	}
	from, err := parseUint(q, "from", 64)
	if err != nil {
		return err
	}
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		if n, err := strconv.ParseUint(id, 10, 64); err == nil {
			from = n + 1
		}
	}
	f, err := parseEventFilter(from, q.Get("stream"), list(q, "type"))
	if err != nil {
		return err
	}
	sse, err := startSSE(w)
	if err != nil {
		return err
	}
	f.Idle = sse.comment
	codec := s.core.Codec()
	err = s.watchEvents(r.Context(), f, func(e *eventstore.Envelope) error {
		return sse.send("event", strconv.FormatUint(e.Position, 10), EventFromPB(eventToPB(codec, e)))
	})
	if err != nil && r.Context().Err() == nil && err != errShuttingDown {
		code, field := classify(err)
		_ = sse.send("error", "", ErrorBody{Error: err.Error(), Field: field, Code: codeName(code)})
	}
	return nil
}

func (s *Service) restWorkers(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	resp, err := s.rpc.ListWorkers(r.Context(), &jobpb.ListWorkersRequest{})
	if err != nil {
		return err
	}
	out := struct {
		Workers []Worker `json:"workers"`
	}{Workers: make([]Worker, len(resp.GetWorkers()))}
	for i, wk := range resp.GetWorkers() {
		out.Workers[i] = WorkerFromPB(wk)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) restProviders(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	if _, err := s.caller(r.Context(), "ListProviders"); err != nil {
		return err
	}
	if s.opts.Providers == nil {
		return status.Error(codes.NotFound, "no providers are configured (hodei server --providers FILE)")
	}
	writeJSON(w, http.StatusOK, map[string]any{"providers": s.opts.Providers()})
	return nil
}

func (s *Service) restDrain(w http.ResponseWriter, r *http.Request) error {
	reason, err := readReason(w, r)
	if err != nil {
		return err
	}
	wk, err := s.rpc.DrainWorker(r.Context(), &jobpb.DrainWorkerRequest{WorkerId: r.PathValue("id"), Reason: reason})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, WorkerFromPB(wk))
	return nil
}

func (s *Service) restListSecrets(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	resp, err := s.rpc.ListSecrets(r.Context(), &jobpb.ListSecretsRequest{})
	if err != nil {
		return err
	}
	out := struct {
		Secrets []Secret `json:"secrets"`
	}{Secrets: make([]Secret, len(resp.GetSecrets()))}
	for i, sec := range resp.GetSecrets() {
		out.Secrets[i] = SecretFromPB(sec)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) restSetSecret(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, 128<<10)
	if err != nil {
		return err
	}
	var req struct {
		Value string `json:"value"`
	}
	if err := decodeJSON(body, &req); err != nil {
		return err
	}
	sec, err := s.rpc.SetSecret(r.Context(), &jobpb.SetSecretRequest{Name: r.PathValue("name"), Value: req.Value})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, SecretFromPB(sec))
	return nil
}

func (s *Service) restDeleteSecret(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.rpc.DeleteSecret(r.Context(), &jobpb.DeleteSecretRequest{Name: r.PathValue("name")}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sseWriter writes Server-Sent Events. Only the handler's goroutine uses it.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) (*sseWriter, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	// A stream outlives any server-wide WriteTimeout: lift it (where the
	// server supports that).
	_ = s.rc.SetWriteDeadline(time.Time{})
	if err := s.rc.Flush(); err != nil {
		return nil, fmt.Errorf("start event stream: %w", err)
	}
	return s, nil
}

// send writes one message; data is JSON on one line.
func (s *sseWriter) send(event, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	msg := make([]byte, 0, len(b)+64)
	msg = fmt.Appendf(msg, "event: %s\n", event)
	if id != "" {
		msg = fmt.Appendf(msg, "id: %s\n", id)
	}
	msg = fmt.Appendf(msg, "data: %s\n\n", b)
	if _, err := s.w.Write(msg); err != nil {
		return err
	}
	return s.rc.Flush()
}

// comment writes a keepalive comment line.
func (s *sseWriter) comment() error {
	if _, err := s.w.Write([]byte(": keepalive\n\n")); err != nil {
		return err
	}
	return s.rc.Flush()
}
