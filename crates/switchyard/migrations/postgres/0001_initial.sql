-- Initial schema (PostgreSQL). Keep in step with migrations/sqlite/0001_initial.sql: the store
-- tests run against both.

CREATE TABLE nodes (
    id         TEXT        NOT NULL PRIMARY KEY,
    esl_addr   TEXT        NOT NULL,
    wss_url    TEXT        NOT NULL,
    capacity   INTEGER     NOT NULL CHECK (capacity >= 0),
    labels     TEXT        NOT NULL DEFAULT '{}', -- JSON object of strings
    draining   BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id           TEXT        NOT NULL PRIMARY KEY,
    display_name TEXT        NOT NULL,
    enabled      BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

-- CppComet's `conference` table: one row per invited user.
CREATE TABLE invitations (
    name       TEXT        NOT NULL,
    user_id    TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    caller_id  TEXT        NOT NULL,
    message    TEXT        NOT NULL DEFAULT '',
    profile    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (name, user_id)
);

CREATE INDEX invitations_user_id ON invitations (user_id);

-- Conference placement and history; ended_at IS NULL while it runs.
CREATE TABLE conferences (
    name       TEXT        NOT NULL PRIMARY KEY,
    node_id    TEXT        NOT NULL,
    profile    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    ended_at   TIMESTAMPTZ,
    end_reason TEXT
);

CREATE INDEX conferences_live_by_node ON conferences (node_id) WHERE ended_at IS NULL;
