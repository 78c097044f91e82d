-- Migration 2: stream versions come from es_events itself.
--
-- es_streams kept each stream's version and was locked and updated by every
-- append: a row lock, a heap update and their WAL for every stream of every
-- batch. Only the holder of the committer lock appends, so the committer
-- reads a stream's version from the UNIQUE (stream_id, stream_version) index
-- of es_events (the last entry of the stream) and caches it while it holds
-- the lock; that index still rejects any version taken twice. The table and
-- its grants go.
DROP TABLE es_streams;
