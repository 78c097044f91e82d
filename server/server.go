package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/hodei-jobs/hodei/command"
	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/eventstore"
	"github.com/hodei-jobs/hodei/hwp"
	"github.com/hodei-jobs/hodei/hwp/hwppb"
	"github.com/hodei-jobs/hodei/logstore"
)

// Config configures a Server.
type Config struct {
	// GRPCAddr serves agents (HWP) and the JobService, e.g. "127.0.0.1:7070".
	GRPCAddr string
	// HTTPAddr serves REST, SSE, the UI, /healthz, /readyz and /metrics.
	HTTPAddr string
	// JoinToken, when set, is required from agents (ignored with Joiner).
	JoinToken string
	// Joiner, when set, admits agents by managed join tokens (auth.Store).
	Joiner hwp.Joiner
	// Identities, when set, gives agents 15-minute identity tokens renewed
	// over the stream (auth.Identities).
	Identities hwp.Identities
	// Certifier, when set with Identities, gives agents that send a CSR a
	// client certificate (mutual TLS from then on) and renews it
	// (*pki.Bundle with its CA key).
	Certifier hwp.Certifier
	// Revocations reports worker revocations made in the token store
	// (*auth.Store); with Identities they cut the worker's stream within one
	// heartbeat interval and are recorded as worker.identity_revoked.
	Revocations hwp.Revocations
	// TLS serves both listeners with TLS (pki.Bundle.ServerTLS). nil serves
	// plaintext: only for tests and behind --insecure-plaintext; New logs a
	// warning.
	TLS *tls.Config
	// Core configures the orchestrator (heartbeats, timeouts, snapshots).
	Core core.Config
	// ShutdownGrace bounds graceful shutdown (default 10s).
	ShutdownGrace time.Duration
	// Version is reported to agents and in /healthz.
	Version string
	Logger  *slog.Logger
	// StoreStats, when set, reports the event store's commits and committed
	// events for /metrics (their ratio is the group-commit batch size).
	StoreStats func() (commits, events uint64)
}

// Mounter adds services to the server's gRPC server and HTTP mux before it
// starts serving (the JobService API and the UI do).
type Mounter interface {
	RegisterGRPC(*grpc.Server)
	HTTPHandler() http.Handler
	// Shutdown ends the mounter's long-lived streams (log and event
	// watchers) so graceful shutdown does not wait on them.
	Shutdown()
}

// Server is a running Hodei server.
type Server struct {
	cfg    Config
	store  eventstore.Store
	logs   logstore.Logs
	core   *core.Core
	grpc   *grpc.Server
	mux    *http.ServeMux
	hwp    *hwp.Server
	http   *http.Server
	lnG    net.Listener
	lnH    net.Listener
	log    *slog.Logger
	ready  atomic.Bool
	mounts []Mounter
}

// New builds a server over store and logs and opens the core (loads the read
// models). It does not listen yet.
func New(ctx context.Context, store eventstore.Store, logs logstore.Logs, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	cfg.Core.Logger = cfg.Logger
	m := newMetrics()
	cfg.Core.Metrics = m
	c, err := core.New(timedStore{Store: store, m: m}, cfg.Core)
	if err != nil {
		return nil, err
	}
	if err := c.Open(ctx); err != nil {
		return nil, fmt.Errorf("open server: %w", err)
	}
	s := &Server{cfg: cfg, store: store, logs: logs, core: c, log: cfg.Logger, mux: http.NewServeMux()}
	hb := cfg.Core.HeartbeatInterval
	if hb <= 0 {
		hb = 5 * time.Second
	}
	gopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(8 << 20),
		grpc.StreamInterceptor(m.streamInterceptor),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if cfg.TLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	} else {
		cfg.Logger.Warn("serving PLAINTEXT: traffic, tokens and secrets cross the network unencrypted")
	}
	s.grpc = grpc.NewServer(gopts...)
	s.hwp = hwp.NewServer(c, logAdapter{logs}, hwp.ServerConfig{
		JoinToken: cfg.JoinToken, Joiner: cfg.Joiner, Identities: cfg.Identities, HeartbeatInterval: hb, ServerVersion: cfg.Version, Logger: cfg.Logger,
		Certifier: cfg.Certifier, Revocations: cfg.Revocations,
		IdentityLog: identityLog{command.New(c.Store(), c.Codec(), command.Options{CacheSize: 256})},
	})
	hwppb.RegisterWorkerProtocolServer(s.grpc, s.hwp)
	m.reg.MustRegister(newStateCollector(c, cfg.StoreStats))
	s.mux.Handle("GET /metrics", m.handler())
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "ok %s\n", cfg.Version)
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ready at position %d\n", c.Position())
	})
	return s, nil
}

