// Package bolt is the embedded eventstore.Store: Hodei's event log in one
// bbolt file, the default for a server on a fresh machine.
//
//	s, err := bolt.Open(filepath.Join(dataDir, "events.db"), bolt.Options{})
//	...
//	defer s.Close() // waits for queued appends, writes the index tail
//
// # Write path: one committer, group commit
//
//	Append ─┐                                            ┌──────── writer ────────┐
//	Append ─┼─> bounded queue ─> sequencer ─> staged ───>│ db.Update: put events, │
//	AppendMany                  validate,     batch      │ meta head, index chunk;│
//	   ^                        hash, encode  (taken     │ commit: write, sync,   │
//	   │                                      at once)   │ meta, sync             │
//	   └── reply ── index, Bus.Publish <──── result ─────└────────────────────────┘
//
// One committer owns every write; bbolt's DB.Batch is not used (it may run a
// function twice and re-runs a whole batch when one call fails). It has two
// goroutines. The sequencer blocks for the first queued append, drains
// whatever else is queued without waiting (Options.MaxBatchEvents,
// MaxBatchBytes) and stages each request into the current batch: it checks
// it against an overlay of the batch so far and of the batches being
// committed (later requests see earlier ones; a version or idempotency
// conflict fails that request only, recorded, not a transaction error),
// assigns positions and chain hashes (eventstore.NewEnvelope) and encodes the
// events. The writer puts a staged batch in one transaction and commits it,
// synced, and takes the next staged batch itself the moment the commit
// returns: the disk does not wait for the sequencer while appends are
// staged, the batch size follows the load with no timer, and staging costs
// no commit time. A small batch is left to the sequencer, which at the end
// of its staging round hands what it staged to the idle writer or commits it
// itself (saving two goroutine hand-offs). For each
// committed batch the sequencer updates the in-memory index, publishes the
// events to the Bus in position order and replies, while the writer commits
// the next one. Appends return only after the commit holding them is synced; a reply waits
// for every commit its outcome depends on, conflicts included.
//
// If a commit fails, every append in it fails, nothing is published, the
// head is reloaded from the file (the next append takes the next dense
// position), and appends staged on top of the failed batch are staged again;
// the writer takes nothing until they are. Options.BeforeCommit (and
// SetBeforeCommit) injects such failures.
//
// # File layout (FormatVersion 1)
//
//	events      BE64(position)                      -> eventstore.MarshalEnvelope bytes
//	streams     stream id                           -> BE64(version) BE64(last position)
//	stream_idx  uvarint(len(id)) id BE64(version)   -> BE64(position)
//	event_ids   16-byte event id                    -> BE64(position)
//	meta        format -> BE32, head -> BE64(position) hash,
//	            store_id -> 16 bytes, indexed -> BE64(position)
//
// The events bucket is append-only (FillPercent 1.0: appends land on the
// right edge); nothing in it is ever updated or deleted.
//
// # Write-behind indexes
//
// Event ids are random and streams many, so writing the three index buckets
// in every commit would dirty a page per key per commit and cost several
// times the events themselves. Instead the index entries of recent events
// are kept in memory, in generations of Options.IndexGeneration events. A
// full generation is frozen and written to the index buckets in key order,
// in chunks: by index-only commits when appends pause, and, once the next
// generation is full as well, alongside every append commit; each index page
// is then written about once per generation. meta "indexed" is the position
// up to which the index buckets are complete.
//
// The log is the journal of its indexes. Open rebuilds the entries of the
// events above "indexed" from the events bucket (checking their chain), so a
// crash loses no index entry; Close writes everything, so a cleanly closed
// file is fully indexed. Lookups read memory first, then the buckets. A
// Bloom filter over every event id (committed or staged) and stream name
// (built at Open from the buckets) keeps new ids and new streams, the common
// case, from reading the buckets, or for ids even the memory, at all. In
// memory, stream heads are in a map and event ids in log order, sorted in
// runs of 4096 for the rare lookup by id: inserting random ids into a large
// map would miss the cache on every append.
//
// Memory and Open time are bounded by the generations in memory: usually one
// or two, about three at most under sustained load (some 100 bytes per
// event), plus about 2 bytes per stored event for the filters (640 KiB at
// least).
//
// # Open checks
//
// Open checks the format version, that the last key of events is the meta
// head and that its event carries the meta head hash and a correct hash, and
// that the events above "indexed" are dense and chained. A corrupt or
// truncated file gives an error naming the position or field (errors.Is
// eventstore.ErrCorrupt for bad data), never a panic: bbolt panics and faults
// on its memory map are turned into errors, at Open and on every read and
// write afterwards. Data below the head is checked when it is read: ReadAll
// returns a *eventstore.CorruptError naming the position.
//
// # Reads
//
// ReadAll and ReadStream run short read transactions (pages of 1000 events)
// and decode into fresh memory. Subscribe uses eventstore.Subscription over
// the store and its Bus: see eventstore.Bus for the slow-consumer policy.
// A large initial memory map (Options.InitialMmapSize, 1 GiB by default)
// keeps long readers from stalling the writer, which cannot remap while a
// read transaction is open.
//
// Every page read through the map stays resident in the process until the
// map goes, and in an append-only tree every leaf is read while it fills, so
// the resident set would grow with the file. A writable store therefore
// hands the map's pages back to the kernel every
// Options.ReleaseMapInterval (1 s): MADV_DONTNEED on the read-only shared
// map, under a read transaction so the map cannot move meanwhile. The pages
// stay in the page cache and a later read maps them again with a minor
// fault. (200,000 jobs through `hodei bench lifecycle`: 265 MB of the map
// resident at the end without it, 44 MB with it.)
//
// # Tools
//
// Options.ReadOnly opens a file with a shared lock for tools. IndexedThrough,
// ForEachStreamIndex, ForEachStream and ForEachEventID let an auditor
// (hodei replay verify) check that the indexes agree with the log. Stats
// reports the committer's batches and Options.BoltOptions the bbolt options
// in use, for benchmarks.
package bolt
