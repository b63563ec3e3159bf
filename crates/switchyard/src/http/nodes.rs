//! `/v1/nodes`: the node pool (list, add, drain, undrain, remove).
//!
//! Writes go to the `nodes` table; this replica applies them at once and the others at their
//! next sync (`pool.sync_interval_secs`). States are this replica's view of the node.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiPrincipal};
use crate::app::AppState;
use crate::config::{Scope, check_host_port, check_node_id, check_wss_url};
use crate::coord::NodeView;
use crate::events::Event;
use crate::live::{LeaveReason, NodeLoad};
use crate::metrics::Metrics;
use crate::nodes::health::{DegradedReason, Health};
use crate::nodes::{NodeState, NodeStatus, hang_up_with};
use crate::store::{EndReason, NodeConferenceCounts, NodeRecord, NodeSource, NodeSpec};

/// Largest number of labels on a node, and of characters in a label key or value.
const MAX_LABELS: usize = 16;
const MAX_LABEL_LEN: usize = 63;

/// A node as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeBody {
    pub id: String,
    /// `connecting`, `up`, `degraded`, `down`, `draining` or `stopped`.
    pub state: NodeState,
    pub health: Health,
    pub degraded_reason: Option<DegradedReason>,
    pub draining: bool,
    /// Draining and nothing left on it: safe to remove.
    pub drained: bool,
    pub source: NodeSource,
    pub esl_addr: String,
    pub wss_url: String,
    pub capacity: u32,
    pub labels: BTreeMap<String, String>,
    pub load: LoadBody,
    pub last_heartbeat: Option<HeartbeatBody>,
    /// Successful ESL connections by this replica (1 + reconnects).
    pub connections: u64,
    pub last_error: Option<String>,
    pub probe_rtt_ms: Option<f64>,
    pub down_since: Option<DateTime<Utc>>,
    /// This replica processes the node's events (holds its lease).
    pub owned_here: bool,
    /// With Redis: the replica that owns the node, and its view of the node's health (placement
    /// on every replica uses the worse of that view and its own).
    pub owner: Option<String>,
    pub owner_health: Option<Health>,
    /// When the node's FreeSWITCH last started (from its uptime).
    pub started_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoadBody {
    /// Conferences running on the node.
    pub conferences: u32,
    pub members: u32,
    /// Live placements on the node, including ones nobody has joined yet.
    pub placements: u32,
    pub idle_placements: u32,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatBody {
    pub received_at: DateTime<Utc>,
    pub age_secs: u64,
    pub idle_cpu: Option<f64>,
    pub session_count: Option<u32>,
    pub max_sessions: Option<u32>,
    pub uptime_secs: Option<u64>,
    pub core_uuid: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeList {
    pub nodes: Vec<NodeBody>,
}

/// `POST /v1/nodes` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    pub id: String,
    pub esl_addr: String,
    pub esl_password: String,
    pub wss_url: String,
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl std::fmt::Debug for NewNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewNode")
            .field("id", &self.id)
            .field("esl_addr", &self.esl_addr)
            .finish_non_exhaustive()
    }
}

fn default_capacity() -> u32 {
    100
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    pub force: bool,
}

fn body(
    record: &NodeRecord,
    status: Option<&NodeStatus>,
    view: Option<&NodeView>,
    load: NodeLoad,
    counts: NodeConferenceCounts,
) -> NodeBody {
    let state = status.map_or(NodeState::Connecting, |s| s.state);
    let heartbeat = status.and_then(|s| s.last_heartbeat.as_ref());
    NodeBody {
        id: record.id.clone(),
        state,
        health: status.map_or(Health::Connecting, |s| s.health),
        degraded_reason: status.and_then(|s| s.degraded_reason),
        draining: record.draining,
        drained: record.draining && counts.live == 0 && load.members == 0,
        source: record.source,
        esl_addr: record.esl_addr.clone(),
        wss_url: record.wss_url.clone(),
        capacity: record.capacity,
        labels: record.labels.clone(),
        load: LoadBody {
            conferences: load.conferences,
            members: load.members,
            placements: counts.live,
            idle_placements: counts.idle,
        },
        last_heartbeat: heartbeat.map(|h| HeartbeatBody {
            received_at: h.received_at.into(),
            age_secs: h.received_at.elapsed().map_or(0, |d| d.as_secs()),
            idle_cpu: h.idle_cpu,
            session_count: h.session_count,
            max_sessions: h.max_sessions,
            uptime_secs: h.uptime_msec.map(|ms| ms / 1000),
            core_uuid: h.core_uuid.clone(),
            version: h.version.clone(),
        }),
        connections: status.map_or(0, |s| s.connections),
        last_error: status.and_then(|s| s.last_error.clone()),
        probe_rtt_ms: status
            .and_then(|s| s.probe_rtt)
            .map(|d| d.as_secs_f64() * 1000.0),
        down_since: status.and_then(|s| s.down_since).map(DateTime::<Utc>::from),
        owned_here: status.is_some_and(|s| s.owned),
        owner: view.map(|v| v.owner.clone()),
        owner_health: view.map(|v| v.health),
        started_at: record.started_at,
    }
}

