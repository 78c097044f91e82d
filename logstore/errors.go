package logstore

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalid is returned (inside a *FieldError) for bad input from
	// outside: a job id that is not 1 to 128 bytes of [A-Za-z0-9._-] starting
	// with a letter or digit, or attempt 0 where a real attempt is needed.
	// Nothing is written.
	ErrInvalid = errors.New("invalid argument")

	// ErrNotFound is returned by Read and Stat (and by Follow with attempt 0)
	// when no log exists for the job attempt.
	ErrNotFound = errors.New("log not found")

	// ErrGap is returned (inside a *GapError) by Append when a chunk starts
	// beyond the stored end, and by Finish when the stored log is shorter than
	// the length the agent reports. Nothing is written; the agent must resend
	// from GapError.Want.
	ErrGap = errors.New("log gap")

	// ErrFinished is returned by Append for bytes beyond the end of a finished
	// (or sealed) log, and by Finish when the log was already finished with
	// other totals or sealed. Resent bytes below the end are not an error.
	ErrFinished = errors.New("log already finished")

	// ErrMismatch is returned (inside a *MismatchError) by Finish when the
	// stored bytes do not match the agent's length and CRC-32C. The log is
	// finished anyway and the mismatch is recorded (Stat.Mismatch), so live
	// followers end; repeating the same Finish returns the same error.
	ErrMismatch = errors.New("log checksum mismatch")

	// ErrOffset is returned by Read and Follower.Read for an offset beyond the
	// end of a finished log (an unfinished log may still grow to reach it).
	ErrOffset = errors.New("offset beyond end of log")

	// ErrClosed is returned by every method after Store.Close, and by
	// Follower.Read after Follower.Close.
	ErrClosed = errors.New("closed")
)

// FieldError names the bad argument. It unwraps to ErrInvalid.
type FieldError struct {
	Field  string // "job_id", "attempt", "offset" or "dir"
	Value  string // the bad value, quoted when printed
	Reason string
}

// Error implements error.
func (e *FieldError) Error() string {
	return fmt.Sprintf("%v: %s %q: %s", ErrInvalid, e.Field, e.Value, e.Reason)
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// GapError says where the stored log ends (Want) and where the agent's data
// started or ended (Got). It unwraps to ErrGap.
type GapError struct {
	Want uint64 // the stored end: resend from here
	Got  uint64 // the chunk's offset (Append) or the reported length (Finish)
}

// Error implements error.
func (e *GapError) Error() string {
	return fmt.Sprintf("%v: stored log ends at offset %d, got offset %d: resend from %d",
		ErrGap, e.Want, e.Got, e.Want)
}

// Unwrap returns ErrGap.
func (e *GapError) Unwrap() error { return ErrGap }

// MismatchError compares the stored log with what the agent reported in
// Finish. It unwraps to ErrMismatch.
type MismatchError struct {
	StoredBytes uint64
	StoredCRC   uint32
	AgentBytes  uint64
	AgentCRC    uint32
}

// Error implements error.
func (e *MismatchError) Error() string {
	return fmt.Sprintf("%v: stored %d bytes with crc32c %08x, agent reports %d bytes with crc32c %08x",
		ErrMismatch, e.StoredBytes, e.StoredCRC, e.AgentBytes, e.AgentCRC)
}

// Unwrap returns ErrMismatch.
func (e *MismatchError) Unwrap() error { return ErrMismatch }
