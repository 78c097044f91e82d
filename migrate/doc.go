// Package migrate copies an event log from one store into another, envelope
// for envelope: positions, stream versions, event ids, times, actors,
// correlation and causation ids, payloads and hashes arrive unchanged, so the
// copy is the same hash chain and ends at the same head. hodei migrate uses it
// to move a bbolt log into PostgreSQL.
//
//	res, err := migrate.Run(ctx, boltStore, pgStore, migrate.Options{Progress: bar})
//
// # How a run goes
//
//  1. Read both heads. An empty target starts at position 1. A non-empty
//     target must be a prefix of the source: the source's event at the
//     target's head position must carry the target's head hash (the chain
//     makes that hash stand for everything before it). Otherwise Run refuses
//     with a *DivergedError naming the first position at which the logs
//     differ, found by bisecting on hashes, and writes nothing.
//  2. Copy from the target's head + 1 to the source's head in batches
//     (Options.BatchSize events, Options.MaxBatchBytes bytes): read a page
//     from the source, check every link (eventstore.VerifyLink) from the
//     target's head on, hand it to Importer.Import, report progress.
//  3. Read both heads again. Equal (position and hash): done. The source grew
//     meanwhile: copy the rest. Anything else is an error.
//
// # Resuming
//
// Every Import is atomic and starts where the target's head is, so an
// interrupted run (cancelled context, lost connection, crash) leaves the
// target at a batch boundary of a correct prefix. Running again continues from
// there: no event is copied twice, none is skipped.
//
// # Dependencies
//
// migrate imports only the eventstore port. The target is any Importer (the
// PostgreSQL adapter's *postgres.Store is one); the source any store's
// ReadAll and Head. Wiring adapters is cmd's job.
package migrate
