-- SIP credentials (PostgreSQL). Keep in step with migrations/sqlite/0002_sip_credentials.sql.
-- One row per issued credential: its own SIP username, mapped back to the user. Only the
-- digest A1 hash is stored, never the password. expires_at NULL = long-lived.

CREATE TABLE sip_credentials (
    username   TEXT        NOT NULL PRIMARY KEY,
    user_id    TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    realm      TEXT        NOT NULL,
    a1_hash    TEXT        NOT NULL,
    expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX sip_credentials_user_id ON sip_credentials (user_id);
