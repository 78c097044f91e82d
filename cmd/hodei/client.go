package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/api"
	"github.com/hodei-jobs/hodei/api/jobpb"
)

// defaultServer is where the CLI finds the JobService unless --server or
// HODEI_SERVER says otherwise: `hodei server`'s default gRPC address.
const defaultServer = "127.0.0.1:7070"

// clientFlags are the flags of every command that calls the server.
type clientFlags struct {
	server    string
	token     string
	ca        string
	plaintext bool
	output    string
	timeout   time.Duration
}

// Where the CLI looks for the server's CA and the admin token when neither
// a flag nor the environment names them: the files `hodei server` makes in
// its default data dir, so the quickstart needs no flags on the same host.
const (
	defaultCAFile    = "data/ca.pem"
	defaultTokenFile = "data/admin.token"
)

// clientEnv are the only environment variables the client commands read:
// not every HODEI_* (a job's own environment has HODEI_JOB_ID, HODEI_ATTEMPT
// and the like, which must not turn into flags of a hodei run inside it).
var clientEnv = map[string]string{"server": "HODEI_SERVER", "token": "HODEI_TOKEN", "ca": "HODEI_CA",
	"insecure-plaintext": "HODEI_INSECURE_PLAINTEXT"}

// addClientFlags adds --server, --token, --request-timeout and -o to c.
// HODEI_SERVER and HODEI_TOKEN apply when the flags are not given.
func addClientFlags(c *cobra.Command, f *clientFlags) {
	c.Flags().StringVar(&f.server, "server", defaultServer, "gRPC address of the hodei server (env HODEI_SERVER)")
	c.Flags().StringVar(&f.token, "token", "", "API token (env HODEI_TOKEN; default: the contents of ./"+defaultTokenFile+")")
	c.Flags().StringVar(&f.ca, "ca", "", "PEM CA certificate to trust (env HODEI_CA; default ./"+defaultCAFile+" when present, else the system roots)")
	c.Flags().BoolVar(&f.plaintext, "insecure-plaintext", false, "connect without TLS, to a server run with --insecure-plaintext (env HODEI_INSECURE_PLAINTEXT)")
	c.Flags().DurationVar(&f.timeout, "request-timeout", 30*time.Second, "time limit of each call to the server (not of following a log)")
	addOutputFlag(c, &f.output)
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
}

// client is a connection to the JobService.
type client struct {
	jobpb.JobServiceClient
	conn    *grpc.ClientConn
	server  string
	timeout time.Duration
}

// dial is the one place the CLI connects to the server. It reads the
// HODEI_* environment for flags not given and checks -o. The connection is
// made lazily: an unreachable server shows as the first call's error.
// It speaks TLS unless --insecure-plaintext, trusting --ca (or the data
// dir's CA), and sends --token (or the data dir's admin token).
func dial(cmd *cobra.Command, f *clientFlags) (*client, error) {
	for name, env := range clientEnv {
		if fl := cmd.Flags().Lookup(name); fl != nil && !fl.Changed {
			if v, ok := os.LookupEnv(env); ok {
				if err := fl.Value.Set(v); err != nil {
					return nil, usageError("%s=%q: %v", env, v, err)
				}
			}
		}
	}
	if err := checkOutput(f.output); err != nil {
		return nil, err
	}
	if f.server == "" {
		return nil, usageError("--server is empty: give host:port of the hodei server")
	}
	creds := insecure.NewCredentials()
	if !f.plaintext {
		cfg, err := clientTLS(f.ca)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if f.token == "" {
		if b, err := os.ReadFile(defaultTokenFile); err == nil {
			f.token = strings.TrimSpace(string(b))
		}
	}
	if f.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: f.token, secure: !f.plaintext}))
	}
	conn, err := grpc.NewClient(f.server, opts...)
	if err != nil {
		return nil, usageError("--server %q: %v", f.server, err)
	}
	return &client{JobServiceClient: jobpb.NewJobServiceClient(conn), conn: conn, server: f.server, timeout: f.timeout}, nil
}

// call returns a context for one unary call.
func (c *client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// Close closes the connection.
func (c *client) Close() error { return c.conn.Close() }

// clientTLS trusts caFile, else ./data/ca.pem when present, else the
// system roots.
func clientTLS(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	flag := "--ca"
	if caFile == "" {
		if _, err := os.Stat(defaultCAFile); err != nil {
			return cfg, nil
		}
		caFile, flag = defaultCAFile, defaultCAFile
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, usageError("%s: %v", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, usageError("%s: no PEM certificate in %s", flag, caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// bearerToken sends the API token as "authorization: Bearer <token>".
type bearerToken struct {
	token  string
	secure bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}

// RequireTransportSecurity refuses to send the token in plaintext unless
// the user asked for plaintext.
func (t bearerToken) RequireTransportSecurity() bool { return t.secure }

// flagFor maps the fields the server names in errors to the CLI's flags.
var flagFor = map[string]string{
	"spec.name":                   "--name",
	"spec.script":                 "the script",
	"spec.env":                    "--env",
	"spec.secrets":                "--secret",
	"spec.labels":                 "--label",
	"spec.selector":               "--selector",
	"spec.resources.slots":        "--slots",
	"spec.resources.cpu_millis":   "--cpu",
	"spec.resources.memory_bytes": "--memory",
	"spec.priority":               "--priority",
	"spec.timeout":                "--timeout",
	"spec.max_attempts":           "--attempts",
	"spec.queue":                  "--queue",
	"idempotency_key":             "--idempotency-key",
	"statuses":                    "--status",
	"labels":                      "--label",
	"page_size":                   "--limit",
	"attempt":                     "--attempt",
	"value":                       "the value",
}

// callError turns an error from the server into one that says what to do,
// with an exit code: 2 for bad input (the command line was wrong), 1 else.
func (c *client) callError(op string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("%s: cannot reach server at %s: is `hodei server` running? (set --server or HODEI_SERVER) (%s)", op, c.server, msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: no answer from %s within --request-timeout %s", op, c.server, c.timeout)
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("%s: %s (give an API token with --token or HODEI_TOKEN; the server's admin token is in <data>/admin.token)", op, msg)
	case codes.InvalidArgument:
		if field := api.FieldOf(err); field != "" {
			f := strings.TrimPrefix(field, "jobs[0].")
			base, _, _ := strings.Cut(f, "[")
			if flag, ok := flagFor[base]; ok {
				return &exitError{code: exitUsage, err: fmt.Errorf("%s: %s: %s", op, flag, msg)}
			}
		}
		return &exitError{code: exitUsage, err: fmt.Errorf("%s: %s", op, msg)}
	case codes.Unimplemented:
		return fmt.Errorf("%s: the server at %s does not offer this (is it an older hodei?): %s", op, c.server, msg)
	case codes.Canceled:
		return fmt.Errorf("%s: interrupted", op)
	}
	return fmt.Errorf("%s: %s", op, msg)
}

// isTerminal reports whether r is a terminal (so no script is being piped).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// interrupted reports whether err is the command's context ending (Ctrl-C).
func interrupted(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled)
}