/// Every node of the pool with its figures.
async fn bodies(state: &AppState, only: Option<&str>) -> Result<Vec<NodeBody>, ApiError> {
    let records: Vec<NodeRecord> = state
        .nodes
        .records()
        .into_iter()
        .filter(|r| only.is_none_or(|id| r.id == id))
        .collect();
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let loads = match state.live.loads(&ids).await {
        Ok(loads) => loads,
        Err(e) => {
            tracing::warn!(error = %e, "live state unavailable; node loads shown as 0");
            HashMap::new()
        }
    };
    let counts = state.store.live_conference_counts().await?;
    let views = match &state.coord {
        Some(coord) => coord.node_views(&ids).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "owners' node views unavailable");
            HashMap::new()
        }),
        None => HashMap::new(),
    };
    // The started_at column is written by the node's owner; read it fresh.
    let stored: HashMap<String, NodeRecord> = state
        .store
        .list_nodes()
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    Ok(records
        .iter()
        .map(|r| {
            let mut record = r.clone();
            if let Some(s) = stored.get(&r.id) {
                record.started_at = s.started_at;
            }
            body(
                &record,
                state.nodes.status(&r.id).as_ref(),
                views.get(&r.id),
                loads.get(&r.id).copied().unwrap_or_default(),
                counts.get(&r.id).copied().unwrap_or_default(),
            )
        })
        .collect())
}

async fn one(state: &AppState, id: &str) -> Result<NodeBody, ApiError> {
    bodies(state, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or(ApiError::NodeNotFound)
}

fn node_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    check_node_id(&id).map_err(|_| ApiError::NodeNotFound)?;
    Ok(id)
}

#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", responses((status = 200, body = NodeList), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn list(
    principal: ApiPrincipal,
    State(state): State<AppState>,
) -> Result<Json<NodeList>, ApiError> {
    principal.require(Scope::NodesRead)?;
    Ok(Json(NodeList {
        nodes: bodies(&state, None).await?,
    }))
}

#[utoipa::path(get, path = "/v1/nodes/{node_id}", tag = "nodes", params(("node_id" = String, Path, description = "Node id", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")), responses((status = 200, body = NodeBody), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn get(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<NodeBody>, ApiError> {
    principal.require(Scope::NodesRead)?;
    let id = node_id(path)?;
    Ok(Json(one(&state, &id).await?))
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels"));
    }
    for (key, value) in labels {
        if check_node_id(key).is_err() || key.len() > MAX_LABEL_LEN {
            return Err(format!(
                "label key {key:?} must match [a-z0-9][a-z0-9_-]{{0,62}}"
            ));
        }
        if value.is_empty()
            || value.len() > MAX_LABEL_LEN
            || !value.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(format!(
                "label {key}: value must be 1-{MAX_LABEL_LEN} printable ASCII characters"
            ));
        }
    }
    Ok(())
}

/// Checks a `POST /v1/nodes` body; every problem is reported at once.
fn check_new_node(new: &NewNode) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    let mut check = |field: &str, result: Result<(), String>| {
        if let Err(e) = result {
            problems.push(format!("{field}: {e}"));
        }
    };
    check("id", check_node_id(&new.id));
    check("esl_addr", check_host_port(&new.esl_addr, false));
    check(
        "esl_password",
        if new.esl_password.is_empty() || new.esl_password.len() > 256 {
            Err("must be 1-256 characters".to_owned())
        } else if new.esl_password.chars().any(|c| c.is_control() || c == ' ') {
            Err("must not contain spaces or control characters".to_owned())
        } else {
            Ok(())
        },
    );
    check("wss_url", check_wss_url(&new.wss_url));
    check(
        "capacity",
        if new.capacity == 0 {
            Err("must be greater than 0".to_owned())
        } else {
            Ok(())
        },
    );
    check("labels", check_labels(&new.labels));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(problems.join("; ")))
    }
}

