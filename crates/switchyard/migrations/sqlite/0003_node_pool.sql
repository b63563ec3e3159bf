-- Node pool (SQLite). Keep in step with migrations/postgres/0003_node_pool.sql.
--
-- nodes: the pool is the union of `[[nodes]]` in the config (source 'config', upserted at every
-- start) and nodes added through the API (source 'api'). The ESL password must be usable, so it
-- is stored as given: whoever can read this table can command the nodes. started_at (the node's
-- start time, from `status` uptime) and core_uuid tell a restarted node from a reconnect.
ALTER TABLE nodes ADD COLUMN esl_password TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
ALTER TABLE nodes ADD COLUMN started_at TEXT;
ALTER TABLE nodes ADD COLUMN core_uuid TEXT;

-- conferences: one row per placement, kept as history once ended (ended_at set). At most one
-- live row per name: the unique index is the atomic claim every replica goes through, so a
-- conference is never placed on two nodes. idle_since: when it last had no member on its node
-- (set at placement, cleared by the first member, set again when the node destroys it).
DROP TABLE conferences;
CREATE TABLE conferences (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    node_id      TEXT    NOT NULL,
    profile      TEXT    NOT NULL,
    labels       TEXT    NOT NULL DEFAULT '{}', -- JSON object: the placement request's labels
    origin       TEXT    NOT NULL,              -- 'placed' | 'adopted'
    created_at   TEXT    NOT NULL,
    idle_since   TEXT,
    peak_members INTEGER NOT NULL DEFAULT 0,
    ended_at     TEXT,
    end_reason   TEXT
);

CREATE UNIQUE INDEX conferences_live_name ON conferences (name) WHERE ended_at IS NULL;
CREATE INDEX conferences_live_by_node ON conferences (node_id) WHERE ended_at IS NULL;
CREATE INDEX conferences_by_created ON conferences (created_at);
