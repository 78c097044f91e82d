// Package eventstore defines Hodei's append-only, hash-chained event log: the
// Store port that every adapter implements, the Envelope that every stored
// event travels in, the sentinel errors, the SHA-256 chain, the msgpack codec
// with its event-type registry and upcasters, and the in-process Bus that
// delivers committed events to subscribers.
//
// Adapters live below this package (eventstore/bolt, eventstore/postgres,
// eventstore/memory), never import each other, and all pass the conformance
// suite in eventstore/eventstoretest.
//
// # Invariants
//
//   - Global positions start at 1 and are dense: every position below the head
//     holds exactly one event, rollbacks and failed commits included.
//   - Stream versions start at 1 and are contiguous per stream.
//   - An append is atomic for its batch of events on one stream and checks the
//     caller's ExpectedVersion in the same step that writes; a conflict writes
//     nothing and returns a *VersionConflictError (errors.Is ErrVersionConflict).
//   - Acknowledged means durable: Append returns only after the commit that
//     holds its events is synced.
//   - Event ids are unique store-wide and the index is durable: retrying an
//     append with the same ids and content returns the original positions, even
//     after a restart; reusing an id for different content is
//     ErrIdempotencyConflict.
//   - hash = SHA-256(prev_hash || canonical bytes of the envelope without its
//     hash); see Chain. The first event's prev_hash is 32 zero bytes.
//   - Subscribers see every committed event exactly once, in global order, and
//     never an uncommitted one. A slow subscriber never blocks the writer and
//     never loses events: it reads from the store instead of the ring (see Bus).
//
// # Use
//
//	res, err := store.Append(ctx, "job-42", eventstore.NoStream, []eventstore.EventData{ev})
//	sub := eventstore.Subscribe(store, bus, 0) // every event from position 1
//	defer sub.Close()
//	for {
//		batch, err := sub.Next(ctx)
//		...
//	}
package eventstore