#[utoipa::path(post, path = "/v1/nodes", tag = "nodes", request_body = NewNode, responses((status = 201, body = NodeBody), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn add(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    body: Result<Json<NewNode>, JsonRejection>,
) -> Result<(StatusCode, Json<NodeBody>), ApiError> {
    principal.require(Scope::NodesWrite)?;
    let Json(new) = body?;
    check_new_node(&new)?;
    let spec = NodeSpec {
        id: new.id.clone(),
        esl_addr: new.esl_addr,
        esl_password: SecretString::from(new.esl_password),
        wss_url: new.wss_url,
        capacity: new.capacity,
        labels: new.labels,
    };
    if !state.store.insert_api_node(&spec).await? {
        return Err(ApiError::NodeExists);
    }
    tracing::info!(key_id = %principal.key_id, node = %spec.id, addr = %spec.esl_addr, "node added");
    state.nodes.sync_now().await;
    Ok((StatusCode::CREATED, Json(one(&state, &spec.id).await?)))
}

#[utoipa::path(post, path = "/v1/nodes/{node_id}/drain", tag = "nodes", params(("node_id" = String, Path, description = "Node id", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")), responses((status = 200, body = NodeBody), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn drain(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<NodeBody>, ApiError> {
    set_draining(principal, state, path, true).await
}

#[utoipa::path(post, path = "/v1/nodes/{node_id}/undrain", tag = "nodes", params(("node_id" = String, Path, description = "Node id", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")), responses((status = 200, body = NodeBody), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn undrain(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<NodeBody>, ApiError> {
    set_draining(principal, state, path, false).await
}

async fn set_draining(
    principal: ApiPrincipal,
    state: AppState,
    path: Result<Path<String>, PathRejection>,
    draining: bool,
) -> Result<Json<NodeBody>, ApiError> {
    principal.require(Scope::NodesWrite)?;
    let id = node_id(path)?;
    if !state.store.set_node_draining(&id, draining).await? {
        return Err(ApiError::NodeNotFound);
    }
    state.nodes.set_draining(&id, draining);
    tracing::info!(key_id = %principal.key_id, node = %id, draining, "node drain flag set");
    Ok(Json(one(&state, &id).await?))
}

#[utoipa::path(delete, path = "/v1/nodes/{node_id}", tag = "nodes", params(("node_id" = String, Path, description = "Node id", pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$"), DeleteQuery), responses((status = 204, description = "Removed"), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn remove(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::NodesWrite)?;
    let id = node_id(path)?;
    let Query(query) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    if state.store.get_node(&id).await?.is_none() {
        return Err(ApiError::NodeNotFound);
    }
    if state.config.nodes.iter().any(|n| n.id == id) {
        return Err(ApiError::NodeInConfig);
    }
    let placements = state.store.live_conferences_on(&id).await?;
    let load = state
        .live
        .loads(std::slice::from_ref(&id))
        .await?
        .remove(&id)
        .unwrap_or_default();
    let empty = placements.is_empty() && load.members == 0 && load.conferences == 0;
    if !empty && !query.force {
        return Err(ApiError::NodeNotEmpty {
            conferences: u32::try_from(placements.len())
                .unwrap_or(u32::MAX)
                .max(load.conferences),
            members: load.members,
        });
    }
    if !empty {
        hang_up_everything(&state, &id).await;
        for conference in placements {
            if state
                .store
                .end_conference(&conference.id, EndReason::NodeRemoved)
                .await?
            {
                state
                    .metrics
                    .conferences_ended
                    .get_or_create(&Metrics::reason(EndReason::NodeRemoved.as_str()))
                    .inc();
                state.bus.publish(Event::ConferenceEnded {
                    conference,
                    reason: EndReason::NodeRemoved,
                });
            }
        }
    }
    state.store.delete_node(&id).await?;
    tracing::info!(
        key_id = %principal.key_id,
        node = %id,
        force = query.force,
        reason = LeaveReason::NodeRemoved.as_str(),
        "node removed"
    );
    state.nodes.sync_now().await;
    Ok(StatusCode::NO_CONTENT)
}

/// Best effort: asks the node to hang up every member of every conference it runs.
async fn hang_up_everything(state: &AppState, id: &str) {
    let conferences = match state.live.load_node(id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(node = %id, error = %e, "cannot list the node's conferences to hang them up");
            return;
        }
    };
    for name in conferences.keys() {
        hang_up_with(
            &state.live,
            state.nodes.client(id),
            id,
            name,
            LeaveReason::NodeRemoved,
        )
        .await;
    }
}
