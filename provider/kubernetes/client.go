package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// client makes the driver's core/v1 calls in one namespace: plain JSON
// over net/http, rate limited like the client-go configuration it
// replaces. Errors are a *statusError when the API server answered, and
// otherwise what net/http returned.
type client struct {
	http  *http.Client
	base  string // server URL up to /api, without a trailing slash
	ns    string
	limit *limiter
}

// Client-side rate limit: client-go's default (5 QPS, burst 10) would
// queue a burst of Starts (three calls each) behind each other.
const (
	clientQPS   = 50
	clientBurst = 100
)

// maxRetries is how often a call is retried when the API server asks to
// retry later (429 or 5xx with Retry-After), or a GET lost its
// connection, as client-go does.
const maxRetries = 10

// maxResponse bounds a response body read into memory.
const maxResponse = 64 << 20

func newClient(conn Connection, ns string) (*client, error) {
	hc, base, err := conn.httpClient()
	if err != nil {
		return nil, err
	}
	return &client{http: hc, base: base.String(), ns: ns, limit: newLimiter(clientQPS, clientBurst, time.Now)}, nil
}

func (c *client) path(resource, name string) string {
	p := c.base + "/api/v1/namespaces/" + url.PathEscape(c.ns) + "/" + resource
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// createSecret creates s.
func (c *client) createSecret(ctx context.Context, s *secret) error {
	s.APIVersion, s.Kind = "v1", "Secret"
	return c.do(ctx, http.MethodPost, c.path("secrets", ""), nil, "application/json", s, nil)
}

// patchSecret applies a JSON merge patch to Secret name.
func (c *client) patchSecret(ctx context.Context, name string, patch []byte) error {
	return c.do(ctx, http.MethodPatch, c.path("secrets", name), nil, "application/merge-patch+json", json.RawMessage(patch), nil)
}

// deleteSecret deletes Secret name.
func (c *client) deleteSecret(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, c.path("secrets", name), nil, "application/json", newDeleteOptions(nil), nil)
}

// deleteSecrets deletes the Secrets the label selector matches.
func (c *client) deleteSecrets(ctx context.Context, labelSelector string) error {
	return c.do(ctx, http.MethodDelete, c.path("secrets", ""), url.Values{"labelSelector": {labelSelector}},
		"application/json", newDeleteOptions(nil), nil)
}

