-- Webhook deliveries (PostgreSQL). Keep in step with the other backend.
--
-- The outbox of the webhook sender: one row per (endpoint, event), written by the replica that
-- announced the event, so a delivery survives a restart. id is also the de-duplication id sent
-- to the receiver (body "id", header Switchyard-Webhook-Id). A sender claims due rows by setting
-- locked_until (PostgreSQL: FOR UPDATE SKIP LOCKED, so replicas never send a row concurrently)
-- and counting the attempt; then delivered_at (2xx), or last_error and the next_attempt_at of
-- its backoff, or failed_at once given up. Finished rows are deleted after 7 days.
CREATE TABLE webhook_deliveries (
    id              TEXT    NOT NULL PRIMARY KEY,
    endpoint_id     TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    locked_until    TIMESTAMPTZ,
    last_error      TEXT,
    delivered_at    TIMESTAMPTZ,
    failed_at       TIMESTAMPTZ
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX webhook_deliveries_by_created ON webhook_deliveries (created_at);
