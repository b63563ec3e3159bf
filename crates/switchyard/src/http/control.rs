//! Server-side control of a live conference: each call is one mod_conference `api` command on
//! the conference's node, and FreeSWITCH's reply decides the answer: `+OK …` is success, an
//! `-ERR` naming a member is 404 `member_not_found`, an `-ERR` saying the conference does not
//! exist is 404 `conference_not_running`, any other `-ERR` is 409 `node_refused` with the
//! node's text. The state that follows (muted, floor, recordings…) arrives through the node's
//! events, like every other change.
//!
//! Arguments that reach the command line are checked against strict charsets: a space would
//! add an argument, and `esl::Command` already refuses line breaks.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::conferences::{checked_name, json_body};
use super::{ApiError, ApiPrincipal};
use crate::app::AppState;
use crate::config::Scope;
use crate::live::LeaveReason;
use crate::store::{ConferenceRecord, Recording};

/// How long a node may take to answer a control command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest file path, URL or layout name accepted.
const MAX_ARG: usize = 512;

/// What the node answered.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandResult {
    /// The command sent (`conference <name> …`, without the `api` prefix).
    pub command: String,
    /// FreeSWITCH's reply, trimmed.
    pub reply: String,
}

/// `POST …/layout` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LayoutBody {
    /// A layout name (`2x2`, `1up_top_left+5`) or `group:<name>` for a layout group.
    pub layout: String,
    /// The canvas (video mux with several canvases); default 1.
    pub canvas: Option<u32>,
}

/// `POST …/play` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayBody {
    /// A file on the node (or any path FreeSWITCH can play, e.g. `tone_stream://…`).
    pub file: String,
}

/// `POST …/broadcasts` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BroadcastBody {
    /// `rtmp://host[:port]/app/stream` (nginx-rtmp: `rtmp://…/live/<conference>`).
    pub url: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordingList {
    pub recordings: Vec<Recording>,
}

/// `POST …/recordings` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordingStarted {
    /// The file on the node.
    pub path: String,
    pub command: String,
    pub reply: String,
}

/// A single command-line argument: printable ASCII, no spaces, no quotes or braces (which
/// FreeSWITCH would interpret), bounded.
fn arg(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ARG
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'\'' | b'"' | b'{' | b'}' | b'\\'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "{field} must be 1-{MAX_ARG} printable ASCII characters without spaces, quotes, \
             braces or backslashes"
        )))
    }
}

async fn live_conference(state: &AppState, name: &str) -> Result<ConferenceRecord, ApiError> {
    state
        .store
        .live_conference(name)
        .await?
        .ok_or(ApiError::ConferenceNotFound)
}

/// Sends `conference <name> <rest>` to the conference's node and maps the reply.
async fn command(
    state: &AppState,
    conference: &ConferenceRecord,
    rest: &str,
) -> Result<CommandResult, ApiError> {
    let node = &conference.node_id;
    let client = state
        .nodes
        .client(node)
        .ok_or_else(|| ApiError::NodeUnreachable(format!("node {node} is not in the pool")))?;
    let command = format!("conference {} {rest}", conference.name);
    let reply = match tokio::time::timeout(COMMAND_TIMEOUT, client.api(&command)).await {
        Ok(Ok(reply)) => String::from_utf8_lossy(&reply).trim().to_owned(),
        Ok(Err(e)) => return Err(ApiError::NodeUnreachable(format!("node {node}: {e}"))),
        Err(_) => {
            return Err(ApiError::NodeUnreachable(format!(
                "node {node} did not answer within {COMMAND_TIMEOUT:?}"
            )));
        }
    };
    // Debug only: a broadcast URL may carry a stream key.
    tracing::debug!(node = %node, command = %command, reply = %reply, "control command");
    if let Some(text) = reply.strip_prefix("-ERR") {
        let text = text.trim().to_owned();
        return Err(
            if text.starts_with("Non-Existant") || text.contains("Invalid member") {
                ApiError::MemberNotFound(text)
            } else if text.starts_with("Conference") && text.ends_with("not found") {
                ApiError::ConferenceNotRunning(text)
            } else {
                ApiError::NodeRefused(text)
            },
        );
    }
    Ok(CommandResult { command, reply })
}

