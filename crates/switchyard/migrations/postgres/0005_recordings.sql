-- Recordings and broadcasts (PostgreSQL). Keep in step with the other backend.
--
-- One row per `conference <name> record <path>` the node confirmed with a start-recording event,
-- written by the node's owner; stopped_at/milliseconds come with stop-recording. kind is
-- 'file' (a file on the node) or 'broadcast' (an rtmp:// stream, e.g. to nginx-rtmp).
CREATE TABLE recordings (
    id            TEXT NOT NULL PRIMARY KEY,
    conference_id TEXT,
    name          TEXT NOT NULL,
    node_id       TEXT NOT NULL,
    path          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    stopped_at    TIMESTAMPTZ,
    milliseconds  BIGINT,
    error         TEXT
);

CREATE UNIQUE INDEX recordings_open ON recordings (node_id, path) WHERE stopped_at IS NULL;
CREATE INDEX recordings_by_name ON recordings (name, started_at);
