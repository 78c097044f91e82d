package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/api/jobpb"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/logstore"
	"github.com/hodei-jobs/hodei/secrets"
)

// Caller is who makes a request, as derived from its credential.
type Caller struct {
	// Name is recorded in events as "user:<Name>" and scopes idempotency keys.
	Name string
	// Role is the caller's role ("admin", "operator", "viewer"); "" while
	// there is no Authenticator.
	Role string
}

// Anonymous is the caller of every request while no Authenticator is set.
var Anonymous = Caller{Name: "anonymous"}

// Authenticator derives the caller of a request. It is the hook for API
// authentication and authorisation.
type Authenticator interface {
	// Authenticate returns the caller that credential proves and checks that
	// it may perform op (the RPC's name, e.g. "SubmitJobs"; REST routes use
	// the same names). credential is the request's bearer token, "" when it
	// has none. Errors must wrap ErrUnauthenticated or ErrPermissionDenied.
	Authenticate(ctx context.Context, op, credential string) (Caller, error)
}

// Options configures a Service. The zero value is usable.
type Options struct {
	// Authenticator derives callers; nil means every caller is Anonymous.
	Authenticator Authenticator
	// Logger receives internal errors (default slog.Default()).
	Logger *slog.Logger
	// Keepalive is the interval of SSE comment lines on idle streams, so
	// proxies keep them open (default 15s).
	Keepalive time.Duration
	// UI serves the web UI under /ui/; nil means no UI (the server passes
	// web.Handler()).
	UI http.Handler
	// Providers, when set, reports the state of the providers that start
	// agents on demand, as JSON-encodable values, for GET /api/v1/providers
	// (operation ListProviders). nil: the route answers that none are
	// configured.
	Providers func() any
}

// Service is the JobService over a core, a log store and a secret store.
type Service struct {
	core    *core.Core
	logs    logstore.Logs
	secrets *secrets.Store // nil: secret operations fail
	opts    Options
	log     *slog.Logger
	rpc     *grpcServer

	// life ends every open stream when Shutdown is called.
	life     context.Context
	shutdown context.CancelFunc
}

// New returns the API over c. logs serves WatchLog; secrets (may be nil)
// serves the secret operations.
func New(c *core.Core, logs logstore.Logs, sec *secrets.Store, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Keepalive <= 0 {
		opts.Keepalive = 15 * time.Second
	}
	s := &Service{core: c, logs: logs, secrets: sec, opts: opts, log: opts.Logger}
	s.rpc = &grpcServer{s: s}
	s.life, s.shutdown = context.WithCancel(context.Background())
	return s
}

// Shutdown ends every open stream (WatchLog, WatchEvents and their SSE
// forms), which would otherwise keep grpc.Server.GracefulStop and
// http.Server.Shutdown waiting forever; gRPC clients get UNAVAILABLE, SSE
// clients reconnect (with Last-Event-ID) to the next server. Call it first
// when the server stops. Unary calls are not affected; streams started
// after Shutdown end at once.
func (s *Service) Shutdown() { s.shutdown() }

// errShuttingDown ends streams cut by Shutdown.
var errShuttingDown = status.Error(codes.Unavailable, "the server is shutting down: reconnect")

// streamContext returns a context for a long-lived stream that also ends
// when Shutdown is called.
func (s *Service) streamContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.life, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// streamEnd turns the error of a stream cut by Shutdown into errShuttingDown.
func (s *Service) streamEnd(err error) error {
	if err != nil && s.life.Err() != nil {
		return errShuttingDown
	}
	return err
}

// RegisterGRPC registers JobService, and server reflection (so grpcurl can
// list and call it), on g.
func (s *Service) RegisterGRPC(g *grpc.Server) {
	jobpb.RegisterJobServiceServer(g, s.rpc)
	if _, ok := g.GetServiceInfo()["grpc.reflection.v1.ServerReflection"]; !ok {
		reflection.Register(g)
	}
}

// credentialKey carries an HTTP request's bearer credential in its context.
type credentialKey struct{}

// caller is the one place where a request's caller is derived: from the
// credential the HTTP layer put into ctx, or else from the gRPC metadata.
// op is the operation's RPC name.
func (s *Service) caller(ctx context.Context, op string) (Caller, error) {
	cred, ok := ctx.Value(credentialKey{}).(string)
	if !ok {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get("authorization"); len(v) > 0 {
				cred = bearer(v[0])
			}
		}
	}
	if s.opts.Authenticator == nil {
		return Anonymous, nil
	}
	c, err := s.opts.Authenticator.Authenticate(ctx, op, cred)
	if err != nil {
		return Caller{}, err
	}
	return c, nil
}

// bearer returns the token of an "Authorization: Bearer <token>" value.
func bearer(v string) string {
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}
