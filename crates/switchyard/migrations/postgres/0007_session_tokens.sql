-- Session tokens of the browser event channel (postgres). Keep in step with the other backend's
-- 0007_session_tokens.sql. Only the SHA-256 digest of a token is stored; a token opens
-- GET /v1/events for one user until expires_at. Deleting the user deletes its tokens.

CREATE TABLE session_tokens (
    token_hash TEXT        NOT NULL PRIMARY KEY,
    user_id    TEXT        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX session_tokens_user_id ON session_tokens (user_id);
