//! Demo mode (`[demo] enabled`): the demo page (`demo.web_root` at `/demo/`) and a stand-in for
//! a customer's web backend at `/demo/api/*`, so that `just demo` needs nothing else. It has no
//! authentication at all — anyone who reaches it can act as any user — so it answers loopback
//! clients only (and not what a proxy forwarded) unless `demo.allow_remote` is set, and it is
//! off by default.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tower_http::services::ServeDir;

use super::conferences::{InvitationResult, MemberList, NewInvitationBody, json_body};
use super::events::{PresenceList, issue_token, presence_list};
use crate::app::AppState;
use crate::http::ApiError;
use crate::ids::valid_user_id;
use crate::store::UpsertUser;

/// The demo routes, or nothing when demo mode is off.
pub(super) fn router(state: &AppState) -> Router<AppState> {
    let demo = &state.config.demo;
    if !demo.enabled {
        return Router::new();
    }
    tracing::warn!(
        web_root = %demo.web_root.display(),
        allow_remote = demo.allow_remote,
        "DEMO MODE: /demo/api/* lets anyone act as any user; never expose it"
    );
    let api = Router::new()
        .route("/demo/api/login", post(login))
        .route("/demo/api/online", get(online))
        .route("/demo/api/invite", post(invite))
        .route("/demo/api/token-expired", post(expired_token))
        .route("/demo/api/conferences/{name}/members", get(members))
        .route_layer(from_fn_with_state(state.clone(), loopback_only));
    let files = ServeDir::new(&demo.web_root).append_index_html_on_directories(true);
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .merge(api)
        .nest_service("/demo/", files)
}

async fn loopback_only(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if !state.config.demo.allow_remote
        && (!peer.ip().to_canonical().is_loopback() || forwarded(request.headers()))
    {
        return ApiError::DemoRemote.into_response();
    }
    next.run(request).await
}

/// Whether a proxy forwarded the request: behind a reverse proxy on the same host every peer
/// is loopback, so a request that says it was forwarded is not trusted as local.
fn forwarded(headers: &HeaderMap) -> bool {
    [
        "forwarded",
        "via",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
    ]
    .iter()
    .any(|name| headers.contains_key(*name))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    user_id: String,
}

#[derive(Debug, Serialize)]
struct LoginResult {
    user_id: String,
    token: String,
    expires_at: DateTime<Utc>,
    /// The absolute `ws://` URL of `/v1/events` as this request reached the service.
    events_url: String,
}

fn checked_user(id: &str) -> Result<(), ApiError> {
    if valid_user_id(id) {
        Ok(())
    } else {
        Err(ApiError::InvalidUserId(id.chars().take(80).collect()))
    }
}

fn events_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    format!("ws://{host}/v1/events")
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoginResult>, ApiError> {
    let Login { user_id } = json_body(body)?;
    checked_user(&user_id)?;
    let user = state
        .store
        .upsert_user(&UpsertUser {
            id: user_id.clone(),
            display_name: user_id,
            enabled: true,
        })
        .await?;
    state.directory_cache.invalidate_user(&user.id);
    let token = issue_token(&state, &user.id, None).await?;
    tracing::info!(user = %user.id, "demo login");
    Ok(Json(LoginResult {
        user_id: token.user_id,
        token: token.token,
        expires_at: token.expires_at,
        events_url: events_url(&headers),
    }))
}

async fn online(State(state): State<AppState>) -> Result<Json<PresenceList>, ApiError> {
    Ok(Json(presence_list(&state).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoInvite {
    from: String,
    to: String,
    conference: Option<String>,
    profile: Option<String>,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Serialize)]
struct DemoInvited {
    conference: String,
    node: String,
    wss_url: String,
    dial_uri: String,
}

async fn invite(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<DemoInvited>), ApiError> {
    let body: DemoInvite = json_body(body)?;
    checked_user(&body.from)?;
    let name = match body.conference {
        Some(name) => super::conferences::checked_name(name)?,
        None => format!("demo-{:08x}", rand::random::<u32>()),
    };
    let (_, InvitationResult { node, dial, .. }) = super::conferences::invite_user(
        &state,
        name.clone(),
        NewInvitationBody {
            user_id: body.to,
            caller_id: body.from,
            message: body.message,
            profile: body.profile,
            labels: Default::default(),
            max_members: None,
            max_duration_secs: None,
            idle_timeout_secs: None,
            open: false,
        },
        "demo",
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(DemoInvited {
            conference: name,
            node: node.id,
            wss_url: node.wss_url,
            dial_uri: dial.uri,
        }),
    ))
}

/// A token that expired a minute ago (to see the channel refuse it with `4002`).
async fn expired_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LoginResult>, ApiError> {
    let Login { user_id } = json_body(body)?;
    checked_user(&user_id)?;
    if state.store.get_user(&user_id).await?.is_none() {
        return Err(ApiError::UserNotFound);
    }
    let token = crate::browser::new_token();
    let expires_at = Utc::now() - chrono::Duration::minutes(1);
    state
        .store
        .insert_session_token(&crate::browser::token_digest(&token), &user_id, expires_at)
        .await?;
    Ok(Json(LoginResult {
        user_id,
        token,
        expires_at,
        events_url: events_url(&headers),
    }))
}

async fn members(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MemberList>, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let name = super::conferences::checked_name(name)?;
    Ok(Json(super::conferences::member_list(&state, &name).await?))
}
