package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/auth"
)

// The token store as the Authenticator: roles over HTTP bearer headers and
// gRPC metadata.
func TestRoleTokensOverRESTAndGRPC(t *testing.T) {
	tokens, err := auth.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, harnessOptions{auth: tokens})
	viewer, _, err := tokens.CreateAPI(auth.Viewer, "vera", 0)
	if err != nil {
		t.Fatal(err)
	}
	operator, _, err := tokens.CreateAPI(auth.Operator, "otto", 0)
	if err != nil {
		t.Fatal(err)
	}
	admin, at, err := tokens.CreateAPI(auth.Admin, "ada", 0)
	if err != nil {
		t.Fatal(err)
	}
	rest := func(method, path, body, token string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(h.ctx, method, h.http.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := h.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	submit := `{"spec":{"name":"a","script":"true"}}`
	for _, tc := range []struct {
		name, method, path, body, token string
		want                            int
	}{
		{"anonymous read", "GET", "/api/v1/jobs", "", "", 401},
		{"garbage token", "GET", "/api/v1/jobs", "", "nope", 401},
		{"viewer reads", "GET", "/api/v1/jobs", "", viewer, 200},
		{"viewer submits", "POST", "/api/v1/jobs", submit, viewer, 403},
		{"operator submits", "POST", "/api/v1/jobs", submit, operator, 201},
		{"operator lists secrets", "GET", "/api/v1/secrets", "", operator, 403},
		{"admin lists secrets", "GET", "/api/v1/secrets", "", admin, 200},
	} {
		if got := rest(tc.method, tc.path, tc.body, tc.token); got != tc.want {
			t.Errorf("%s: %s %s = %d, want %d", tc.name, tc.method, tc.path, got, tc.want)
		}
	}

	withToken := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(h.ctx, "authorization", "Bearer "+tok)
	}
	if _, err := h.client.ListJobs(h.ctx, &jobpb.ListJobsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC ListJobs without a token = %v, want Unauthenticated", err)
	}
	if _, err := h.client.ListJobs(withToken(viewer), &jobpb.ListJobsRequest{}); err != nil {
		t.Errorf("gRPC ListJobs as viewer = %v", err)
	}
	_, err = h.client.SubmitJobs(withToken(viewer), &jobpb.SubmitJobsRequest{Jobs: []*jobpb.SubmitJob{
		{Spec: &jobpb.JobSpec{Name: "a", Script: "true"}}}})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("gRPC SubmitJobs as viewer = %v, want PermissionDenied", err)
	}
	if _, err := h.client.DrainWorker(withToken(viewer), &jobpb.DrainWorkerRequest{WorkerId: "w"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("gRPC DrainWorker as viewer = %v, want PermissionDenied", err)
	}
	if _, err := h.client.ListSecrets(withToken(operator), &jobpb.ListSecretsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("gRPC ListSecrets as operator = %v, want PermissionDenied", err)
	}
	if err := tokens.Revoke(at.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.ListSecrets(withToken(admin), &jobpb.ListSecretsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC ListSecrets with a revoked admin token = %v, want Unauthenticated", err)
	}
	if got := rest("GET", "/api/v1/secrets", "", admin); got != 401 {
		t.Errorf("REST with a revoked admin token = %d, want 401", got)
	}
}
