//! Hourly clean-up of rows that only grow: expired SIP credentials (one per browser tab per
//! invitation) and expired session tokens. Issuing a new credential or token already drops the
//! user's expired ones; this catches the users who never come back.
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
    app.tasks.spawn(async move {
        loop {
            run_once(&store).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    });
}

/// One pass; failures are logged and retried at the next pass.
pub async fn run_once(store: &crate::store::Store) {
    let now = Utc::now();
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