// createPod creates p and returns it as created (with its UID).
func (c *client) createPod(ctx context.Context, p *pod) (*pod, error) {
	p.APIVersion, p.Kind = "v1", "Pod"
	var out pod
	if err := c.do(ctx, http.MethodPost, c.path("pods", ""), nil, "application/json", p, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// deletePod deletes Pod name at once (grace period 0).
func (c *client) deletePod(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, c.path("pods", name), nil, "application/json", newDeleteOptions(new(int64(0))), nil)
}

// deletePods deletes the Pods the label selector matches at once (grace
// period 0).
func (c *client) deletePods(ctx context.Context, labelSelector string) error {
	return c.do(ctx, http.MethodDelete, c.path("pods", ""), url.Values{"labelSelector": {labelSelector}},
		"application/json", newDeleteOptions(new(int64(0))), nil)
}

// listPods lists the Pods the label selector matches.
func (c *client) listPods(ctx context.Context, labelSelector string) (*podList, error) {
	var out podList
	if err := c.do(ctx, http.MethodGet, c.path("pods", ""), url.Values{"labelSelector": {labelSelector}}, "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// listEvents lists the Events the field selector matches.
func (c *client) listEvents(ctx context.Context, fieldSelector string) (*eventList, error) {
	var out eventList
	if err := c.do(ctx, http.MethodGet, c.path("events", ""), url.Values{"fieldSelector": {fieldSelector}}, "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func newDeleteOptions(grace *int64) deleteOptions {
	return deleteOptions{APIVersion: "v1", Kind: "DeleteOptions", GracePeriodSeconds: grace}
}

// do sends body (JSON-encoded, when not nil) and decodes a 2xx answer into
// out (when not nil). It waits for the rate limiter before each attempt.
func (c *client) do(ctx context.Context, method, u string, query url.Values, contentType string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	for attempt := 0; ; attempt++ {
		if err := c.limit.wait(ctx); err != nil {
			return fmt.Errorf("client rate limiter: %w", err)
		}
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/json")
		if payload != nil {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if method == http.MethodGet && attempt < maxRetries && ctx.Err() == nil && connectionLost(err) {
				continue
			}
			return err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		resp.Body.Close()
		if err != nil {
			if method == http.MethodGet && attempt < maxRetries && ctx.Err() == nil && connectionLost(err) {
				continue
			}
			return fmt.Errorf("%s %s: read response: %w", method, u, err)
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(b, out); err != nil {
				return fmt.Errorf("%s %s: decode response: %w", method, u, err)
			}
			return nil
		}
		serr := newStatusError(resp.StatusCode, b)
		if d, ok := retryAfter(resp); ok && attempt < maxRetries {
			t := time.NewTimer(d)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
			}
		}
		return serr
	}
}

// retryAfter is how long to wait before retrying a 429 or 5xx answer with
// a Retry-After header in seconds.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
		return 0, false
	}
	s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || s < 0 {
		return 0, false
	}
	return time.Duration(min(s, 60)) * time.Second, true
}

// connectionLost reports whether err means an established connection was
// dropped (reset or EOF), after which a GET can safely be retried.
func connectionLost(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		strings.Contains(err.Error(), "connection reset by peer") || strings.Contains(err.Error(), "http2: client connection lost")
}

// statusError is an API server's error answer: its Status object, or what
// the HTTP status says when the body is no Status.
type statusError struct {
	Code    int
	Reason  string // NotFound, AlreadyExists, Forbidden, ...
	Message string
}

// Status reasons the driver tells apart, as the API server spells them.
const (
	reasonNotFound           = "NotFound"
	reasonAlreadyExists      = "AlreadyExists"
	reasonForbidden          = "Forbidden"
	reasonUnauthorized       = "Unauthorized"
	reasonConflict           = "Conflict"
	reasonInvalid            = "Invalid"
	reasonBadRequest         = "BadRequest"
	reasonServerTimeout      = "ServerTimeout"
	reasonTimeout            = "Timeout"
	reasonTooManyRequests    = "TooManyRequests"
	reasonServiceUnavailable = "ServiceUnavailable"
	reasonInternalError      = "InternalError"
)

func (e *statusError) Error() string { return e.Message }

func newStatusError(code int, body []byte) *statusError {
	var st struct {
		Kind    string `json:"kind"`
		Code    int    `json:"code"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
		e := &statusError{Code: st.Code, Reason: st.Reason, Message: st.Message}
		if e.Code == 0 {
			e.Code = code
		}
		if e.Message == "" {
			e.Message = fmt.Sprintf("the server answered %d %s", code, http.StatusText(code))
		}
		return e
	}
	// Not a Status (a proxy in between, or an old server): the HTTP
	// status says what it is.
	reason := map[int]string{
		http.StatusBadRequest:          reasonBadRequest,
		http.StatusUnauthorized:        reasonUnauthorized,
		http.StatusForbidden:           reasonForbidden,
		http.StatusNotFound:            reasonNotFound,
		http.StatusConflict:            reasonConflict,
		http.StatusUnprocessableEntity: reasonInvalid,
		http.StatusTooManyRequests:     reasonTooManyRequests,
		http.StatusInternalServerError: reasonInternalError,
		http.StatusServiceUnavailable:  reasonServiceUnavailable,
		http.StatusGatewayTimeout:      reasonTimeout,
	}[code]
	msg := fmt.Sprintf("the server answered %d %s", code, http.StatusText(code))
	if s := strings.TrimSpace(string(body)); s != "" {
		msg += ": " + clip(s)
	}
	return &statusError{Code: code, Reason: reason, Message: msg}
}

// knownReasons are the Status reasons the API defines. An error whose
// reason is not one of them is classified by its HTTP code, as client-go's
// apierrors does.
var knownReasons = map[string]bool{
	"Unauthorized": true, "Forbidden": true, "NotFound": true, "AlreadyExists": true, "Conflict": true,
	"Gone": true, "Invalid": true, "ServerTimeout": true, "StoreReadError": true, "Timeout": true,
	"TooManyRequests": true, "BadRequest": true, "MethodNotAllowed": true, "NotAcceptable": true,
	"RequestEntityTooLarge": true, "UnsupportedMediaType": true, "InternalError": true, "Expired": true,
	"ServiceUnavailable": true,
}

// isReason reports whether err is a statusError with that reason, or with
// code and a reason that is not a known one (code 0: the reason only).
func isReason(err error, reason string, code int) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return false
	}
	return se.Reason == reason || code != 0 && !knownReasons[se.Reason] && se.Code == code
}

func isNotFound(err error) bool { return isReason(err, reasonNotFound, http.StatusNotFound) }

// limiter is a token bucket: qps tokens a second, up to burst.
type limiter struct {
	qps, burst float64
	now        func() time.Time

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newLimiter(qps, burst float64, now func() time.Time) *limiter {
	return &limiter{qps: qps, burst: burst, now: now, tokens: burst, last: now()}
}

// reserve takes a token and returns how long to wait until it is due.
func (l *limiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if el := now.Sub(l.last); el > 0 {
		l.tokens = min(l.burst, l.tokens+el.Seconds()*l.qps)
		l.last = now
	}
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.qps * float64(time.Second))
}

// cancel gives back a token taken by reserve and not used.
func (l *limiter) cancel() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = min(l.burst, l.tokens+1)
}

// wait blocks until a token is due, or ctx is done.
func (l *limiter) wait(ctx context.Context) error {
	d := l.reserve()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		l.cancel()
		return ctx.Err()
	}
}
