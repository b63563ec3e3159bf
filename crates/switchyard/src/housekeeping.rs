//! At startup and hourly, clean-up of rows that only grow: expired SIP credentials (one per browser tab per
//! invitation) and expired session tokens (issuing a new credential or token already drops the
//! user's expired ones; this catches the users who never come back), and, with
//! `conferences.history_retention_days`, old history.
//!
//! Every replica runs it; the deletes are idempotent, so replicas racing each other is harmless.

use std::time::Duration;

use chrono::Utc;

use crate::app::App;

const INTERVAL: Duration = Duration::from_secs(3600);

/// Expired session tokens are kept this long so that presenting one is answered
/// `token_expired` (the SDK then asks for a new one) rather than `token_invalid`.
pub fn expired_token_memory() -> chrono::Duration {
    chrono::Duration::days(1)
}

/// Starts the task on [`App::tasks`]; it stops with [`App::shutdown`].
pub fn start(app: &App) {
    let store = app.store.clone();
    let shutdown = app.shutdown.clone();
    let retention_days = app.config.conferences.history_retention_days;
    app.tasks.spawn(async move {
        loop {
            // A slow database must not hold up shutdown.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = run_once(&store, retention_days) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    });
}

/// One pass (`retention_days` 0: history is kept); failures are logged and retried at the
/// next pass.
pub async fn run_once(store: &crate::store::Store, retention_days: u32) {
    let now = Utc::now();
    // Validation caps the retention far below chrono's range; `checked_` keeps a bad value
    // from killing the task anyway.
    let cutoff = (retention_days > 0)
        .then(|| now.checked_sub_signed(chrono::Duration::days(i64::from(retention_days))))
        .flatten();
    if let Some(before) = cutoff {
        match store.purge_history(before).await {
            Ok(purged) if purged == crate::store::PurgedHistory::default() => {}
            Ok(purged) => tracing::info!(
                conferences = purged.conferences,
                stays = purged.stays,
                recordings = purged.recordings,
                retention_days,
                "old history deleted"
            ),
            Err(e) => tracing::warn!(
                error = %crate::error_chain(&e),
                "cannot delete old history"
            ),
        }
    }
    match store.purge_expired_sip_credentials(now).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "expired SIP credentials deleted"),
        Err(e) => tracing::warn!(
            error = %crate::error_chain(&e),
            "cannot delete expired SIP credentials"
        ),
    }
    match store
        .purge_expired_session_tokens(now - expired_token_memory())
        .await
    {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "expired session tokens deleted"),
        Err(e) => tracing::warn!(
            error = %crate::error_chain(&e),
            "cannot delete expired session tokens"
        ),
    }
}