/// `POST /v1/conferences/{name}/members/{member_id}/{action}`.
#[utoipa::path(post, path = "/v1/conferences/{name}/members/{member_id}/{action}", tag = "control", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"), ("member_id" = u32, Path, description = "FreeSWITCH member id"), ("action" = String, Path, description = "mute, unmute, deaf, undeaf, kick, vmute, unvmute or floor")), responses((status = 200, body = CommandResult), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn member_action(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<(String, u32, String)>, PathRejection>,
) -> Result<Json<CommandResult>, ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let Path((name, member_id, action)) =
        path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let name = checked_name(name)?;
    let sub = match action.as_str() {
        "mute" | "unmute" | "deaf" | "undeaf" | "kick" | "vmute" | "unvmute" => action.as_str(),
        "floor" => "vid-floor",
        _ => {
            return Err(ApiError::InvalidRequest(
                "action must be one of mute, unmute, deaf, undeaf, kick, vmute, unvmute, floor"
                    .to_owned(),
            ));
        }
    };
    let conference = live_conference(&state, &name).await?;
    if sub == "kick" {
        state
            .live
            .expect_exit(&conference.node_id, &name, member_id, LeaveReason::Kicked)
            .await?;
    }
    let result = command(&state, &conference, &format!("{sub} {member_id}")).await?;
    tracing::info!(key_id = %principal.key_id, conference = %name, member_id, action = %action, "member control");
    Ok(Json(result))
}

/// `POST /v1/conferences/{name}/{action}` for `lock` and `unlock`.
#[utoipa::path(post, path = "/v1/conferences/{name}/lock", tag = "control", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = CommandResult), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn lock(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CommandResult>, ApiError> {
    conference_action(principal, state, path, "lock").await
}

#[utoipa::path(post, path = "/v1/conferences/{name}/unlock", tag = "control", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = CommandResult), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn unlock(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CommandResult>, ApiError> {
    conference_action(principal, state, path, "unlock").await
}

async fn conference_action(
    principal: ApiPrincipal,
    state: AppState,
    path: Result<Path<String>, PathRejection>,
    sub: &str,
) -> Result<Json<CommandResult>, ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let Path(name) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let conference = live_conference(&state, &checked_name(name)?).await?;
    Ok(Json(command(&state, &conference, sub).await?))
}

/// `POST /v1/conferences/{name}/layout`: the video layout ("who sees whom").
#[utoipa::path(post, path = "/v1/conferences/{name}/layout", tag = "control", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), request_body = LayoutBody, responses((status = 200, body = CommandResult), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn layout(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CommandResult>, ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let Path(name) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let body: LayoutBody = json_body(body)?;
    arg("layout", &body.layout)?;
    let rest = match body.layout.strip_prefix("group:") {
        Some(group) => {
            arg("layout group", group)?;
            format!("vid-layout group {group}")
        }
        None => match body.canvas {
            Some(canvas) => format!("vid-layout {} {canvas}", body.layout),
            None => format!("vid-layout {}", body.layout),
        },
    };
    let conference = live_conference(&state, &checked_name(name)?).await?;
    Ok(Json(command(&state, &conference, &rest).await?))
}

/// `POST /v1/conferences/{name}/play`: plays a file into the conference.
#[utoipa::path(post, path = "/v1/conferences/{name}/play", tag = "control", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), request_body = PlayBody, responses((status = 200, body = CommandResult), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn play(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CommandResult>, ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let Path(name) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let body: PlayBody = json_body(body)?;
    arg("file", &body.file)?;
    let conference = live_conference(&state, &checked_name(name)?).await?;
    Ok(Json(
        command(&state, &conference, &format!("play {}", body.file)).await?,
    ))
}

