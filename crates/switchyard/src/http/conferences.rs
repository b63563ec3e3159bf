//! `/v1/conferences`: placement of a conference on a node, and what is live in it.
//!
//! `PUT /v1/conferences/{name}` places the conference (or returns where it is): the first call
//! chooses a node, every later one — from any replica — gets the same node until the
//! conference ends. Invitations (the conference issue) place through the same function.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiPrincipal};
use crate::app::AppState;
use crate::config::Scope;
use crate::ids::valid_conference_name;
use crate::live::Member;
use crate::nodes::{NodeState, PlacementRequest, place};
use crate::store::ConferenceRecord;

/// The conference profiles a caller may ask for.
pub const PROFILES: [&str; 2] = ["audio", "video"];

/// `PUT /v1/conferences/{name}` body (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutConference {
    /// `audio` (default) or `video`.
    pub profile: Option<String>,
    /// Labels the node must carry, e.g. `{"region": "eu"}`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Where a conference runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeRef {
    pub id: String,
    /// What browsers dial (JsSIP `sockets`).
    pub wss_url: String,
    pub state: Option<NodeState>,
}

/// A conference as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConferenceBody {
    pub id: String,
    pub name: String,
    pub node: NodeRef,
    pub profile: String,
    pub labels: BTreeMap<String, String>,
    /// `placed` (chosen by Switchyard) or `adopted` (found running on the node).
    pub origin: String,
    pub created_at: DateTime<Utc>,
    /// Since when nobody is in it (`null` while members are).
    pub idle_since: Option<DateTime<Utc>>,
    pub peak_members: u32,
    /// Present on `GET`: who is in it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
}

fn conference_body(state: &AppState, c: ConferenceRecord) -> ConferenceBody {
    let record = state.nodes.record(&c.node_id);
    ConferenceBody {
        node: NodeRef {
            wss_url: record.map(|r| r.wss_url).unwrap_or_default(),
            state: state.nodes.status(&c.node_id).map(|s| s.state),
            id: c.node_id,
        },
        id: c.id,
        name: c.name,
        profile: c.profile,
        labels: c.labels,
        origin: c.origin,
        created_at: c.created_at,
        idle_since: c.idle_since,
        peak_members: c.peak_members,
        members: None,
    }
}

fn conference_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    if valid_conference_name(&name) {
        Ok(name)
    } else {
        Err(ApiError::InvalidConferenceName(
            name.chars().take(80).collect(),
        ))
    }
}

pub(super) async fn put(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ConferenceBody>), ApiError> {
    principal.require(Scope::ConferencesWrite)?;
    let name = conference_name(path)?;
    let body = body.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    // The body is optional: no body means the defaults.
    let body: PutConference = if body.iter().all(u8::is_ascii_whitespace) {
        PutConference::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))?
    };
    let profile = body.profile.unwrap_or_else(|| PROFILES[0].to_owned());
    if !PROFILES.contains(&profile.as_str()) {
        return Err(ApiError::InvalidRequest(format!(
            "profile must be one of {PROFILES:?}"
        )));
    }
    if body.labels.len() > 16
        || body
            .labels
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 63 || v.len() > 63)
    {
        return Err(ApiError::InvalidRequest(
            "labels: at most 16, keys and values of 1-63 characters".to_owned(),
        ));
    }
    let placed = place(
        &state,
        &PlacementRequest {
            name,
            profile,
            labels: body.labels,
        },
    )
    .await?;
    let status = if placed.created {
        tracing::info!(key_id = %principal.key_id, conference = %placed.conference.name, node = %placed.conference.node_id, "conference placed through the API");
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(conference_body(&state, placed.conference))))
}

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
    let mut body = conference_body(&state, conference);
    body.members = Some(members);
    Ok(Json(body))
}
