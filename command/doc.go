// Package command runs domain commands against the event log: the managed
// update of STYLE.md. For one aggregate it loads the current state (from an
// LRU of recently used aggregates, or by folding the aggregate's stream),
// calls the domain's pure Decide, appends the events at the expected version,
// and on a version conflict reloads and tries again.
//
// Batches (a submit call with many jobs, one scheduling round) go to the
// store together through AppendMany, so one group commit carries them; a
// conflicting member of a batch is retried alone.
//
// The cache is only an optimisation: an entry is the state folded through a
// known stream version, and a stale entry is caught by the store's expected
// version check, never trusted past it.
package command