// Core returns the orchestrator.
func (s *Server) Core() *core.Core { return s.core }

// Mount adds the API's gRPC services and HTTP routes. Call before Run.
func (s *Server) Mount(m Mounter) {
	m.RegisterGRPC(s.grpc)
	s.mux.Handle("/", m.HTTPHandler())
	s.mounts = append(s.mounts, m)
}

// Handle adds an HTTP route (e.g. /metrics). Call before Run.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// GRPC returns the gRPC server, to register more services before Run.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Listen binds both listeners.
func (s *Server) Listen() error {
	var err error
	if s.lnG, err = net.Listen("tcp", s.cfg.GRPCAddr); err != nil {
		return fmt.Errorf("listen grpc %s: %w", s.cfg.GRPCAddr, err)
	}
	if s.lnH, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
		s.lnG.Close()
		return fmt.Errorf("listen http %s: %w", s.cfg.HTTPAddr, err)
	}
	return nil
}

// GRPCAddr is the bound gRPC address (after Listen).
func (s *Server) GRPCAddr() string { return s.lnG.Addr().String() }

// HTTPAddr is the bound HTTP address (after Listen).
func (s *Server) HTTPAddr() string { return s.lnH.Addr().String() }

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	if s.lnG == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.http = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: s.cfg.TLS,
		// TLS handshake failures (scanners, wrong CA) are not errors of ours.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	coreCtx, stopCore := context.WithCancel(context.Background())
	defer stopCore()
	g := new(errgroup.Group)
	coreDone := make(chan error, 1)
	go func() { coreDone <- s.core.Run(coreCtx) }()
	g.Go(func() error {
		if err := s.grpc.Serve(s.lnG); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve grpc: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		serve := func() error { return s.http.Serve(s.lnH) }
		if s.cfg.TLS != nil {
			serve = func() error { return s.http.ServeTLS(s.lnH, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	s.ready.Store(true)
	s.log.Info("hodei server ready", "grpc", s.GRPCAddr(), "http", s.HTTPAddr(), "tls", s.cfg.TLS != nil, "position", s.core.Position())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-coreDone:
		coreDone <- runErr
		s.log.Error("core stopped", "err", runErr)
	}
	s.ready.Store(false)
	s.log.Info("shutting down", "grace", s.cfg.ShutdownGrace)
	shutCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	for _, m := range s.mounts {
		m.Shutdown()
	}
	s.hwp.Stop() // agents reconnect to the next server and resume
	_ = s.http.Shutdown(shutCtx)
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutCtx.Done():
		s.grpc.Stop()
		<-stopped
	}
	s.hwp.Wait()
	stopCore()
	if err := <-coreDone; err != nil && runErr == nil {
		runErr = err
	}
	if err := g.Wait(); err != nil && runErr == nil {
		runErr = err
	}
	if err := s.logs.Sync(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// logAdapter gives hwp the log store's size query.
type logAdapter struct{ logstore.Logs }

func (l logAdapter) Size(jobID string, attempt uint32) uint64 {
	st, err := l.Stat(jobID, attempt)
	if err != nil {
		return 0
	}
	return st.Size
}
