//! `/v1/conferences`, `/v1/members`, `/v1/history`: CppComet's `conference` table
//! (invitations) and `conference_members` table (live members) as REST, plus history.
//!
//! Placing is shared by `PUT /v1/conferences/{name}` and the first invitation: the first call
//! chooses a node, every later one — from any replica — gets the same node until the
//! conference ends. Options (`max_members`, `max_duration_secs`, `idle_timeout_secs`, `open`)
//! are fixed by the call that places the conference.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiPrincipal};
use crate::app::AppState;
use crate::config::Scope;
use crate::events::Event;
use crate::ids::{valid_conference_name, valid_user_id};
use crate::live::{LeaveReason, Member};
use crate::nodes::{NodeState, Placed, PlacementRequest, hang_up_with, place};
use crate::store::{
    ConferenceFilter, ConferenceOptions, ConferenceRecord, Cursor, EndReason, Invitation,
    MemberStay, NewInvitation, StayFilter,
};

/// The conference profiles a caller may ask for (mod_conference profiles of the same names,
/// see `freeswitch-conf/autoload_configs/conference.conf.xml`).
pub const PROFILES: [&str; 2] = ["audio", "video"];
/// Longest caller id and message of an invitation (characters).
const MAX_CALLER_ID: usize = 128;
const MAX_MESSAGE: usize = 1024;
/// Page sizes of the list endpoints.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// Where a conference runs.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRef {
    pub id: String,
    /// What browsers dial (JsSIP `sockets`).
    pub wss_url: String,
    pub state: Option<NodeState>,
}

/// What a browser dials to join.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dial {
    /// `sip:conf*<name>@<domain>`.
    pub uri: String,
    /// `conf*<name>`: the destination number the dialplan answers.
    pub destination: String,
}

/// A conference as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConferenceBody {
    pub id: String,
    pub name: String,
    pub node: NodeRef,
    pub profile: String,
    pub labels: BTreeMap<String, String>,
    pub options: ConferenceOptions,
    /// `placed` (chosen by Switchyard) or `adopted` (found running on the node).
    pub origin: String,
    /// `live` or `ended`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    /// When the first member joined.
    pub started_at: Option<DateTime<Utc>>,
    /// Since when nobody is in it (`null` while members are).
    pub idle_since: Option<DateTime<Utc>>,
    pub member_count: u32,
    /// At its `max_members`: the dialplan refuses the next caller (SIP 486).
    pub full: bool,
    pub peak_members: u32,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub dial: Dial,
    /// On `GET /v1/conferences/{name}`: who is in it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberBody>>,
}

/// A live member: a row of CppComet's `conference_members`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberBody {
    pub name: String,
    pub user_id: Option<String>,
    pub member_id: u32,
    pub node: String,
    pub caller_id_name: String,
    pub joined_at: DateTime<Utc>,
    /// Seconds since joining.
    pub join_time: i64,
    /// Seconds since last talking; `null` if never.
    pub last_talking: Option<i64>,
    pub talking: bool,
    pub muted: bool,
    pub deaf: bool,
    pub video: bool,
    pub floor: bool,
}