/// `POST /v1/conferences/{name}/recordings`: starts recording to a new file on the node
/// (`<dir>/<name>/<name>-<UTC time>.<wav|mp4>`, mp4 for video conferences).
#[utoipa::path(post, path = "/v1/conferences/{name}/recordings", tag = "control", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 202, body = RecordingStarted), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn start_recording(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<RecordingStarted>), ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let Path(name) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let conference = live_conference(&state, &checked_name(name)?).await?;
    let extension = if conference.profile == "video" {
        "mp4"
    } else {
        "wav"
    };
    let file = format!(
        "{}/{name}/{name}-{}.{extension}",
        state
            .config
            .conferences
            .recordings_dir
            .trim_end_matches('/'),
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        name = conference.name,
    );
    let result = command(&state, &conference, &format!("record {file}")).await?;
    tracing::info!(key_id = %principal.key_id, conference = %conference.name, path = %file, "recording requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(RecordingStarted {
            path: file,
            command: result.command,
            reply: result.reply,
        }),
    ))
}

/// `GET /v1/conferences/{name}/recordings`: recordings and broadcasts, newest first (also
/// after the conference ended).
#[utoipa::path(get, path = "/v1/conferences/{name}/recordings", tag = "control", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = RecordingList), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn recordings(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RecordingList>, ApiError> {
    principal.require(Scope::ConferencesRead)?;
    let Path(name) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    Ok(Json(RecordingList {
        recordings: state.store.recordings(&checked_name(name)?).await?,
    }))
}

/// `DELETE /v1/conferences/{name}/recordings`: stops every file recording.
#[utoipa::path(delete, path = "/v1/conferences/{name}/recordings", tag = "control", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = Vec<CommandResult>), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn stop_recordings(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<CommandResult>>, ApiError> {
    stop_kind(principal, state, path, "file").await
}

/// `DELETE /v1/conferences/{name}/broadcasts`: stops every broadcast.
#[utoipa::path(delete, path = "/v1/conferences/{name}/broadcasts", tag = "control", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = Vec<CommandResult>), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn stop_broadcasts(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<CommandResult>>, ApiError> {
    stop_kind(principal, state, path, "broadcast").await
}

async fn stop_kind(
    principal: ApiPrincipal,
    state: AppState,
    path: Result<Path<String>, PathRejection>,
    kind: &str,
) -> Result<Json<Vec<CommandResult>>, ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let Path(name) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let conference = live_conference(&state, &checked_name(name)?).await?;
    let open: Vec<Recording> = state
        .store
        .recordings(&conference.name)
        .await?
        .into_iter()
        .filter(|r| r.kind == kind && r.stopped_at.is_none() && r.node_id == conference.node_id)
        .collect();
    let mut results = Vec::with_capacity(open.len());
    for recording in open {
        results.push(command(&state, &conference, &format!("norecord {}", recording.path)).await?);
    }
    Ok(Json(results))
}

/// `POST /v1/conferences/{name}/broadcasts`: streams the conference to an RTMP URL (mod_av
/// records to the URL; nginx-rtmp turns it into HLS/DASH).
#[utoipa::path(post, path = "/v1/conferences/{name}/broadcasts", tag = "control", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), request_body = BroadcastBody, responses((status = 202, body = CommandResult), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn start_broadcast(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CommandResult>), ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let Path(name) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let body: BroadcastBody = json_body(body)?;
    arg("url", &body.url)?;
    if !(body.url.starts_with("rtmp://") || body.url.starts_with("rtmps://")) {
        return Err(ApiError::InvalidRequest(
            "url must start with rtmp:// or rtmps://".to_owned(),
        ));
    }
    let conference = live_conference(&state, &checked_name(name)?).await?;
    let result = command(&state, &conference, &format!("record {}", body.url)).await?;
    tracing::info!(key_id = %principal.key_id, conference = %conference.name, "broadcast requested");
    Ok((StatusCode::ACCEPTED, Json(result)))
}
