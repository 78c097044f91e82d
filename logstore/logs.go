package logstore

import (
	"context"
	"io"
)

// Logs is the port every log store implements: the file Store in this
// package and the table-backed one in logstore/postgres. The server, the API
// and the bench depend on it, never on an adapter; cmd picks the adapter.
// The conformance suite logstore/logstoretest checks the contract below
// (and the one in this package's documentation) for every adapter.
//
// All methods are safe for concurrent use. Job ids must be 1 to 128 bytes
// of [A-Za-z0-9._-] starting with a letter or digit, attempts are numbered
// from 1 (0 means "the latest attempt with a log" where a method says so);
// anything else is a *FieldError (ErrInvalid) and nothing is written. After
// Close every method returns ErrClosed.
type Logs interface {
	// Append stores data as the attempt's bytes [offset, offset+len(data))
	// and returns the ack: the end of what the agent has delivered. Bytes
	// below the stored end are a resend and dropped; a chunk starting beyond
	// it is a *GapError naming the stored end (nothing written). Past the size
	// limit one truncation marker line is stored and later bytes are counted,
	// not stored, while the ack advances. After Finish or Seal resent bytes
	// are acknowledged and new ones return ErrFinished. When Append returns
	// the bytes are visible to Read and followers and survive a crash of the
	// server process; see the adapter for when they are durable. It never
	// waits for a follower.
	Append(jobID string, attempt uint32, offset uint64, data []byte) (acked uint64, err error)

	// Finish marks the log complete with the agent's totals (length and
	// CRC-32C, Castagnoli) and makes it durable before returning; followers
	// reach io.EOF. Errors: *GapError when fewer bytes are stored than
	// totalBytes (nothing recorded); *MismatchError when the stored bytes
	// differ (recorded, finished anyway; not checked on a truncated log);
	// ErrFinished when sealed or finished with other totals. Repeating a
	// Finish returns what the first returned.
	Finish(jobID string, attempt uint32, totalBytes uint64, crc32c uint32) error

	// Seal marks the log complete as it stands, without totals, creating an
	// empty one if there is none; followers reach io.EOF. Sealing a finished
	// log does nothing.
	Seal(jobID string, attempt uint32) error

	// Stat describes a log; attempt 0 means the latest. ErrNotFound when the
	// attempt has no log.
	Stat(jobID string, attempt uint32) (Stat, error)

	// Read copies stored bytes from offset into p and returns how many:
	// io.EOF (n possibly > 0) when the read reaches the end of a finished log,
	// 0, nil at the end of a live one. Attempt 0 means the latest. Errors:
	// ErrNotFound; ErrOffset beyond the end of a finished log.
	Read(jobID string, attempt uint32, offset uint64, p []byte) (int, error)

	// Attempts lists the attempts of a job that have a log, ascending; none
	// is an empty list, not an error.
	Attempts(jobID string) ([]uint32, error)

	// Follow returns a cursor over the log from stored offset from: the
	// backlog, then the live tail, with no gap or duplicate between them.
	// Attempt 0 means the latest attempt with a log, resolved now
	// (ErrNotFound when none); an attempt with no log yet is waited for. The
	// cursor ends with io.EOF at the end of a finished log, ErrOffset when
	// from is beyond it, the context's error, or ErrClosed when the store
	// closes. A stalled cursor holds no queue and never slows Append. The
	// caller closes it.
	Follow(ctx context.Context, jobID string, attempt uint32, from uint64) (Cursor, error)

	// Sync makes every acknowledged byte durable now (the store also does
	// so on its own within about a second).
	Sync() error

	// Close syncs, ends every cursor with ErrClosed and releases resources.
	// Calling it again returns nil.
	Close() error
}

// Cursor reads one attempt's log; see Logs.Follow. It is not safe for
// concurrent use: one goroutine reads, and cancelling the context given to
// Follow stops a blocked Read from another.
type Cursor interface {
	// Read waits until at least one byte is available and returns the
	// bytes from Offset on; its errors are sticky.
	// Close releases the cursor; later Reads return ErrClosed. It returns nil.
	io.ReadCloser
	// Offset is the stored offset of the next byte Read returns.
	Offset() uint64
	// Attempt is the attempt followed (resolved when Follow got 0).
	Attempt() uint32
}

var (
	_ Logs   = (*Store)(nil)
	_ Cursor = (*Follower)(nil)
)

// TruncationMarker returns the line a log store keeps in place of
// everything past a log's size limit of limit bytes, e.g. for 64 MiB
//
//	"\r\n[hodei: log truncated at 64 MiB; further output not stored]\r\n"
//
// Every adapter stores exactly this line, once, right after the first limit
// bytes.
func TruncationMarker(limit uint64) []byte { return markerLine(limit) }

// CheckJobID returns a *FieldError (ErrInvalid) unless id is a valid job id:
// 1 to 128 bytes of [A-Za-z0-9._-] starting with a letter or digit (the
// syntax of domain.ValidateID). Adapters check ids with it.
func CheckJobID(id string) error { return checkJobID(id) }

// CheckAttempt returns a *FieldError (ErrInvalid) for attempt 0 unless
// latestOK, when 0 stands for the latest attempt.
func CheckAttempt(attempt uint32, latestOK bool) error {
	_, err := newKey("x", attempt, latestOK)
	return err
}