impl MemberBody {
    fn new(m: Member, now: DateTime<Utc>) -> Self {
        Self {
            join_time: now.signed_duration_since(m.joined_at).num_seconds().max(0),
            last_talking: m
                .last_talking_at
                .map(|t| now.signed_duration_since(t).num_seconds().max(0)),
            name: m.conference,
            user_id: m.user_id,
            member_id: m.member_id,
            node: m.node,
            caller_id_name: m.caller_id_name,
            joined_at: m.joined_at,
            talking: m.talking,
            muted: m.muted,
            deaf: m.deaf,
            video: m.video,
            floor: m.floor,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberList {
    pub members: Vec<MemberBody>,
}

/// `POST /v1/conferences/{name}/invitations` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvitationResult {
    pub conference: ConferenceBody,
    pub node: NodeRef,
    pub dial: Dial,
    pub invitation: Invitation,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvitationList {
    pub invitations: Vec<Invitation>,
}

/// A page of a list, with the cursor of the next one.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// Body of `PUT /v1/conferences/{name}` (every field optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutConference {
    /// `audio` (default) or `video`.
    pub profile: Option<String>,
    /// Labels the node must carry, e.g. `{"region": "eu"}`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub max_members: Option<u32>,
    pub max_duration_secs: Option<u32>,
    pub idle_timeout_secs: Option<u32>,
    #[serde(default)]
    pub open: bool,
}

/// Body of `POST /v1/conferences/{name}/invitations`: CppComet's `conference` row, plus the
/// options of a conference this invitation creates.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitationBody {
    pub user_id: String,
    /// Shown to the invited user (CppComet `caller_id`); defaults to empty.
    #[serde(default)]
    pub caller_id: String,
    #[serde(default)]
    pub message: String,
    /// `audio` or `video`; must match the conference's when it exists (default: its profile,
    /// or `audio` for a new one).
    pub profile: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub max_members: Option<u32>,
    pub max_duration_secs: Option<u32>,
    pub idle_timeout_secs: Option<u32>,
    #[serde(default)]
    pub open: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub name: Option<String>,
    pub node: Option<String>,
    /// `live` or `ended`.
    pub state: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    pub user_id: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StaysQuery {
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn conference_body(state: &AppState, c: ConferenceRecord) -> ConferenceBody {
    let record = state.nodes.record(&c.node_id);
    let dial = dial(state, &c.name);
    let full = c
        .options
        .max_members
        .is_some_and(|max| c.member_count >= max);
    ConferenceBody {
        node: NodeRef {
            wss_url: record.map(|r| r.wss_url).unwrap_or_default(),
            state: state.nodes.status(&c.node_id).map(|s| s.state),
            id: c.node_id,
        },
        state: if c.ended_at.is_some() {
            "ended"
        } else {
            "live"
        }
        .to_owned(),
        id: c.id,
        name: c.name,
        profile: c.profile,
        labels: c.labels,
        options: c.options,
        origin: c.origin,
        created_at: c.created_at,
        started_at: c.started_at,
        idle_since: c.idle_since,
        member_count: c.member_count,
        full,
        peak_members: c.peak_members,
        ended_at: c.ended_at,
        end_reason: c.end_reason,
        dial,
        members: None,
    }
}

fn dial(state: &AppState, name: &str) -> Dial {
    let destination = format!("{}{name}", crate::freeswitch::dialplan::CONFERENCE_PREFIX);
    Dial {
        uri: format!("sip:{destination}@{}", state.config.sip.domain),
        destination,
    }
}

fn conference_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    checked_name(name)
}

pub(super) fn checked_name(name: String) -> Result<String, ApiError> {
    if valid_conference_name(&name) {
        Ok(name)
    } else {
        Err(ApiError::InvalidConferenceName(
            name.chars().take(80).collect(),
        ))
    }
}

/// An optional JSON body: empty means the defaults.
pub(super) fn optional_json<T: DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
}

pub(super) fn json_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))
}

fn check_profile(profile: &str) -> Result<(), ApiError> {
    if PROFILES.contains(&profile) {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "profile must be one of {PROFILES:?}"
        )))
    }
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > 16
        || labels
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 63 || v.len() > 63)
    {
        return Err(ApiError::InvalidRequest(
            "labels: at most 16, keys and values of 1-63 characters".to_owned(),
        ));
    }
    Ok(())
}

fn check_options(options: &ConferenceOptions) -> Result<(), ApiError> {
    let positive = |field: &str, v: Option<u32>| match v {
        Some(0) => Err(ApiError::InvalidRequest(format!(
            "{field} must be greater than 0"
        ))),
        _ => Ok(()),
    };
    positive("max_members", options.max_members)?;
    positive("max_duration_secs", options.max_duration_secs)?;
    positive("idle_timeout_secs", options.idle_timeout_secs)
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::InvalidRequest(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        ))),
    }
}

fn cursor(cursor: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    cursor
        .map(|c| {
            Cursor::decode(c).ok_or_else(|| ApiError::InvalidRequest("invalid cursor".to_owned()))
        })
        .transpose()
}

async fn place_conference(
    state: &AppState,
    name: String,
    profile: Option<String>,
    labels: BTreeMap<String, String>,
    options: ConferenceOptions,
) -> Result<Placed, ApiError> {
    let profile = profile.unwrap_or_else(|| PROFILES[0].to_owned());
    check_profile(&profile)?;
    check_labels(&labels)?;
    check_options(&options)?;
    Ok(place(
        state,
        &PlacementRequest {
            name,
            profile,
            labels,
            options,
        },
    )
    .await?)
}

