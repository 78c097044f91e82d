// Package server assembles a running Hodei server from an opened event
// store and log store: the orchestrator core, the Hodei Worker Protocol
// service for agents and the JobService API on one gRPC listener, and an HTTP
// listener for REST, Server-Sent Events, the web UI, health checks and
// metrics. cmd/hodei opens the adapters and hands them over; this package
// never imports an adapter.
//
// Lifecycle: New builds, Listen binds (port 0 is fine: Addrs reports the
// ports), Run serves until its context ends and then shuts down gracefully:
// it stops accepting work, gives streams a grace period to finish, stops the
// core (which snapshots the read models), and returns. The caller closes the
// stores afterwards.
//
// Security: Config.TLS serves both listeners with TLS (cmd/hodei passes
// pki.Bundle.ServerTLS: the data dir's own CA, or given files); nil means
// plaintext and New logs a warning (tests, and `hodei server
// --insecure-plaintext`). Config.Joiner (auth.Store) admits agents by
// managed join tokens; API authentication is the mounted API's
// Authenticator.
package server
