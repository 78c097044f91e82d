package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hodei-jobs/hodei/agent"
)

func main() {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	code := Main(context.Background(), os.Args[1:], os.Getenv, os.Stderr, sig)
	signal.Stop(sig)
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Main runs the agent with args, taking defaults from getenv, logging to
// stderr, until it has drained or stopped, and returns the exit code. Each
// value on sig is a termination request: the first drains, the second
// cancels. Cancelling ctx cancels at once. Tests call it directly.
func Main(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, sig <-chan os.Signal) int {
	cfg, logLevel, err := parse(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "hodei-agent: %v\n", err)
		return exitUsage
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel}))
	a, err := agent.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "hodei-agent: %v\n", err)
		return exitFailure
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	signals := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintf(stderr, "hodei-agent: %v\n", err)
				return exitFailure
			}
			return exitOK
		case s := <-sig:
			signals++
			if signals == 1 {
				cfg.Logger.Info("signal: draining; send again to cancel running jobs", "signal", s.String())
				a.Drain(false)
			} else {
				cfg.Logger.Info("signal: cancelling running jobs", "signal", s.String())
				cancel()
			}
		}
	}
}

// parse builds the agent config from flags, with the environment as
// defaults.
func parse(args []string, getenv func(string) string, stderr io.Writer) (agent.Config, slog.Level, error) {
	var cfg agent.Config
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("hodei-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", env("HODEI_SERVER", ""), "server HWP address host:port (HODEI_SERVER)")
	token := fs.String("token", env("HODEI_TOKEN", ""), "join token (HODEI_TOKEN)")
	tokenFile := fs.String("token-file", env("HODEI_TOKEN_FILE", ""), "file holding the join token (HODEI_TOKEN_FILE)")
	name := fs.String("name", env("HODEI_AGENT_NAME", ""), "agent name; default the host name (HODEI_AGENT_NAME)")
	labels := fs.String("labels", env("HODEI_LABELS", ""), "labels k=v,k=v (HODEI_LABELS)")
	slots := fs.String("slots", env("HODEI_SLOTS", "0"), "concurrent jobs; 0 means one per CPU (HODEI_SLOTS)")
	workDir := fs.String("work-dir", env("HODEI_WORK_DIR", "hodei-agent-work"), "work directory (HODEI_WORK_DIR)")
	shell := fs.String("shell", env("HODEI_SHELL", ""), `shell prefix, e.g. "/bin/bash -c" (HODEI_SHELL)`)
	grace := fs.String("cancel-grace", env("HODEI_CANCEL_GRACE", "10s"), "SIGTERM to SIGKILL delay (HODEI_CANCEL_GRACE)")
	nice := fs.String("job-nice", env("HODEI_JOB_NICE", "0"), "niceness of job processes, 0..19 (HODEI_JOB_NICE)")
	plainDefault, err := strconv.ParseBool(env("HODEI_INSECURE_PLAINTEXT", "false"))
	if err != nil {
		return cfg, 0, fmt.Errorf("HODEI_INSECURE_PLAINTEXT: %q is not a boolean", getenv("HODEI_INSECURE_PLAINTEXT"))
	}
	plaintext := fs.Bool("insecure-plaintext", plainDefault, "dial without TLS, to a server run with --insecure-plaintext (HODEI_INSECURE_PLAINTEXT)")
	caFile := fs.String("ca-file", env("HODEI_CA_FILE", ""), "PEM CA bundle to trust instead of the fingerprint in the join token (HODEI_CA_FILE)")
	serverName := fs.String("tls-server-name", env("HODEI_TLS_SERVER_NAME", ""), "TLS server name override (HODEI_TLS_SERVER_NAME)")
	level := fs.String("log-level", env("HODEI_LOG_LEVEL", "info"), "debug, info, warn or error (HODEI_LOG_LEVEL)")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return cfg, 0, err
	}
	if *version {
		fmt.Fprintln(stderr, "hodei-agent", agent.Version)
		return cfg, 0, flag.ErrHelp
	}
	if fs.NArg() > 0 {
		return cfg, 0, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *server == "" {
		return cfg, 0, errors.New("-server (HODEI_SERVER) is required")
	}
	cfg.Server, cfg.Name, cfg.WorkDir = *server, *name, *workDir
	cfg.Token = *token
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return cfg, 0, fmt.Errorf("-token-file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	}
	if *labels != "" {
		cfg.Labels = map[string]string{}
		for _, kv := range strings.Split(*labels, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				return cfg, 0, fmt.Errorf("-labels: %q is not k=v", kv)
			}
			cfg.Labels[k] = v
		}
	}
	n, err := strconv.Atoi(*slots)
	if err != nil || n < 0 {
		return cfg, 0, fmt.Errorf("-slots: %q is not a count", *slots)
	}
	cfg.Slots = n
	if *shell != "" {
		cfg.Shell = strings.Fields(*shell)
	}
	d, err := time.ParseDuration(*grace)
	if err != nil || d <= 0 {
		return cfg, 0, fmt.Errorf("-cancel-grace: %q is not a positive duration", *grace)
	}
	cfg.CancelGrace = d
	if cfg.JobNice, err = strconv.Atoi(*nice); err != nil || cfg.JobNice < 0 || cfg.JobNice > 19 {
		return cfg, 0, fmt.Errorf("-job-nice: %q is not 0..19", *nice)
	}
	if cfg.TLS, err = agentTLS(*server, cfg.Token, *caFile, *serverName, *workDir, *plaintext, stderr); err != nil {
		return cfg, 0, err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return cfg, 0, fmt.Errorf("-log-level: %w", err)
	}
	return cfg, lvl, nil
}

// agentTLS is how the agent trusts the server: a --ca-file it is given, or
// else exactly the CA whose fingerprint the join token carries, or, with no
// token, the one an earlier enrolment saved in the work dir (a restarted
// agent reconnects with its client certificate). Plaintext (nil) only with
// -insecure-plaintext, which warns.
func agentTLS(server, token, caFile, serverName, workDir string, plaintext bool, stderr io.Writer) (*tls.Config, error) {
	if plaintext {
		if caFile != "" {
			return nil, errors.New("-insecure-plaintext and -ca-file exclude each other")
		}
		fmt.Fprintln(stderr, "hodei-agent: WARNING: -insecure-plaintext: the join token and job secrets cross the network unencrypted")
		return nil, nil
	}
	if serverName == "" {
		if host, _, err := net.SplitHostPort(server); err == nil {
			serverName = host
		}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca-file: no certificates in %s", caFile)
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, RootCAs: pool}, nil
	}
	fp, err := agent.JoinTokenFingerprint(token)
	if err != nil && token == "" {
		if id, ierr := agent.LoadIdentity(workDir); ierr == nil && id.CAFingerprint != "" {
			fp, err = id.CAFingerprint, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("-token: cannot trust the server: give a join token from `hodei token create --agent` (it carries the CA fingerprint), or -ca-file, or a -work-dir where the agent enrolled before: %w", err)
	}
	return agent.PinnedTLS(fp, serverName, nil), nil
}