#[utoipa::path(put, path = "/v1/conferences/{name}", tag = "conferences", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), request_body(content = Option<PutConference>, description = "Optional; empty means the defaults"), responses((status = 201, description = "Placed now", body = ConferenceBody), (status = 200, description = "Already placed", body = ConferenceBody), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn put(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ConferenceBody>), ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let name = conference_name(path)?;
    let body: PutConference = optional_json(body)?;
    let options = ConferenceOptions {
        max_members: body.max_members,
        max_duration_secs: body.max_duration_secs,
        idle_timeout_secs: body.idle_timeout_secs,
        open: body.open,
    };
    let placed = place_conference(&state, name, body.profile, body.labels, options).await?;
    let status = if placed.created {
        tracing::info!(key_id = %principal.key_id, conference = %placed.conference.name, node = %placed.conference.node_id, "conference placed through the API");
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(conference_body(&state, placed.conference))))
}

#[utoipa::path(get, path = "/v1/conferences/{name}", tag = "conferences", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = ConferenceBody), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn get(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ConferenceBody>, ApiError> {
    principal.require(Scope::ConferencesRead)?;
    let name = conference_name(path)?;
    let Some(conference) = state.store.live_conference(&name).await? else {
        return Err(ApiError::ConferenceNotFound);
    };
    let members = state
        .live
        .conference_members(&conference.node_id, &conference.name)
        .await?;
    let now = Utc::now();
    let mut body = conference_body(&state, conference);
    body.members = Some(
        members
            .into_iter()
            .map(|m| MemberBody::new(m, now))
            .collect(),
    );
    Ok(Json(body))
}

#[utoipa::path(get, path = "/v1/conferences", tag = "conferences", params(ListQuery), responses((status = 200, body = Page<ConferenceBody>), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn list(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page<ConferenceBody>>, ApiError> {
    principal.require(Scope::ConferencesRead)?;
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let live = match query.state.as_deref() {
        None => None,
        Some("live") => Some(true),
        Some("ended") => Some(false),
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "state must be live or ended".to_owned(),
            ));
        }
    };
    let name = query.name.map(checked_name).transpose()?;
    let limit = page_limit(query.limit)?;
    let after = cursor(query.cursor.as_deref())?;
    let filter = ConferenceFilter {
        name,
        node_id: query.node,
        live,
    };
    let rows = state
        .store
        .conferences(&filter, after.as_ref(), limit)
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last())
        .flatten()
        .map(|c| {
            Cursor {
                at: c.created_at,
                id: c.id.clone(),
            }
            .encode()
        });
    Ok(Json(Page {
        items: rows
            .into_iter()
            .map(|c| conference_body(&state, c))
            .collect(),
        next_cursor,
    }))
}

