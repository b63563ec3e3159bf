-- Conference options and member history (SQLite). Keep in step with the other backend.
--
-- Options are fixed when the conference is placed (first invitation or PUT): max_members (the
-- dialplan refuses the next caller), max_duration_secs (members are hung up), idle_timeout_secs
-- (overrides pool.idle_timeout_secs), open (any user with credentials may join, no invitation).
-- member_count is the live count the owner keeps; started_at is when the first member joined.
ALTER TABLE conferences ADD COLUMN max_members INTEGER;
ALTER TABLE conferences ADD COLUMN max_duration_secs INTEGER;
ALTER TABLE conferences ADD COLUMN idle_timeout_secs INTEGER;
ALTER TABLE conferences ADD COLUMN open BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE conferences ADD COLUMN member_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conferences ADD COLUMN started_at TEXT;

-- Every member's stay in a conference, written by the node's owner: a row at join (left_at
-- NULL), completed at leave with the reason. The history endpoints read it.
CREATE TABLE member_stays (
    id             TEXT    NOT NULL PRIMARY KEY,
    conference_id  TEXT,               -- the placement, when there was one
    name           TEXT    NOT NULL,
    node_id        TEXT    NOT NULL,
    member_id      INTEGER NOT NULL,
    user_id        TEXT,
    caller_id_name TEXT    NOT NULL DEFAULT '',
    joined_at      TEXT NOT NULL,
    left_at        TEXT,
    reason         TEXT
);

CREATE UNIQUE INDEX member_stays_open ON member_stays (node_id, name, member_id) WHERE left_at IS NULL;
CREATE INDEX member_stays_by_user ON member_stays (user_id, joined_at);
CREATE INDEX member_stays_by_name ON member_stays (name, joined_at);
