//! The browser event channel's HTTP side: session tokens (for web backends), presence, and the
//! `GET /v1/events` WebSocket upgrade. The channel itself is `crate::browser`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiPrincipal;
use super::conferences::optional_json;
use super::users::user_id;
use crate::app::AppState;
use crate::browser::protocol::{Close, MAX_FRAME_BYTES};
use crate::config::Scope;
use crate::http::ApiError;

/// `POST /v1/users/{id}/session-tokens` body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSessionToken {
    /// Lifetime in seconds: 60 … `events.token_max_ttl_secs` (default `events.token_ttl_secs`).
    pub ttl_secs: Option<u64>,
}

/// A session token for `GET /v1/events`. Shown once; only its digest is stored.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionTokenBody {
    pub token: String,
    pub user_id: String,
    pub expires_at: DateTime<Utc>,
    /// Where the browser connects (a WebSocket on this service).
    pub events_path: String,
}

/// Users with an open event channel.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PresenceList {
    pub users: Vec<PresenceEntry>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PresenceEntry {
    pub user_id: String,
    /// Open channels (tabs, devices) across replicas.
    pub connections: usize,
}

/// Issues a token for `user_id` (shared by the API and the demo backend).
pub(super) async fn issue_token(
    state: &AppState,
    user_id: &str,
    ttl_secs: Option<u64>,
) -> Result<SessionTokenBody, ApiError> {
    let events = &state.config.events;
    let ttl = ttl_secs.unwrap_or(events.token_ttl_secs);
    if !(60..=events.token_max_ttl_secs).contains(&ttl) {
        return Err(ApiError::InvalidRequest(format!(
            "ttl_secs must be between 60 and {}",
            events.token_max_ttl_secs
        )));
    }
    let user = state
        .store
        .get_user(user_id)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    if !user.enabled {
        return Err(ApiError::UserDisabled);
    }
    let now = Utc::now();
    state
        .store
        .delete_expired_session_tokens(&user.id, now - crate::housekeeping::expired_token_memory())
        .await?;
    let token = crate::browser::new_token();
    let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
    let expires_at = now + chrono::Duration::seconds(ttl);
    state
        .store
        .insert_session_token(&crate::browser::token_digest(&token), &user.id, expires_at)
        .await?;
    Ok(SessionTokenBody {
        token,
        user_id: user.id,
        expires_at,
        events_path: "/v1/events".to_owned(),
    })
}

#[utoipa::path(post, path = "/v1/users/{user_id}/session-tokens", tag = "events", params(("user_id" = String, Path, description = "User id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), request_body(content = Option<NewSessionToken>, description = "Optional; empty for the default lifetime"), responses((status = 201, body = SessionTokenBody), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn create_token(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SessionTokenBody>), ApiError> {
    principal.require(Scope::CredentialsIssue)?;
    let id = user_id(path)?;
    let body: NewSessionToken = optional_json(body)?;
    let token = issue_token(&state, &id, body.ttl_secs).await?;
    tracing::info!(key_id = %principal.key_id, user = %token.user_id, expires_at = %token.expires_at, "session token issued");
    Ok((StatusCode::CREATED, Json(token)))
}

#[utoipa::path(delete, path = "/v1/users/{user_id}/session-tokens", tag = "events", params(("user_id" = String, Path, description = "User id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 204, description = "Every token revoked and the user's open channels closed (4001)"), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn revoke_tokens(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::CredentialsIssue)?;
    let id = user_id(path)?;
    let revoked = state.store.delete_session_tokens(&id).await?;
    state.browser.hub.revoke(&id, Close::TokenInvalid).await?;
    tracing::info!(key_id = %principal.key_id, user = %id, revoked, "session tokens revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/presence", tag = "events", responses((status = 200, body = PresenceList), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn presence(
    principal: ApiPrincipal,
    State(state): State<AppState>,
) -> Result<Json<PresenceList>, ApiError> {
    principal.require(Scope::UsersRead)?;
    Ok(Json(presence_list(&state).await?))
}

pub(super) async fn presence_list(state: &AppState) -> Result<PresenceList, ApiError> {
    let users = state
        .browser
        .hub
        .presence()
        .await?
        .into_iter()
        .map(|(user_id, connections)| PresenceEntry {
            user_id,
            connections,
        })
        .collect();
    Ok(PresenceList { users })
}

/// Per-channel read buffer. tungstenite's default (128 KiB) dominated the memory of an idle
/// channel; client frames are small (at most [`MAX_FRAME_BYTES`], usually ~100 bytes) and a
/// larger one is still read, in several reads.
const READ_BUFFER_BYTES: usize = 4 * 1024;

#[utoipa::path(get, path = "/v1/events", tag = "events", description = "The browser event channel: a WebSocket (see docs/events.md). No API key: the first frame is `hello` with a session token.", responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 426, description = "Not a WebSocket upgrade request", body = crate::http::Problem, content_type = "application/problem+json")))]
pub(super) async fn events(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| ApiError::WebSocketRequired(e.body_text()))?;
    if state.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    let app = state.0.clone();
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| crate::browser::channel::serve(app, socket)))
}
