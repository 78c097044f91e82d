// Package logstore keeps the output of job attempts on the server: the
// masked bytes agents stream in LogChunk messages, stored by byte offset,
// readable at any time and followable live.
//
// Log bytes are deliberately not events (see DESIGN.md): the event log
// records that an attempt ran and how it ended; this store holds what it
// printed. It depends on nothing but the standard library.
//
// # Layout on disk
//
//	<dir>/                     e.g. <data dir>/logs
//	  <job id>/                one directory per job
//	    <attempt>.log          the stored bytes, exactly as followers see them
//	    <attempt>.meta         JSON, only once the log is truncated or finished
//	    <attempt>.meta.tmp     transient, while .meta is replaced
//
// Job ids are checked with domain.ValidateID's syntax (1 to 128 bytes of
// [A-Za-z0-9._-], starting with a letter or digit), so an id is always one
// plain directory name: "..", "/", NUL and the like are rejected with
// ErrInvalid before any path is built. Attempts are numbered from 1 and
// written in decimal. On a case-insensitive file system ids differing only
// in case would share a directory; servers run on Linux.
//
// # Offsets, idempotency and acks
//
// Append is idempotent by byte offset: bytes below the stored end are a
// resend and are dropped; a chunk starting beyond the end is a gap
// (*GapError naming the stored end, nothing written) and the agent must
// resend from there. The returned ack is the end of what the agent has
// delivered; the agent keeps its spool until the attempt is finished, so it
// can always resend.
//
// There are two offset spaces, equal until a log is truncated: the agent's
// (Append offsets, acks, Stat.Received) and the stored one (Read, Follow,
// Stat.Size), which after truncation ends with the marker line.
//
// # Size limit and truncation
//
// Once an attempt's log holds Options.MaxBytesPerAttempt bytes (64 MiB by
// default) the next byte truncates it: exactly one line
//
//	"\r\n[hodei: log truncated at 64 MiB; further output not stored]\r\n"
//
// is stored after the first 64 MiB, the truncation is recorded in .meta,
// and from then on Append stores nothing but keeps counting and
// acknowledging, so the job runs on and the agent is never stuck. The
// number of bytes not stored is Stat.Dropped: a running count while the job
// runs, exact after Finish (the agent's total minus the bytes kept), and
// kept in .meta; a viewer can show it next to the marker. A log of exactly
// the limit is complete, not truncated. The CRC of a truncated log is not
// checked. The limit applies per attempt, so a job's logs hold at most its
// attempts times the limit. A restart with another limit does not change
// a log already truncated.
//
// # What is synced when
//
//   - Append: the bytes are written to the operating system (pwrite) before
//     the ack is returned, so they survive a crash of the server process and
//     are at once visible to readers. They are not fsynced per chunk.
//   - Every Options.SyncInterval (1 s by default) each log written since its
//     last sync is fsynced, outside the log's lock, so appends go on; the
//     first sync of a new file also syncs its directory entries.
//   - Finish and Seal fsync the log, then write .meta atomically (temporary
//     file, fsync, rename, fsync of the directory) before returning: once the
//     agent is told its attempt is finished, the whole log is durable.
//   - Truncation fsyncs the log and writes .meta the same way (once per
//     attempt), so the record never claims a marker the file lacks.
//   - A log whose file is closed to respect MaxOpenFiles is fsynced first;
//     Sync and Close sync everything outstanding.
//
// So a power loss can lose up to SyncInterval of acknowledged bytes of a
// running attempt. After a restart such a log is shorter than the agent's
// ack; the agent's next chunk gets a *GapError naming the stored end, and it
// resends from there out of its spool.
//
// # Restart and partial writes
//
// A log's stored end is its file's size; nothing else is needed to resume.
// A torn last write only makes the log shorter. Bytes past the last fsync
// may be lost on a power loss (never on a process crash); if a file system
// kept garbage past them, Finish's CRC check would record a mismatch. The
// CRC of the stored bytes is kept while appending and recomputed from the
// file after a restart.
//
// # Followers and slow consumers
//
// A Follower is a single cursor: it reads the file at its offset, and at the
// end waits on the log's notification channel, which Append closes after
// each write. Backlog and live tail go through the same code, so there is
// no catch-up-to-live switch where bytes could be lost or repeated. No
// follower has a queue: a stalled one costs the writer nothing and misses
// nothing, it reads on from the file when it resumes. Followers end with
// io.EOF when the log is finished or sealed, with the context's error, or
// with ErrClosed. The latency from Append to a waiting follower's Read
// returning is a few microseconds (BenchmarkAppendToFollower).
//
// # Resources
//
// Each log's file stays open while it is in use, up to Options.MaxOpenFiles
// (256); beyond that the least recently used (clock algorithm) are closed
// and reopened on demand. An Append is one pwrite plus a few short locks
// (store-wide ones only shared, except for a log's first write after each
// sync); no global lock is held during I/O. A log's in-memory entry is
// dropped when it is closed, synced and unreferenced: everything it knew
// is on disk. Appends to one log are serialised; different logs proceed in
// parallel.
//
// # The port and its adapters
//
// Logs is the port: the server, the API and the bench take a Logs, never a
// *Store, and only cmd picks the adapter. Follow returns a Cursor (a
// *Follower here). Every adapter passes the conformance suite in
// logstore/logstoretest, which encodes this contract: offsets and acks,
// Finish's check, Seal, the size limit with exactly the TruncationMarker
// line, reads, attempts, followers and their endings, bad input and Close.
//
// # With the PostgreSQL event store
//
// A server started with --postgres keeps the job logs in the same database
// as its events, in tables of their own (logstore/postgres):
//
//	job_logs(job_id, attempt, size, received, crc, truncated_at, finished_at, sealed, ...)
//	job_log_chunks(job_id, attempt, off, data bytea, primary key (job_id, attempt, off))
//
// with their own migration record (job_log_migrations); the event store's
// es_* tables and roles are not touched. The data dir then holds no logs.
// The contract is the same; what differs is where bytes are durable:
// Append commits asynchronously (synchronous_commit = off: visible at once,
// flushed by PostgreSQL's WAL writer within a fraction of a second, the
// counterpart of the periodic fsync here), while Finish, Seal and truncation
// commit synchronously. Followers read by offset with a range query, are
// woken in-process by Append at once and across processes by LISTEN/NOTIFY,
// and poll as a fallback. Without --postgres (bbolt) the logs stay in files
// under <data dir>/logs, as described above.
//
// Not here: retention (deleting old jobs' logs), compression, and
// authorisation, which belongs to the API layer.
package logstore
