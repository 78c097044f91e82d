// Command hodei-agent runs jobs for a hodei server. It dials the server
// (reverse connect), registers with a join token and runs the jobs it is
// assigned in PTYs, streaming their masked output back (package agent).
//
// Configuration comes from flags, with environment variables as defaults:
//
//	-server     HODEI_SERVER       host:port of the server's HWP endpoint (required)
//	-token      HODEI_TOKEN        join token from `hodei token create --agent` (or -token-file / HODEI_TOKEN_FILE)
//	-name       HODEI_AGENT_NAME   agent name (default: host name)
//	-labels     HODEI_LABELS       k=v,k=v
//	-slots      HODEI_SLOTS        concurrent jobs (default: CPUs)
//	-work-dir   HODEI_WORK_DIR     spools and job directories
//	-shell      HODEI_SHELL        e.g. "/bin/bash -c" (default "/bin/sh -c")
//	-cancel-grace HODEI_CANCEL_GRACE  SIGTERM -> SIGKILL delay (default 10s)
//	-ca-file, -tls-server-name  (HODEI_CA_FILE, HODEI_TLS_SERVER_NAME)
//	-insecure-plaintext  HODEI_INSECURE_PLAINTEXT  no TLS (warns; tests only)
//	-log-level  HODEI_LOG_LEVEL    debug, info, warn, error
//
// TLS is always on unless -insecure-plaintext: the agent trusts exactly the
// CA whose SHA-256 fingerprint the join token carries
// ("hodei1.<id>.<secret>.<ca-sha256>"), so the token alone is enough to
// reach the right server; -ca-file trusts a given CA bundle instead.
//
// Enrolled, the agent keeps its identity in -work-dir/identity (worker id,
// key, the client certificate the server signed, the CA fingerprint; mode
// 0600) and dials with mutual TLS. Restarted with the same -work-dir it needs
// no -token: it reconnects with its certificate (as the same worker unless it
// had drained and left, when it enrols as a new one). A revoked worker
// (`hodei worker revoke`) needs a new join token.
//
// Signals: the first SIGTERM or SIGINT drains (no new jobs; running jobs
// finish and are delivered; then exit 0). A second one cancels: running jobs
// get SIGTERM, then SIGKILL after their grace, final logs are delivered
// briefly, exit 0. Exit status 1 means the agent failed (e.g. refused by the
// server), 2 a bad command line.
//
// Build it small and static:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" ./cmd/hodei-agent
package main