/// Ends a conference: its members are hung up (reason `ended`), its placement ends, its
/// invitations go.
#[utoipa::path(delete, path = "/v1/conferences/{name}", tag = "conferences", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 204, description = "Ended: members hung up (reason ended), invitations gone"), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn end(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let name = conference_name(path)?;
    let Some(conference) = state.store.live_conference(&name).await? else {
        return Err(ApiError::ConferenceNotFound);
    };
    hang_up_with(
        &state.live,
        state.nodes.client(&conference.node_id),
        &conference.node_id,
        &name,
        LeaveReason::Ended,
    )
    .await;
    if state
        .store
        .end_conference(&conference.id, EndReason::Ended)
        .await?
    {
        tracing::info!(key_id = %principal.key_id, conference = %name, "conference ended through the API");
        state.bus.publish(Event::ConferenceEnded {
            conference,
            reason: EndReason::Ended,
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Invites a user: places the conference if new, stores the invitation (idempotent), and
/// announces it.
#[utoipa::path(post, path = "/v1/conferences/{name}/invitations", tag = "conferences", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), request_body = NewInvitationBody, responses((status = 201, description = "Invited", body = InvitationResult), (status = 200, description = "Already invited (idempotent)", body = InvitationResult), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn invite(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<InvitationResult>), ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let name = conference_name(path)?;
    let body: NewInvitationBody = json_body(body)?;
    let (created, result) = invite_user(&state, name, body, &principal.key_id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(result)))
}

/// Places conference `name` if needed and invites `body.user_id`; `true` when the invitation is
/// new (and was announced). `by` names the caller in the log (an API key id, or `demo`).
pub(super) async fn invite_user(
    state: &AppState,
    name: String,
    body: NewInvitationBody,
    by: &str,
) -> Result<(bool, InvitationResult), ApiError> {
    if !valid_user_id(&body.user_id) {
        return Err(ApiError::InvalidUserId(
            body.user_id.chars().take(80).collect(),
        ));
    }
    check_text("caller_id", &body.caller_id, MAX_CALLER_ID)?;
    check_text("message", &body.message, MAX_MESSAGE)?;
    match state.store.get_user(&body.user_id).await? {
        None => return Err(ApiError::UserNotFound),
        Some(user) if !user.enabled => return Err(ApiError::UserDisabled),
        Some(_) => {}
    }
    let options = ConferenceOptions {
        max_members: body.max_members,
        max_duration_secs: body.max_duration_secs,
        idle_timeout_secs: body.idle_timeout_secs,
        open: body.open,
    };
    let placed = place_conference(
        state,
        name.clone(),
        body.profile.clone(),
        body.labels,
        options,
    )
    .await?;
    if let Some(asked) = &body.profile
        && *asked != placed.conference.profile
    {
        return Err(ApiError::ProfileConflict {
            asked: asked.clone(),
            actual: placed.conference.profile.clone(),
        });
    }
    let (invitation, created) = state
        .store
        .invite(&NewInvitation {
            name,
            user_id: body.user_id,
            caller_id: body.caller_id,
            message: body.message,
            profile: placed.conference.profile.clone(),
        })
        .await?;
    let conference = conference_body(state, placed.conference);
    let node = NodeRef {
        id: conference.node.id.clone(),
        wss_url: conference.node.wss_url.clone(),
        state: conference.node.state,
    };
    let dial = dial(state, &conference.name);
    if created {
        tracing::info!(
            by,
            conference = %invitation.name,
            user = %invitation.user_id,
            node = %node.id,
            "user invited"
        );
        state.bus.publish(Event::Invited {
            invitation: invitation.clone(),
            node: node.id.clone(),
            wss_url: node.wss_url.clone(),
            dial_uri: dial.uri.clone(),
        });
    }
    Ok((
        created,
        InvitationResult {
            conference,
            node,
            dial,
            invitation,
        },
    ))
}

#[utoipa::path(get, path = "/v1/conferences/{name}/invitations", tag = "conferences", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = InvitationList), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn invitations(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<InvitationList>, ApiError> {
    principal.require(Scope::ConferencesRead)?;
    let name = conference_name(path)?;
    Ok(Json(InvitationList {
        invitations: state.store.invitations(&name).await?,
    }))
}

/// Cancels an invitation and removes the user from the live conference (reason `uninvited`).
#[utoipa::path(delete, path = "/v1/conferences/{name}/invitations/{user_id}", tag = "conferences", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"), ("user_id" = String, Path, description = "User id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 204, description = "Cancelled; the user was removed from the live conference (reason uninvited)"), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn uninvite(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let Path((name, user_id)) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let name = checked_name(name)?;
    if !valid_user_id(&user_id) {
        return Err(ApiError::InvalidUserId(user_id.chars().take(80).collect()));
    }
    let removed = state.store.uninvite(&name, &user_id).await?;
    let kicked = kick_user(&state, &name, &user_id, LeaveReason::Uninvited).await?;
    if !removed && kicked == 0 {
        return Err(ApiError::InvitationNotFound);
    }
    tracing::info!(key_id = %principal.key_id, conference = %name, user = %user_id, kicked, "invitation cancelled");
    state.bus.publish(Event::InvitationCancelled {
        name,
        user_id,
        reason: crate::browser::protocol::CancelReason::Cancelled,
    });
    Ok(StatusCode::NO_CONTENT)
}

