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
package server
