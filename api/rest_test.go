package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/domain"
)

// do sends a REST request and decodes a JSON answer into out (if not nil).
func (h *harness) do(method, path, body string, out any) (int, api.ErrorBody) {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.ctx, method, h.http.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	var eb api.ErrorBody
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(raw, &eb); err != nil {
			h.t.Fatalf("%s %s: %d with a body that is not an ErrorBody: %q", method, path, resp.StatusCode, raw)
		}
		return resp.StatusCode, eb
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			h.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, eb
}

func TestRESTBadInputNamesTheField(t *testing.T) {
	h := start(t)
	huge := `{"spec":{"name":"x","script":"` + strings.Repeat("x", domain.MaxScriptBytes+1) + `"}}`
	tests := []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"malformed", "POST", "/api/v1/jobs", `{"spec":`, 400, "body"},
		{"syntax", "POST", "/api/v1/jobs", `{"spec":{]}`, 400, "body"},
		{"empty body", "POST", "/api/v1/jobs", ``, 400, "body"},
		{"not an object", "POST", "/api/v1/jobs", `[1,2]`, 400, "body"},
		{"trailing data", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y"}} {}`, 400, "body"},
		{"unknown field", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y"},"priority":3}`, 400, "priority"},
		{"unknown nested field", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","resources":{"cpus":2}}}`, 400, "spec.resources.cpus"},
		{"wrong type", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","resources":{"cpu_millis":"lots"}}}`, 400, "spec.resources.cpu_millis"},
		{"overflow", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","priority":99999999999}}`, 400, "spec.priority"},
		{"absurd cpu", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","resources":{"cpu_millis":1000000000}}}`, 400, "spec.resources.cpu_millis"},
		{"absurd memory", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","resources":{"memory_bytes":9000000000000000}}}`, 400, "spec.resources.memory_bytes"},
		{"absurd slots", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","resources":{"slots":100000}}}`, 400, "spec.resources.slots"},
		{"huge script", "POST", "/api/v1/jobs", huge, 400, "spec.script"},
		{"empty script", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"  "}}`, 400, "spec.script"},
		{"bad selector", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","selector":{"gpu":"yes please"}}}`, 400, "spec.selector[gpu]"},
		{"bad env", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","env":{"HODEI_X":"1"}}}`, 400, "spec.env"},
		{"bad secret ref", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","secrets":{"PW":"bad name"}}}`, 400, "spec.secrets[PW]"},
		{"bad timeout", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","timeout":"forever"}}`, 400, "spec.timeout"},
		{"long timeout", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","timeout":"9999h"}}`, 400, "spec.timeout"},
		{"bad priority", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"y","priority":-1}}`, 400, "spec.priority"},
		{"bad key", "POST", "/api/v1/jobs", `{"idempotency_key":"a\u0000b","spec":{"name":"x","script":"y"}}`, 400, "idempotency_key"},
		{"too large", "POST", "/api/v1/jobs", `{"spec":{"name":"x","script":"` + strings.Repeat("x", 5<<20) + `"}}`, 413, "body"},
		{"batch empty", "POST", "/api/v1/jobs/batch", `{"jobs":[]}`, 400, "jobs"},
		{"batch one bad", "POST", "/api/v1/jobs/batch", `{"jobs":[{"spec":{"name":"a","script":"y"}},{"spec":{"name":"b","script":"y","queue":"no spaces"}}]}`, 400, "jobs[1].spec.queue"},
		{"batch unknown field", "POST", "/api/v1/jobs/batch", `{"jobs":[{"spec":{"name":"a","script":"y"}},{"spec":{"nam":"b"}}]}`, 400, "jobs[1].spec.nam"},
		{"list bad status", "GET", "/api/v1/jobs?status=running,sleeping", "", 400, "status"},
		{"list bad label", "GET", "/api/v1/jobs?label=nokey", "", 400, "label"},
		{"list bad size", "GET", "/api/v1/jobs?page_size=-3", "", 400, "page_size"},
		{"list bad order", "GET", "/api/v1/jobs?order=random", "", 400, "order"},
		{"list bad token", "GET", "/api/v1/jobs?page_token=abc", "", 400, "page_token"},
		{"list unknown param", "GET", "/api/v1/jobs?stauts=running", "", 400, "stauts"},
		{"get bad id", "GET", "/api/v1/jobs/a%20b", "", 400, "job_id"},
		{"log bad attempt", "GET", "/api/v1/jobs/x/log?attempt=-1", "", 400, "attempt"},
		{"log bad follow", "GET", "/api/v1/jobs/x/log?follow=maybe", "", 400, "follow"},
		{"events bad from", "GET", "/api/v1/events?from=x", "", 400, "from"},
		{"events bad stream", "GET", "/api/v1/events?stream=x", "", 400, "stream"},
		{"cancel unknown field", "POST", "/api/v1/jobs/x/cancel", `{"why":"x"}`, 400, "why"},
		{"secret short", "PUT", "/api/v1/secrets/db", `{"value":"12345"}`, 400, "value"},
		{"secret bad name", "PUT", "/api/v1/secrets/a%20b", `{"value":"1234567"}`, 400, "name"},
		{"secret unknown field", "PUT", "/api/v1/secrets/db", `{"val":"1234567"}`, 400, "val"},
	}
	for _, tt := range tests {
		code, eb := h.do(tt.method, tt.path, tt.body, nil)
		if code != tt.status || eb.Field != tt.field || eb.Error == "" {
			t.Errorf("%s: %s %.60s = %d %+v, want %d naming %s", tt.name, tt.method, tt.path, code, eb, tt.status, tt.field)
		}
	}
	var list api.ListJobsResponse
	if code, _ := h.do("GET", "/api/v1/jobs", "", &list); code != 200 || len(list.Jobs) != 0 {
		t.Fatalf("bad input created jobs: %+v", list)
	}
	if code, eb := h.do("GET", "/api/v1/nope", "", nil); code != 404 || eb.Code != "not_found" {
		t.Fatalf("unknown route = %d %+v", code, eb)
	}
	if code, eb := h.do("GET", "/api/v1/jobs/nope", "", nil); code != 404 || eb.Code != "not_found" {
		t.Fatalf("unknown job = %d %+v", code, eb)
	}
}

func TestRESTSubmitFollowAndEvents(t *testing.T) {
	h := start(t)
	w, agent := h.connect("w1", 1)

	// Watch events from the start, over SSE.
	evReq, _ := http.NewRequestWithContext(h.ctx, "GET", h.http.URL+"/api/v1/events?from=1&type=job.submitted,job.succeeded", nil)
	evCtx, stopEvents := context.WithCancel(h.ctx)
	defer stopEvents()
	evResp, err := h.http.Client().Do(evReq.WithContext(evCtx))
	if err != nil || evResp.StatusCode != 200 || evResp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /api/v1/events = %v, %v", evResp, err)
	}
	defer evResp.Body.Close()

	var res api.SubmitJobResult
	body := `{"idempotency_key":"rest-1","spec":{"name":"colours","script":"printf 'é'","timeout":"1m30s","resources":{"memory_bytes":536870912}}}`
	if code, eb := h.do("POST", "/api/v1/jobs", body, &res); code != 201 || !res.Created || res.Job.Status != "queued" || res.Job.Spec.Timeout != "1m30s" {
		t.Fatalf("POST /api/v1/jobs = %d %+v %+v", code, eb, res)
	}
	if code, _ := h.do("POST", "/api/v1/jobs", body, &res); code != 200 || res.Created {
		t.Fatalf("retried POST = %d %+v, want 200 with the existing job", code, res)
	}
	id := res.Job.ID

	logReq, _ := http.NewRequestWithContext(h.ctx, "GET", h.http.URL+"/api/v1/jobs/"+id+"/log?follow=1", nil)
	logResp, err := h.http.Client().Do(logReq)
	if err != nil || logResp.StatusCode != 200 {
		t.Fatalf("GET log = %v, %v", logResp, err)
	}
	defer logResp.Body.Close()

	as := h.assignment(agent)
	h.run(w, as)
	h.write(as, "caf\xc3")      // "é" split across two chunks
	h.write(as, "\xa9 \x1b[1m") // completes it
	h.finish(w, as, 0)

	// The SSE log: "log" messages, then "end" with the job's outcome.
	var text strings.Builder
	var end map[string]any
	sc := bufio.NewScanner(logResp.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			switch event {
			case "log":
				var c api.LogChunk
				if err := json.Unmarshal([]byte(data), &c); err != nil {
					t.Fatal(err)
				}
				if c.Offset != uint64(len(text.String())) {
					t.Fatalf("chunk at offset %d after %d bytes", c.Offset, text.Len())
				}
				text.WriteString(c.Text)
			case "end":
				if err := json.Unmarshal([]byte(data), &end); err != nil {
					t.Fatal(err)
				}
			default:
				t.Fatalf("unexpected SSE %s: %s", event, data)
			}
		}
	}
	if text.String() != "café \x1b[1m" || end["status"] != "succeeded" || end["exit_code"] != float64(0) {
		t.Fatalf("SSE log = %q, end %v", text.String(), end)
	}

	// The plain log.
	req, _ := http.NewRequestWithContext(h.ctx, "GET", h.http.URL+"/api/v1/jobs/"+id+"/log", nil)
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(raw) != "café \x1b[1m" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("plain log = %q (%s)", raw, resp.Header.Get("Content-Type"))
	}

	// Events: job.submitted, then job.succeeded, with ids = positions.
	sc = bufio.NewScanner(evResp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var types []string
	lastID := ""
	for len(types) < 2 && sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "id: ") {
			lastID = strings.TrimPrefix(line, "id: ")
		}
		if strings.HasPrefix(line, "data: ") {
			var e api.Event
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e); err != nil {
				t.Fatal(err)
			}
			if lastID == "" || e.Stream != domain.JobStream(id) {
				t.Fatalf("event %+v (id %q)", e, lastID)
			}
			types = append(types, e.Type)
		}
	}
	if strings.Join(types, ",") != "job.submitted,job.succeeded" {
		t.Fatalf("SSE events = %v", types)
	}
	stopEvents()

	var job api.Job
	if code, _ := h.do("GET", "/api/v1/jobs/"+id, "", &job); code != 200 || job.Status != "succeeded" || job.ExitCode != 0 || len(job.Attempts) != 1 {
		t.Fatalf("GET job = %d %+v", code, job)
	}
	var timeline struct{ Events []api.Event }
	if code, _ := h.do("GET", "/api/v1/jobs/"+id+"/events", "", &timeline); code != 200 || len(timeline.Events) != 5 ||
		!strings.Contains(string(timeline.Events[0].Payload), `"memory_bytes":536870912`) {
		t.Fatalf("GET events = %d %+v", code, timeline)
	}
	var list api.ListJobsResponse
	if code, _ := h.do("GET", "/api/v1/jobs?status=succeeded&order=oldest&page_size=10", "", &list); code != 200 || len(list.Jobs) != 1 || list.Position == 0 {
		t.Fatalf("GET jobs = %d %+v", code, list)
	}
	if code, eb := h.do("POST", "/api/v1/jobs/"+id+"/cancel", "", nil); code != 409 || eb.Code != "failed_precondition" {
		t.Fatalf("cancel of a finished job = %d %+v", code, eb)
	}
}

func TestRESTBatchWorkersSecrets(t *testing.T) {
	h := start(t)
	var batch api.SubmitJobsResponse
	code, eb := h.do("POST", "/api/v1/jobs/batch", `{"jobs":[{"spec":{"name":"a","script":"true"}},{"idempotency_key":"b","spec":{"name":"b","script":"true"}}]}`, &batch)
	if code != 201 || len(batch.Results) != 2 || !batch.Results[1].Created || batch.Position == 0 {
		t.Fatalf("batch = %d %+v %+v", code, eb, batch)
	}
	code, eb = h.do("POST", "/api/v1/jobs/batch", `{"jobs":[{"idempotency_key":"b","spec":{"name":"b","script":"false"}}]}`, nil)
	if code != 409 || eb.Field != "jobs[0].idempotency_key" || eb.Code != "already_exists" {
		t.Fatalf("reused key = %d %+v", code, eb)
	}
	var cancelled api.Job
	if code, _ := h.do("POST", "/api/v1/jobs/"+batch.Results[0].Job.ID+"/cancel", `{"reason":"changed my mind"}`, &cancelled); code != 200 ||
		cancelled.Status != "cancelled" || cancelled.Reason != "changed my mind" {
		t.Fatalf("cancel = %d %+v", code, cancelled)
	}

	w, _ := h.connect("w1", 1)
	var workers struct{ Workers []api.Worker }
	if code, _ := h.do("GET", "/api/v1/workers", "", &workers); code != 200 || len(workers.Workers) != 1 || workers.Workers[0].Status != "online" {
		t.Fatalf("workers = %d %+v", code, workers)
	}
	var wk api.Worker
	if code, _ := h.do("POST", "/api/v1/workers/"+w+"/drain", "", &wk); code != 200 || !wk.Draining {
		t.Fatalf("drain = %d %+v", code, wk)
	}

	var sec api.Secret
	if code, eb := h.do("PUT", "/api/v1/secrets/prod/api-token", `{"value":"tok-abcdef"}`, &sec); code != 200 || sec.Name != "prod/api-token" {
		t.Fatalf("PUT secret = %d %+v %+v", code, eb, sec)
	}
	req, _ := http.NewRequestWithContext(h.ctx, "GET", h.http.URL+"/api/v1/secrets", nil)
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), `"prod/api-token"`) || strings.Contains(string(raw), "tok-abcdef") {
		t.Fatalf("GET secrets = %s", raw)
	}
	if code, _ := h.do("DELETE", "/api/v1/secrets/prod/api-token", "", nil); code != 204 {
		t.Fatalf("DELETE secret = %d", code)
	}
	if code, _ := h.do("DELETE", "/api/v1/secrets/prod/api-token", "", nil); code != 404 {
		t.Fatalf("DELETE secret twice = %d", code)
	}
}

func TestRESTAuthenticatorSeesBearer(t *testing.T) {
	h := start(t, harnessOptions{auth: authFunc(func(op, cred string) (api.Caller, error) {
		if cred != "t0k" {
			return api.Caller{}, api.ErrUnauthenticated
		}
		return api.Caller{Name: "bob"}, nil
	})})
	if code, eb := h.do("GET", "/api/v1/jobs", "", nil); code != 401 || eb.Code != "unauthenticated" {
		t.Fatalf("no token = %d %+v", code, eb)
	}
	req, _ := http.NewRequestWithContext(h.ctx, "POST", h.http.URL+"/api/v1/jobs", strings.NewReader(`{"spec":{"name":"a","script":"true"}}`))
	req.Header.Set("Authorization", "Bearer t0k")
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var res api.SubmitJobResult
	_ = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != 201 || res.Job.Submitter != "bob" {
		t.Fatalf("with token = %d %+v", resp.StatusCode, res)
	}
	if code, _ := h.do("GET", "/api/v1/jobs?access_token=t0k", "", nil); code != 200 {
		t.Fatalf("access_token = %d", code)
	}
}

func TestRESTProviders(t *testing.T) {
	h := start(t)
	if code, eb := h.do("GET", "/api/v1/providers", "", nil); code != 404 || !strings.Contains(eb.Error, "--providers") {
		t.Fatalf("no providers = %d %+v, want 404 naming --providers", code, eb)
	}
	h = start(t, harnessOptions{
		providers: func() any { return []map[string]any{{"name": "docker", "max": 4}} },
		auth: authFunc(func(op, cred string) (api.Caller, error) {
			switch {
			case cred == "":
				return api.Caller{}, api.ErrUnauthenticated
			case op != "ListProviders":
				return api.Caller{}, api.ErrPermissionDenied
			}
			return api.Caller{Name: "viewer"}, nil
		}),
	})
	if code, eb := h.do("GET", "/api/v1/providers", "", nil); code != 401 {
		t.Fatalf("anonymous = %d %+v, want 401", code, eb)
	}
	req, _ := http.NewRequestWithContext(h.ctx, "GET", h.http.URL+"/api/v1/providers", nil)
	req.Header.Set("Authorization", "Bearer v")
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Providers []struct {
			Name string `json:"name"`
			Max  int    `json:"max"`
		} `json:"providers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("providers = %d, %v", resp.StatusCode, err)
	}
	if len(body.Providers) != 1 || body.Providers[0].Name != "docker" || body.Providers[0].Max != 4 {
		t.Errorf("providers = %+v", body.Providers)
	}
}
