// Package postgres keeps job attempt logs in PostgreSQL: the table-backed
// logstore.Logs that a server uses when its event store is PostgreSQL, so
// the logs live in the same database as the events (in tables of their own)
// and not in the server's data dir. It honours the same contract as the file
// store (see package logstore and its conformance suite logstoretest): the
// same offsets, acks, errors, size limit and truncation marker line
// (logstore.TruncationMarker).
//
// # Tables
//
//	job_logs(job_id, attempt, size, received, crc, truncated_at, finished_at,
//	         sealed, agent_bytes, agent_crc, crc_checked, mismatch)
//	         primary key (job_id, attempt)
//	job_log_chunks(job_id, attempt, off, data bytea)
//	         primary key (job_id, attempt, off)
//	job_log_migrations(version, name, checksum, applied_at)
//
// Open applies the embedded migrations (migrations/NNNN_name.sql), recorded
// in job_log_migrations under their own advisory lock; it never changes the
// event store's es_* tables or its roles. The tables are created by, and
// belong to, the role the DSN logs in as on the first Open (it needs CREATE
// on the schema); when the event store's runtime role hodei_writer exists
// then, it is granted SELECT, INSERT and UPDATE on them, so a server started
// once as a superuser can run on as a login that is only a member of
// hodei_writer (see the README's PostgreSQL section).
//
// A log's row holds its stored size (truncation marker included), the agent
// bytes received, the CRC-32C of the stored bytes, and the truncation and
// finish records. Its bytes are chunks that tile [0, size): each Append
// inserts one chunk at off = size in the same statement that advances the
// row, conditionally on the row still having that size, so a chunk and its
// row never disagree and two writers can never interleave.
//
// # What is durable when
//
//   - Append commits with synchronous_commit = off (its own connection
//     pool): when it returns the bytes are committed and visible to every
//     reader and survive a crash of the server process, but the WAL flush
//     happens in the background, within three wal_writer_delay (600ms by
//     default). So, like the file store (pwrite, fsync every second), a
//     power loss of the database host can lose a short tail of
//     acknowledged bytes; the agent's next chunk then gets a *GapError
//     naming the stored end and it resends from its spool.
//   - Finish, Seal and truncation commit synchronously before returning:
//     once an agent is told its attempt is finished, the whole log is
//     durable, and the row never claims a marker that is not stored.
//   - Sync and Close commit a transaction synchronously, which flushes the
//     WAL (and so every earlier asynchronous commit) up to it.
//
// # Appends
//
// An Append is one statement and one asynchronous commit. The store caches
// each live log's row in memory, so it decides idempotency, gaps and
// truncation without reading first; every write is conditional on the row
// it assumed, and on a mismatch (another process wrote the log) it rereads
// the row and decides again. A gap is only reported after a fresh read.
// Appends to one log are serialised by a mutex; different logs run in
// parallel: Options.MaxConns writers each send the appends that queued up
// while they were busy (up to 64, of different logs) in one pipelined round
// trip and one commit, so under load appends share round trips, and alone
// one goes out at once. The CRC is kept incrementally, so Finish never
// rereads the bytes, even after a restart.
//
// # Followers
//
// A Follower is a cursor: each Read is one range query on the chunks'
// primary key from its offset, for the backlog and the live tail alike (no
// catch-up-to-live switch, so no gap or duplicate at the seam), reading the
// row in the same snapshot to know where the log ends and whether it is
// finished. At the end of a live log it waits on the log's channel, which
// this process's Append closes right after committing; other processes'
// changes arrive by LISTEN/NOTIFY on NotifyChannel (sent by a background
// notifier, coalesced to at most one NOTIFY per Options.NotifyInterval,
// because NOTIFY serialises commits database-wide); and it re-reads every
// Options.PollInterval regardless, so correctness never depends on NOTIFY.
// A follower holds no queue and no connection while it waits: a stalled
// one never slows the writer.
//
// Not here: retention (deleting old jobs' logs), compression beyond
// PostgreSQL's TOAST, and authorisation, which belongs to the API layer.
package postgres
