package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/secrets"
)

func TestErrorTranslation(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("op: %w", err) }
	tests := []struct {
		err   error
		code  codes.Code
		http  int
		field string
	}{
		{badInput("jobs[0].spec.script", "empty"), codes.InvalidArgument, 400, "jobs[0].spec.script"},
		{&tooLargeError{limit: 10}, codes.ResourceExhausted, 413, "body"},
		{&conflictError{Field: "jobs[0].idempotency_key", Key: "k", JobID: "kx"}, codes.AlreadyExists, 409, "jobs[0].idempotency_key"},
		{wrap(&domain.FieldError{Field: "resources.slots", Reason: "x", Err: domain.ErrInvalidJobSpec}), codes.InvalidArgument, 400, "resources.slots"},
		{wrap(&logstore.FieldError{Field: "job_id", Reason: "x"}), codes.InvalidArgument, 400, "job_id"},
		{wrap(&secrets.FieldError{Field: "value", Reason: "short"}), codes.InvalidArgument, 400, "value"},
		{wrap(domain.ErrNotFound), codes.NotFound, 404, ""},
		{wrap(logstore.ErrNotFound), codes.NotFound, 404, ""},
		{wrap(&secrets.MissingError{Names: []string{"a"}}), codes.NotFound, 404, ""},
		{wrap(domain.ErrAlreadyExists), codes.AlreadyExists, 409, ""},
		{wrap(&domain.TransitionError{Aggregate: "job", ID: "j", From: "succeeded", Command: "cancel"}), codes.FailedPrecondition, 409, ""},
		{wrap(&domain.StaleAttemptError{JobID: "j"}), codes.FailedPrecondition, 409, ""},
		{wrap(logstore.ErrOffset), codes.FailedPrecondition, 409, ""},
		{errNoSecretStore, codes.FailedPrecondition, 409, ""},
		{wrap(&eventstore.VersionConflictError{Stream: "s"}), codes.Aborted, 409, ""},
		{wrap(eventstore.ErrClosed), codes.Unavailable, 503, ""},
		{wrap(logstore.ErrClosed), codes.Unavailable, 503, ""},
		{wrap(secrets.ErrFull), codes.ResourceExhausted, 507, ""},
		{wrap(ErrUnauthenticated), codes.Unauthenticated, 401, ""},
		{wrap(ErrPermissionDenied), codes.PermissionDenied, 403, ""},
		{wrap(context.Canceled), codes.Canceled, 499, ""},
		{wrap(context.DeadlineExceeded), codes.DeadlineExceeded, 504, ""},
		{errors.New("disk on fire"), codes.Internal, 500, ""},
	}
	for _, tt := range tests {
		code, field := classify(tt.err)
		if code != tt.code || field != tt.field {
			t.Errorf("classify(%v) = %v, %q; want %v, %q", tt.err, code, field, tt.code, tt.field)
		}
		if got := httpStatus(code, field); got != tt.http {
			t.Errorf("httpStatus(%v) = %d, want %d", code, got, tt.http)
		}
		// Translated once for gRPC, the code and field survive the wire
		// (and a second translation, as REST handlers do).
		st := toStatus(tt.err)
		if status.Code(st) != tt.code || FieldOf(st) != tt.field {
			t.Errorf("toStatus(%v) = %v (field %q)", tt.err, st, FieldOf(st))
		}
		if code, field := classify(st); code != tt.code || field != tt.field {
			t.Errorf("classify(toStatus(%v)) = %v, %q", tt.err, code, field)
		}
	}
	if toStatus(nil) != nil || httpStatus(codes.OK, "") != http.StatusOK {
		t.Fatal("nil error is not OK")
	}
}