/// Kicks every member of `user_id` in conference `name` on its node, announcing `reason`.
/// Returns how many were kicked; a `-ERR` from the node is logged (the member may have left).
async fn kick_user(
    state: &AppState,
    name: &str,
    user_id: &str,
    reason: LeaveReason,
) -> Result<usize, ApiError> {
    let Some(conference) = state.store.live_conference(name).await? else {
        return Ok(0);
    };
    let node = conference.node_id;
    let members: Vec<Member> = state
        .live
        .conference_members(&node, name)
        .await?
        .into_iter()
        .filter(|m| m.user_id.as_deref() == Some(user_id))
        .collect();
    let Some(client) = state.nodes.client(&node) else {
        return Ok(0);
    };
    for m in &members {
        state
            .live
            .expect_exit(&node, name, m.member_id, reason)
            .await?;
        let command = format!("conference {name} kick {}", m.member_id);
        match tokio::time::timeout(std::time::Duration::from_secs(5), client.api(&command)).await {
            Ok(Ok(reply)) => {
                let reply = String::from_utf8_lossy(&reply);
                if reply.starts_with("-ERR") {
                    tracing::warn!(node = %node, conference = %name, member_id = m.member_id, reply = %reply.trim(), "kick refused");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(node = %node, conference = %name, error = %e, "kick failed")
            }
            Err(_) => tracing::warn!(node = %node, conference = %name, "kick timed out"),
        }
    }
    Ok(members.len())
}

#[utoipa::path(get, path = "/v1/conferences/{name}/members", tag = "members", params(("name" = String, Path, description = "Conference name", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = MemberList), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn members(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MemberList>, ApiError> {
    principal.require(Scope::ConferencesRead)?;
    let name = conference_name(path)?;
    Ok(Json(member_list(&state, &name).await?))
}

/// The live members of conference `name`.
pub(super) async fn member_list(state: &AppState, name: &str) -> Result<MemberList, ApiError> {
    let Some(conference) = state.store.live_conference(name).await? else {
        return Err(ApiError::ConferenceNotFound);
    };
    let now = Utc::now();
    let members = state
        .live
        .conference_members(&conference.node_id, name)
        .await?;
    Ok(MemberList {
        members: members
            .into_iter()
            .map(|m| MemberBody::new(m, now))
            .collect(),
    })
}

/// `GET /v1/members?user_id=…`: the user's live memberships on every node.
#[utoipa::path(get, path = "/v1/members", tag = "members", params(MembersQuery), responses((status = 200, body = MemberList), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn user_members(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<MemberList>, ApiError> {
    principal.require(Scope::ConferencesRead)?;
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    if !valid_user_id(&query.user_id) {
        return Err(ApiError::InvalidUserId(
            query.user_id.chars().take(80).collect(),
        ));
    }
    let now = Utc::now();
    let members = state.live.user_members(&query.user_id).await?;
    Ok(Json(MemberList {
        members: members
            .into_iter()
            .map(|m| MemberBody::new(m, now))
            .collect(),
    }))
}

/// `GET /v1/history/conferences`: placements, live and ended, newest first.
#[utoipa::path(get, path = "/v1/history/conferences", tag = "history", params(ListQuery), responses((status = 200, body = Page<ConferenceBody>), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn history_conferences(
    principal: ApiPrincipal,
    state: State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page<ConferenceBody>>, ApiError> {
    list(principal, state, query).await
}

/// `GET /v1/history/members`: members' stays, newest first.
#[utoipa::path(get, path = "/v1/history/members", tag = "history", params(StaysQuery), responses((status = 200, body = Page<StayBody>), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn history_members(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    query: Result<Query<StaysQuery>, QueryRejection>,
) -> Result<Json<Page<StayBody>>, ApiError> {
    principal.require(Scope::ConferencesRead)?;
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let name = query.name.map(checked_name).transpose()?;
    if let Some(user) = &query.user_id
        && !valid_user_id(user)
    {
        return Err(ApiError::InvalidUserId(user.chars().take(80).collect()));
    }
    let limit = page_limit(query.limit)?;
    let after = cursor(query.cursor.as_deref())?;
    let filter = StayFilter {
        name,
        user_id: query.user_id,
    };
    let rows = state.store.stays(&filter, after.as_ref(), limit).await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last())
        .flatten()
        .map(|s| {
            Cursor {
                at: s.joined_at,
                id: s.id.clone(),
            }
            .encode()
        });
    Ok(Json(Page {
        items: rows.into_iter().map(StayBody::from).collect(),
        next_cursor,
    }))
}

/// One member's stay, with its duration.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StayBody {
    #[serde(flatten)]
    pub stay: MemberStay,
    /// Seconds between join and leave (so far, while still in).
    pub duration_secs: i64,
}

impl From<MemberStay> for StayBody {
    fn from(stay: MemberStay) -> Self {
        let end = stay.left_at.unwrap_or_else(Utc::now);
        Self {
            duration_secs: end
                .signed_duration_since(stay.joined_at)
                .num_seconds()
                .max(0),
            stay,
        }
    }
}
