// Package projections builds Hodei's read models from the event log and keeps
// them current.
//
// A Projection folds events, in global order, into in-memory state. The
// Runner feeds every registered projection from one Subscription, so all read
// models advance together and reflect one log position. Each projection's
// state and the position it reflects are written together, atomically, in a
// snapshot file (write to a temporary file, fsync, rename), so a restart loads
// the snapshot and replays only the tail of the log instead of a cold scan
// from position 1.
//
// Projection names are persistent identifiers: snapshots are keyed by them.
// Change a projection's name (e.g. "jobs.v2") whenever its state or its fold
// changes incompatibly; the old snapshot is then ignored and the new one is
// rebuilt from position 1.
//
// Invariants:
//   - a projection sees every event exactly once, in position order;
//   - a snapshot's state is exactly the fold of positions 1..P for its P;
//   - StateHash depends only on the events folded (deterministic encoding), so
//     a rebuild from zero and the live state at the same position hash alike.
package projections
