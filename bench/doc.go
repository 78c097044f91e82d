// Package bench measures Hodei's building blocks on the machine it runs on,
// for `hodei bench`. Each benchmark returns a result that prints as one JSON
// object, so runs can be compared and kept (BENCHMARKS.md).
//
// Store measures an event store against the limit of its own engine: durable
// appends per second with 1, 8, 64 and 512 concurrent appenders, each
// compared with a raw loop that writes the same number of records of the
// same size straight to the engine, in transactions as large as the store's
// group commits achieved at that concurrency. The ratio is the store's
// overhead (its indexes, hashing, validation, goroutine hand-offs); the raw
// loop is what the disk and the engine allow. An engine plugs in as a
// Target: BoltTarget is the bbolt file; a PostgreSQL target implements the
// same three methods.
//
// Benchmarks are measurements, never assertions: nothing here fails because
// a number is low.
package bench
