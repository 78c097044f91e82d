// Package replay holds Hodei's audit tools over the event log: Verify checks
// that positions are dense, stream versions contiguous, the SHA-256 chain
// intact and the adapter's indexes in agreement with the log, and names the
// first bad position.
//
// replay reads logs only through the eventstore port (and the small optional
// interfaces it declares here); it never imports an adapter. cmd/hodei opens
// the adapter and hands it over.
package replay
