package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/hodei-jobs/hodei/core"
	"github.com/hodei-jobs/hodei/logstore"
	pglogs "github.com/hodei-jobs/hodei/logstore/postgres"
	"github.com/hodei-jobs/hodei/provider"
	"github.com/hodei-jobs/hodei/replay"
	"github.com/hodei-jobs/hodei/server"
)

func init() { register("", newServerCmd) }

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type serverFlags struct {
	data, postgres, grpcAddr, httpAddr, joinToken, logLevel, logFormat string
	heartbeat, shutdownGrace                                           time.Duration

	tlsCert, tlsKey, tlsCA string
	tlsSANs                []string
	insecurePlaintext      bool
	insecureAnonymous      bool
	anchorDir              string
	anchorEvery            time.Duration
	providers              string
	memoryLimit            string
	gcPercent              string
}

func newServerCmd() *cobra.Command {
	var f serverFlags
	c := &cobra.Command{
		Use:   "server",
		Short: "Run the Hodei server (bbolt store in ./data unless --postgres is given)",
		Long: `Run the Hodei server: the event log, the scheduler, the agent protocol and the job API.

With no flags it keeps everything in ./data (a bbolt event log, job logs and
projection snapshots) and listens on 127.0.0.1:7070 (gRPC: agents and the
JobService) and 127.0.0.1:8080 (HTTP: REST, the web UI, /healthz, /readyz,
/metrics). With --postgres the event log and the job logs live in that
PostgreSQL database instead (the job logs in the tables job_logs and
job_log_chunks); the data dir keeps the rest. Every flag can also be set as
HODEI_<FLAG> (e.g. HODEI_POSTGRES).

Both listeners speak TLS. On first start the server creates a CA and a
server certificate in the data dir (ca.pem is what clients trust; give
--tls-cert/--tls-key/--tls-ca to use your own) and an admin API token,
printed once and kept in <data>/admin.token (mode 0600), which the CLI
reads by default. Agents join with tokens from ` + "`hodei token create --agent`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd); err != nil {
				return err
			}
			return runServer(cmd, f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.data, "data", "data", "data directory (event log and job logs unless --postgres, snapshots, keys)")
	fl.StringVar(&f.postgres, "postgres", "", "PostgreSQL DSN: keep the event log and the job logs there instead of the data dir")
	fl.StringVar(&f.grpcAddr, "listen", "127.0.0.1:7070", "gRPC address for agents and the JobService")
	fl.StringVar(&f.httpAddr, "http", "127.0.0.1:8080", "HTTP address for REST, the UI, health and metrics")
	fl.StringVar(&f.joinToken, "join-token", "", "one static token agents must present instead of managed join tokens (hodei token create --agent)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "server certificate chain (PEM) to use instead of the data dir's own CA")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	fl.StringVar(&f.tlsCA, "tls-ca", "", "CA certificate (PEM) of --tls-cert, whose fingerprint join tokens carry (default: last certificate of --tls-cert)")
	fl.StringSliceVar(&f.tlsSANs, "tls-san", nil, "extra DNS names or IPs for the server certificate the server makes (repeatable)")
	fl.BoolVar(&f.insecurePlaintext, "insecure-plaintext", false, "serve without TLS (tests and loopback debugging only)")
	fl.BoolVar(&f.insecureAnonymous, "insecure-anonymous", false, "accept API calls without a token (tests and loopback debugging only)")
	fl.DurationVar(&f.heartbeat, "heartbeat", 5*time.Second, "agent heartbeat interval; a worker silent for 3 intervals is lost")
	fl.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "how long shutdown waits for streams to finish")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.anchorDir, "anchor-dir", "", "write a signed anchor of the log head here every --anchor-every (keep it off the data volume)")
	fl.DurationVar(&f.anchorEvery, "anchor-every", replay.DefaultAnchorEvery, "how often --anchor-dir gets a new anchor")
	fl.StringVar(&f.memoryLimit, "memory-limit", "auto", "Go soft memory limit: a size (512Mi, 2G), off, or auto: GOMEMLIMIT if set, else 90% of the cgroup's memory limit, else none")
	fl.StringVar(&f.gcPercent, "gc-percent", "auto", fmt.Sprintf("how far the Go heap grows past what is live before it is collected, in percent (10-1000), or auto: GOGC if set, else %d", defaultGCPercent))
	fl.StringVar(&f.providers, "providers", "", "JSON file of providers that start agents on demand (Docker, Kubernetes); see the README, \"Agents on demand\"")
	return c
}

func newLogger(cmd *cobra.Command, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	}
	return nil, usageError("--log-format %q: want text or json", format)
}

