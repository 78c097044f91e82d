// Package spool keeps one job attempt's masked log on disk so that output
// survives a dropped connection and can be resent from any offset.
//
// A File is append-only: the job's reader appends masked bytes, the sender
// reads them back with ReadAt from whatever offset the server needs. The file
// holds the whole log until the server has acknowledged the attempt as
// finished, or the attempt is fenced; then Remove deletes it. Nothing is
// synced: the spool protects against network loss, not against losing the
// host (a job dies with its host anyway).
//
// A File is safe for one appender and any number of concurrent readers.
package spool
