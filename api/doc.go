// Package api is Hodei's public API: the gRPC JobService (api/jobpb) and the
// same operations as REST/JSON under /api/v1, with Server-Sent Events for
// logs and events, plus the embedded web UI (package web). The server
// (package server) creates one Service and mounts it:
//
//	svc := api.New(core, logs, secrets, api.Options{})
//	svc.RegisterGRPC(grpcServer)           // hodei.api.v1.JobService + reflection
//	mux.Handle("/", svc.HTTPHandler())     // /api/v1/..., /ui/..., / -> /ui/
//
// # Layers
//
//	gRPC client ──> grpcServer (grpc.go) ─┬─> core (submit, cancel, drain, reads)
//	REST client ──> rest.go ── JSON<->pb ─┘   logstore (WatchLog), secrets
//	                     └─ SSE: watchLog / watchEvents with an emit callback
//
// The gRPC implementation is the only implementation: REST handlers decode
// JSON strictly (unknown fields rejected, the bad field named), convert it
// to the request message, call the same method and encode its answer as
// JSON (json.go holds the JSON shapes, which the CLI prints for -o json).
// Streaming operations share watchLog and watchEvents, which call an emit
// function from the calling goroutine only.
//
// # Errors
//
// One translation per boundary: toStatus turns domain, store and input
// errors into gRPC status codes (INVALID_ARGUMENT carries a
// google.rpc.BadRequest naming the field); httpStatus maps those codes to
// HTTP statuses and the JSON body {"error": …, "field": …, "code": …}. Bad
// input is rejected before anything is written: a batch submit with one bad
// job submits none.
//
// # Callers
//
// Every operation starts with Service.caller, the one place where the
// caller's identity is derived: the bearer credential of the request (gRPC
// metadata "authorization", or the HTTP Authorization header, or the
// access_token query parameter for EventSource) goes to
// Options.Authenticator together with the operation's name. Without an
// Authenticator every caller is Anonymous. Events record the caller as
// "user:<name>"; idempotency keys are scoped by caller.
//
// # Idempotent submits
//
// A submit with an idempotency key gets the job id
// "k" + base32(SHA-256(caller, key))[:26], so a retry finds the job the
// first call created: same spec, the existing job is returned (created =
// false); another spec, ALREADY_EXISTS naming the key. Ids derived from
// keys are not time-ordered; lists order jobs by submission (seq) anyway.
//
// # Read your writes
//
// Mutating calls return after their events are durable and after the read
// models reflect them (core.WaitFor), so a list right after a submit shows
// the job.
//
// # Slow consumers
//
// A log follower and an event watcher are single cursors over the log store
// and the event store: a slow client falls behind and reads on from storage
// at its own pace; nothing is queued for it and no writer waits for it.
package api
