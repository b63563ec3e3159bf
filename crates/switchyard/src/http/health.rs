//! Liveness and readiness probes.
//!
//! `/healthz` answers as long as the process serves HTTP: a failing database must not get the
//! process restarted. `/readyz` says whether to send traffic here: the store answers a ping
//! within [`PING_TIMEOUT`] and shutdown has not begun. Its body also reports Redis and every
//! node's connection state: those degrade the service but do not make this replica unfit to
//! serve, so they do not turn it 503.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::ApiError;
use crate::app::AppState;

/// Readiness fails rather than hangs when the pool is exhausted or the server is slow.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process serves HTTP", body = Object)))]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Ready: the store answers; Redis and node states reported", body = Object), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")))]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({
            "status": "ok",
            "redis": redis_status(&state).await,
            "nodes": state.nodes.statuses().iter().map(|n| json!({
                "id": n.id,
                "state": n.state,
                "connections": n.connections,
                "last_heartbeat_age_secs": n.last_heartbeat.as_ref()
                    .and_then(|h| h.received_at.elapsed().ok())
                    .map(|age| age.as_secs()),
            })).collect::<Vec<_>>(),
        }))),
        Ok(Err(e)) => Err(ApiError::StoreUnavailable(crate::error_chain(&e))),
        Err(_) => Err(ApiError::StoreUnavailable(format!(
            "no answer to a ping within {PING_TIMEOUT:?}"
        ))),
    }
}

/// Redis is reported, not required: losing it degrades the service without making it wrong.
async fn redis_status(state: &AppState) -> Value {
    match &state.coord {
        None => json!("not_configured"),
        Some(coord) => match coord.ping().await {
            Ok(()) => json!("ok"),
            Err(e) => json!(format!("unavailable: {e}")),
        },
    }
}
