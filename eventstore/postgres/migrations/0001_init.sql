-- 0001_init: the event log's tables, roles, privileges and immutability triggers.
--
-- Released migrations are never edited (Open refuses a database whose recorded
-- checksum differs from the embedded file): change the schema with a new file.
--
-- Roles are cluster-wide and may already exist (another database of the same
-- cluster, or a concurrent migration of one): creating them tolerates both.
DO $$
BEGIN
    CREATE ROLE hodei_owner NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

DO $$
BEGIN
    CREATE ROLE hodei_writer NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- The single head row: the last committed position and its hash. Every append
-- transaction updates it under FOR UPDATE, which makes positions gapless and
-- in commit order (a rollback returns the counter).
CREATE TABLE es_head (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_position bigint  NOT NULL CHECK (last_position >= 0),
    last_hash     bytea   NOT NULL CHECK (length(last_hash) = 32)
);
INSERT INTO es_head (id, last_position, last_hash)
VALUES (true, 0, decode(repeat('00', 32), 'hex'));

-- One row per stream: its version (0 = no events yet) and the position of its
-- last event. Append transactions lock these rows in sorted order. Stream ids
-- compare bytewise (COLLATE "C"): cheaper than a locale's rules, and the same
-- order as Go's.
CREATE TABLE es_streams (
    stream_id     text COLLATE "C" PRIMARY KEY,
    version       bigint NOT NULL CHECK (version >= 0),
    last_position bigint NOT NULL CHECK (last_position >= 0)
) WITH (fillfactor = 50); -- room for HOT updates: every append rewrites its stream's row

-- The log. global_position is assigned by the committer from es_head, never by
-- a sequence. recorded_at is the envelope time in Unix nanoseconds (UTC), so
-- the hashed bytes round-trip exactly. Zero correlation/causation ids are
-- stored as the zero UUID, not NULL, for the same reason.
CREATE TABLE es_events (
    global_position bigint  PRIMARY KEY CHECK (global_position > 0),
    stream_id       text COLLATE "C" NOT NULL,
    stream_version  bigint  NOT NULL CHECK (stream_version > 0),
    event_type      text    NOT NULL,
    schema_version  integer NOT NULL CHECK (schema_version BETWEEN 1 AND 65535),
    event_id        uuid    NOT NULL UNIQUE,
    recorded_at     bigint  NOT NULL,
    actor           text    NOT NULL,
    correlation_id  uuid    NOT NULL,
    causation_id    uuid    NOT NULL,
    payload         bytea   NOT NULL,
    prev_hash       bytea   NOT NULL CHECK (length(prev_hash) = 32),
    hash            bytea   NOT NULL CHECK (length(hash) = 32),
    UNIQUE (stream_id, stream_version)
);

-- Immutability: no role may change or remove an event. The triggers are
-- ENABLE ALWAYS so they also fire with session_replication_role = replica.
CREATE FUNCTION es_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'es_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER es_events_no_update_delete
    BEFORE UPDATE OR DELETE ON es_events
    FOR EACH ROW EXECUTE FUNCTION es_reject_change();
CREATE TRIGGER es_events_no_truncate
    BEFORE TRUNCATE ON es_events
    FOR EACH STATEMENT EXECUTE FUNCTION es_reject_change();
ALTER TABLE es_events ENABLE ALWAYS TRIGGER es_events_no_update_delete;
ALTER TABLE es_events ENABLE ALWAYS TRIGGER es_events_no_truncate;

-- Ownership: everything belongs to the NOLOGIN owner role, so the runtime
-- role owns nothing and cannot drop or disable the triggers.
ALTER TABLE es_head OWNER TO hodei_owner;
ALTER TABLE es_streams OWNER TO hodei_owner;
ALTER TABLE es_events OWNER TO hodei_owner;
ALTER TABLE es_migrations OWNER TO hodei_owner;
ALTER FUNCTION es_reject_change() OWNER TO hodei_owner;

-- Privileges of the runtime role: read and insert events; read, create and
-- advance stream rows; read and advance the head; read the migration record.
REVOKE ALL ON es_head, es_streams, es_events, es_migrations FROM PUBLIC;
GRANT SELECT, INSERT ON es_events TO hodei_writer;
GRANT SELECT, INSERT, UPDATE ON es_streams TO hodei_writer;
GRANT SELECT, UPDATE ON es_head TO hodei_writer;
GRANT SELECT ON es_migrations TO hodei_writer;
