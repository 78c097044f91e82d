package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/domain"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/secrets"
)

var (
	// ErrUnauthenticated is returned (wrapped) by an Authenticator when a
	// request carries no valid credential.
	ErrUnauthenticated = errors.New("unauthenticated")

	// ErrPermissionDenied is returned (wrapped) by an Authenticator when the
	// caller's role does not allow the operation.
	ErrPermissionDenied = errors.New("permission denied")

	// errNoSecretStore is returned by the secret operations when the service
	// has no secret store.
	errNoSecretStore = errors.New("this server has no secret store")
)

// InputError is bad input from a client: Field names it as in job.proto
// ("jobs[0].spec.resources.cpu_millis", "page_token").
type InputError struct {
	Field  string
	Reason string
}

// Error implements error.
func (e *InputError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

func badInput(field, format string, args ...any) error {
	return &InputError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// tooLargeError is a request body over its limit.
type tooLargeError struct{ limit int64 }

// Error implements error.
func (e *tooLargeError) Error() string {
	return fmt.Sprintf("request body is larger than %d bytes", e.limit)
}

// conflictError is an idempotency key reused with another spec.
type conflictError struct {
	Field string // "jobs[i].idempotency_key"
	Key   string
	JobID string
}

// Error implements error.
func (e *conflictError) Error() string {
	return fmt.Sprintf("%s %q was used before with a different spec (job %s): use a new key, or resubmit the same spec",
		e.Field, e.Key, e.JobID)
}

// classify is the one place that decides what an error means to a client:
// the gRPC code, and the bad field for invalid input.
func classify(err error) (codes.Code, string) {
	var (
		in  *InputError
		dfe *domain.FieldError
		lfe *logstore.FieldError
		sfe *secrets.FieldError
		ce  *conflictError
		tl  *tooLargeError
	)
	switch {
	case err == nil:
		return codes.OK, ""
	case errors.As(err, &in):
		return codes.InvalidArgument, in.Field
	case errors.As(err, &tl):
		return codes.ResourceExhausted, "body"
	case errors.As(err, &ce):
		return codes.AlreadyExists, ce.Field
	case errors.As(err, &dfe):
		return codes.InvalidArgument, dfe.Field
	case errors.As(err, &lfe):
		return codes.InvalidArgument, lfe.Field
	case errors.As(err, &sfe):
		return codes.InvalidArgument, sfe.Field
	case errors.Is(err, ErrUnauthenticated):
		return codes.Unauthenticated, ""
	case errors.Is(err, ErrPermissionDenied):
		return codes.PermissionDenied, ""
	case errors.Is(err, domain.ErrNotFound), errors.Is(err, logstore.ErrNotFound), errors.Is(err, secrets.ErrNotFound):
		return codes.NotFound, ""
	case errors.Is(err, domain.ErrAlreadyExists):
		return codes.AlreadyExists, ""
	case errors.Is(err, domain.ErrInvalidTransition), errors.Is(err, domain.ErrStaleAttempt),
		errors.Is(err, logstore.ErrOffset), errors.Is(err, errNoSecretStore):
		return codes.FailedPrecondition, ""
	case errors.Is(err, domain.ErrInvalidJobSpec), errors.Is(err, domain.ErrInvalidCommand),
		errors.Is(err, eventstore.ErrInvalidEvent), errors.Is(err, logstore.ErrInvalid), errors.Is(err, secrets.ErrInvalid):
		return codes.InvalidArgument, ""
	case errors.Is(err, secrets.ErrFull):
		return codes.ResourceExhausted, ""
	case errors.Is(err, eventstore.ErrVersionConflict), errors.Is(err, eventstore.ErrIdempotencyConflict):
		return codes.Aborted, ""
	case errors.Is(err, eventstore.ErrClosed), errors.Is(err, logstore.ErrClosed):
		return codes.Unavailable, ""
	case errors.Is(err, context.Canceled):
		return codes.Canceled, ""
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, ""
	}
	if s, ok := status.FromError(err); ok {
		return s.Code(), fieldOf(s)
	}
	return codes.Internal, ""
}

// toStatus translates err for gRPC clients. INVALID_ARGUMENT (and
// ALREADY_EXISTS for a reused key) carries a BadRequest detail naming the
// field. Internal errors are logged by the caller, not detailed here.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code, field := classify(err)
	msg := err.Error()
	if code == codes.Internal {
		msg = "internal error: " + msg
	}
	st := status.New(code, msg)
	if field != "" {
		reason := msg
		var in *InputError
		if errors.As(err, &in) {
			reason = in.Reason
		}
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: field, Description: reason}}}); derr == nil {
			st = d
		}
	}
	return st.Err()
}

// fieldOf returns the first bad field a status names, or "".
func fieldOf(s *status.Status) string {
	for _, d := range s.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// FieldOf returns the bad field an error from the JobService names (from its
// BadRequest detail), or "". Clients use it to point at the bad flag.
func FieldOf(err error) string {
	if s, ok := status.FromError(err); ok {
		return fieldOf(s)
	}
	return ""
}

// httpStatus maps a gRPC code (and the bad field) to the HTTP status REST
// clients get.
func httpStatus(c codes.Code, field string) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
		return http.StatusConflict
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		if field == "body" {
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusInsufficientStorage
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return 499 // client closed request
	case codes.Unimplemented:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// codeName is the lower-case code name REST error bodies carry.
func codeName(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return "invalid_argument"
	case codes.NotFound:
		return "not_found"
	case codes.AlreadyExists:
		return "already_exists"
	case codes.FailedPrecondition:
		return "failed_precondition"
	case codes.Aborted:
		return "aborted"
	case codes.Unauthenticated:
		return "unauthenticated"
	case codes.PermissionDenied:
		return "permission_denied"
	case codes.ResourceExhausted:
		return "resource_exhausted"
	case codes.Unavailable:
		return "unavailable"
	case codes.DeadlineExceeded:
		return "deadline_exceeded"
	case codes.Canceled:
		return "canceled"
	case codes.Unimplemented:
		return "unimplemented"
	}
	return "internal"
}
