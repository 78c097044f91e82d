// Package postgres is the PostgreSQL adapter of the eventstore.Store port,
// on github.com/jackc/pgx/v5. It passes the conformance suite
// (eventstore/eventstoretest) and is the store for production and
// multi-process deployments.
//
// # Schema
//
// Open applies the embedded migrations (migrations/NNNN_name.sql) that the
// database lacks, each recorded with its checksum in es_migrations; a
// recorded migration whose file changed, or a schema newer than the binary,
// stops Open. Released migrations are never edited: schema changes are new
// files. Migration 1 creates (and migration 2 drops es_streams again):
//
//	es_head      one row: last_position, last_hash
//	es_events    global_position PK (no sequence), stream_id, stream_version,
//	             event_type, schema_version, event_id uuid UNIQUE,
//	             recorded_at (Unix nanoseconds), actor, correlation_id,
//	             causation_id, payload, prev_hash, hash;
//	             UNIQUE (stream_id, stream_version)
//
// Times are stored as Unix nanoseconds and zero ids as the zero UUID, so an
// envelope read back is byte-identical (eventstore.MarshalEnvelope) to the
// one hashed and to what the other adapters store.
//
// # Roles and DSNs
//
// Migration 1 creates two NOLOGIN roles. hodei_owner owns every table and
// function. hodei_writer, the runtime role, may SELECT and INSERT es_events,
// SELECT and UPDATE es_head and SELECT es_migrations; it owns nothing. Row and statement triggers, ENABLE
// ALWAYS so that session_replication_role = replica does not silence them,
// reject UPDATE, DELETE and TRUNCATE of es_events for every role, owners and
// superusers included (an owner could drop them, but hodei_owner cannot log
// in).
//
// Open(ctx, dsn, opts) connects with dsn and runs every session as
// Options.Role (hodei_writer by default) through SET ROLE, so the login role
// of dsn must be a member of hodei_writer (or a superuser, which is then
// reduced to hodei_writer's rights). Migrations run before that, without SET
// ROLE, over Options.MigrateDSN when set and over dsn otherwise; they need a
// role that may create roles, tables and triggers and give them away (a
// superuser in practice), but only while the schema is behind: on a current
// schema Open only reads es_migrations. Production therefore uses
//
//	MigrateDSN: postgres://admin@db/hodei   (once per upgrade, or every start)
//	dsn:        postgres://hodei@db/hodei   (LOGIN, GRANT hodei_writer TO hodei)
//
// and a development box may give one superuser DSN for both.
//
// # Appends: one committer, gapless positions
//
// A sequence would hand out positions at INSERT and make them visible at
// COMMIT, in another order, so readers following positions could skip
// events. Here positions come from the es_head row instead, under a row lock
// held until COMMIT: they are dense and in commit order, and a rollback
// returns them.
//
// All appends of a process go through one committer goroutine (commit.go).
// It gathers the waiting AppendMany calls (group commit; it waits up to
// Options.GroupCommitWait for the callers of the previous batch to come back)
// and runs one transaction per batch:
//
//  1. read the versions of the batch's streams that the committer's cache
//     (Store.heads, 65,536 streams) lacks, each the last entry of its stream
//     in the UNIQUE (stream_id, stream_version) index, and lock the head row
//     (SELECT ... FROM es_head FOR UPDATE): one pipelined round trip;
//  2. decide every request against those versions and the earlier
//     requests of the batch: expected version, idempotency by event id (the
//     same rules as the memory adapter, eventstore.SameContent), then compute
//     positions and hashes with eventstore.NewEnvelope;
//  3. COPY the events, advance the head, pg_notify the new head;
//     SET LOCAL synchronous_commit = on; COMMIT;
//  4. answer the callers and publish the events to the eventstore.Bus.
//
// Event ids are checked by the UNIQUE index as the rows go in: a unique
// violation (a retried or reused id) rolls the attempt back and the batch
// runs again reading every id first, which yields each request's exact
// outcome (the original result with Duplicate, or ErrIdempotencyConflict). A
// version conflict also reads its request's ids, since a retry returns the
// original result whatever its expected version. A conflict fails only its
// request. A failed transaction fails every request of the batch, publishes
// nothing and re-reads the head; a statement that rejects a request's data
// makes the committer retry the batch's requests one by one.
//
// Stream versions take no lock: only the holder of the committer lock
// appends, so a version read in step 1 (or cached) stays true until this
// committer changes it, and the UNIQUE index would reject a version taken
// twice regardless. The cache holds versions as committed; it is emptied
// whenever the committer (re)connects and after every failed transaction.
// (Migration 1 kept versions in an es_streams table, locked and updated by
// every append; that cost a row lock, a heap update and their WAL per stream
// per batch, and migration 2 drops it.)
//
// If the connection fails while COMMIT is in flight, the appends fail with
// ErrCommitUnknown: they may be stored. Retrying them with the same event
// ids is safe and returns the original result if they were.
//
// # Two processes
//
// The committer's connection holds a session advisory lock
// (pg_try_advisory_lock, key 0x686f646569657301) for as long as it writes;
// the lock dies with the connection. A second process opening the same
// database fails with ErrLockHeld, naming the holder's backend, unless
// Options.Standby is set: then it opens at once, reads and subscribes, and
// its appends wait (up to their context) until it takes the lock over,
// which it tries every Options.LockPollInterval. Since every writer also
// takes the head row lock, even a writer that bypassed the advisory lock
// could not break the order of the log: it would only wait.
//
// Tools that only read (audit, rebuild) open with Options.ReadOnly: no
// migration, no committer lock, appends fail with ErrReadOnly. They can run
// beside the server.
//
// # Import
//
// Store.Import (import.go) writes envelopes copied from another log, such as
// a bbolt file (hodei migrate), verbatim: positions, versions and hashes are
// the source's, not assigned. It checks every link of the chain, that the
// first envelope follows the head row and that stream versions follow the
// stored ones, and writes with the append path's statements. Imports go
// through the committer goroutine as requests of their own, one transaction
// each, so they hold the committer lock and never interleave with appends;
// an append between two imports makes the next one fail with
// ErrHeadMismatch.
//
// # Subscriptions
//
// Subscribe returns an eventstore.Subscription over the store and its Bus.
// The committer publishes each committed batch to the Bus; a LISTEN
// connection turns NOTIFYs from other processes' committers into
// Bus.Advance; and a waiting subscription also re-reads the database every
// Options.PollInterval, so NOTIFY is only a hint and correctness never
// depends on it. Positions are dense by construction: a subscription that
// reads a gap stops with an *eventstore.CorruptError rather than skip.
//
// LISTEN and the advisory lock need session-level connections: point the
// store at PostgreSQL directly or through a session-pooling proxy, not a
// transaction-pooling one.
package postgres
