-- 0001_init: job attempt logs, one row per log and its bytes in chunks.
--
-- Released migrations are never edited (Open refuses a database whose recorded
-- checksum differs from the embedded file): change the schema with a new file.
-- These tables live beside the event store's es_* tables in the same database
-- and share nothing with them.

-- One row per attempt's log. size is the stored length (truncation marker
-- included); received counts the agent's bytes (size until truncated); crc is
-- the CRC-32C of the stored bytes [0, size). truncated_at is the number of
-- data bytes kept before the marker (NULL: not truncated); finished_at is set
-- by Finish or Seal (NULL: live). Job ids compare bytewise (COLLATE "C").
CREATE TABLE job_logs (
    job_id       text COLLATE "C" NOT NULL,
    attempt      bigint      NOT NULL CHECK (attempt BETWEEN 1 AND 4294967295),
    size         bigint      NOT NULL DEFAULT 0 CHECK (size >= 0),
    received     bigint      NOT NULL DEFAULT 0 CHECK (received >= 0),
    crc          bigint      NOT NULL DEFAULT 0 CHECK (crc BETWEEN 0 AND 4294967295),
    truncated_at bigint      CHECK (truncated_at >= 0),
    finished_at  timestamptz,
    sealed       boolean     NOT NULL DEFAULT false,
    agent_bytes  bigint      NOT NULL DEFAULT 0,
    agent_crc    bigint      NOT NULL DEFAULT 0,
    crc_checked  boolean     NOT NULL DEFAULT false,
    mismatch     boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, attempt)
) WITH (fillfactor = 50); -- room for HOT updates: every append rewrites its log's row

-- The stored bytes: chunk data starts at stored offset off. Chunks of one log
-- tile [0, size) without overlap; each append inserts one at off = size in
-- the same statement that advances size.
CREATE TABLE job_log_chunks (
    job_id  text COLLATE "C" NOT NULL,
    attempt bigint NOT NULL,
    off     bigint NOT NULL CHECK (off >= 0),
    data    bytea  NOT NULL CHECK (length(data) > 0),
    PRIMARY KEY (job_id, attempt, off)
);

-- The tables belong to the role that creates them. A server may later run
-- as a login that is only a member of hodei_writer (the event store's runtime
-- role, see README "Roles": started once with a superuser DSN, then with its
-- own login): when that role exists, it may read and write the logs too.
-- Nothing else about the role is changed.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hodei_writer') THEN
        GRANT SELECT, INSERT, UPDATE ON job_logs, job_log_chunks TO hodei_writer;
        GRANT SELECT ON job_log_migrations TO hodei_writer;
    END IF;
END
$$;