// openLogs opens the job log store: tables in the PostgreSQL database at
// dsn when one is given (beside the event log), else files under
// <dataDir>/logs.
func openLogs(ctx context.Context, dataDir, dsn string, log *slog.Logger) (logstore.Logs, error) {
	if dsn != "" {
		s, err := pglogs.Open(ctx, dsn, pglogs.Options{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("open job logs in postgres %s: %w", redactDSN(dsn), err)
		}
		return s, nil
	}
	s, err := logstore.Open(filepath.Join(dataDir, "logs"), logstore.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func runServer(cmd *cobra.Command, f serverFlags) error {
	log, err := newLogger(cmd, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if f.heartbeat < 10*time.Millisecond {
		return usageError("--heartbeat %s: must be at least 10ms", f.heartbeat)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return usageError("--tls-cert and --tls-key go together")
	}
	if f.insecurePlaintext && f.tlsCert != "" {
		return usageError("--insecure-plaintext and --tls-cert exclude each other")
	}
	cfgLog := describeFlags(cmd, "join-token")
	for i := 0; i+1 < len(cfgLog); i += 2 {
		if cfgLog[i] == "postgres" {
			cfgLog[i+1] = redactDSN(f.postgres)
		}
	}
	memLimit, err := resolveMemoryLimit(f.memoryLimit, "/sys/fs/cgroup", os.Getenv)
	if err != nil {
		return err
	}
	memLimit.apply()
	gc, err := resolveGCPercent(f.gcPercent, os.Getenv)
	if err != nil {
		return err
	}
	gc.apply()
	var providers []providerEntry
	if f.providers != "" {
		if providers, err = loadProviders(f.providers); err != nil {
			return usageError("%v", err)
		}
	}
	log.Info("starting hodei server", append([]any{"version", version, "memory_limit_bytes", memLimit.bytes,
		"memory_limit_from", memLimit.source, "gc_percent", gc.percent, "gc_percent_from", gc.source}, cfgLog...)...)
	ctx := cmd.Context()
	if err := os.MkdirAll(f.data, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	sec0, err := setupSecurity(cmd, f, log)
	if err != nil {
		return err
	}
	store, err := openStore(ctx, f.data, f.postgres, false)
	if err != nil {
		return err
	}
	defer store.Close()
	logs, err := openLogs(ctx, f.data, f.postgres, log)
	if err != nil {
		return err
	}
	defer logs.Close()
	sec, err := openSecrets(f.data)
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, store, logs, server.Config{
		GRPCAddr: f.grpcAddr, HTTPAddr: f.httpAddr, JoinToken: f.joinToken, Version: version, Logger: log,
		TLS: sec0.tls, Joiner: sec0.joiner, Identities: sec0.ids, Certifier: sec0.certifier, Revocations: sec0.revocations,
		ShutdownGrace: f.shutdownGrace,
		Core: core.Config{HeartbeatInterval: f.heartbeat, SnapshotDir: filepath.Join(f.data, "snapshots"),
			Secrets: sec},
		StoreStats: storeStats(store),
	})
	if err != nil {
		return err
	}
	var managers []*provider.Manager
	var providerStatus func() any
	if providers != nil {
		if managers, err = startProviders(providers, f.data, f.joinToken, srv.Core(), sec0, log); err != nil {
			return err
		}
		providerStatus = func() any {
			out := make([]provider.Status, len(managers))
			for i, m := range managers {
				out[i] = m.Status()
			}
			return out
		}
	}
	mountAPI(srv, logs, sec, sec0.authn, providerStatus, log)
	if err := srv.Listen(); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "hodei server listening: grpc %s, http %s\n", srv.GRPCAddr(), srv.HTTPAddr())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	if len(managers) > 0 {
		g.Go(func() error {
			// Every provider shares the owner id: sweep them all before
			// any runs (the sweeps record events, so the core must run).
			for _, m := range managers {
				if err := m.Sweep(gctx); err != nil {
					log.Warn("provider sweep at start", "provider", m.Name(), "err", err)
				}
			}
			mg, mctx := errgroup.WithContext(gctx)
			for _, m := range managers {
				mg.Go(func() error { return m.Run(mctx) })
			}
			return mg.Wait()
		})
	}
	if f.anchorDir != "" {
		key, err := replay.LoadOrCreateKey(f.data)
		if err != nil {
			return err
		}
		g.Go(func() error {
			return (&replay.Anchorer{Store: store, Key: key, Dir: f.anchorDir, Every: f.anchorEvery, Logger: log}).Run(gctx)
		})
	}
	return g.Wait()
}
