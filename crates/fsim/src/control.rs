//! The HTTP control port of the `fsim` binary.
//!
//! # Why
//!
//! A real FreeSWITCH is driven from the outside by SIP phones and by its operators; fsim has no
//! SIP stack, so the things phones and operators do are exposed here instead. Tests and demos
//! that are not written in Rust (shell scripts, the demo, the black-box tests in `tests/`) can
//! register users, place calls into conferences, make members talk, hang up, and inject the
//! faults Switchyard must survive (ESL drops, a frozen node, a restart with a new Core-UUID, a
//! slow directory) without linking the simulator.
//!
//! # API (JSON in, JSON out)
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/nodes` | | `[{name, esl_addr, sip_ws_url, core_uuid}]` (`sip_ws_url` null without `--sip-ws`) |
//! | GET | `/nodes/{name}` | | snapshot: `{name, esl_addr, sip_ws_url, core_uuid, uptime_ms, frozen, esl_connections, registrations, conferences: [{name, uuid, profile, locked, floor, members: [{id, channel_uuid, caller_id_name, caller_id_number, hear, speak, talking}], recordings}], channels: [{uuid, name, state, conference, member_id}], open_auth_count}` |
//! | POST | `/nodes/{name}/register` | `{user, password}` | `{node, user, registered: true}` |
//! | POST | `/nodes/{name}/calls` | `{user, password, conference, profile?}` | 201 `{uuid, member_id, conference}` |
//! | POST | `/nodes/{name}/calls/{uuid}/talking` | `{talking: bool}` | `{uuid, talking}` |
//! | DELETE | `/nodes/{name}/calls/{uuid}` | | `{uuid, hung_up: true}` |
//! | POST | `/nodes/{name}/faults/drop-esl` | | `{node, fault}` |
//! | POST | `/nodes/{name}/faults/freeze` | | `{node, fault}` |
//! | POST | `/nodes/{name}/faults/unfreeze` | | `{node, fault}` |
//! | POST | `/nodes/{name}/faults/restart` | | `{node, fault, core_uuid}` (the new one) |
//! | POST | `/nodes/{name}/faults/directory-delay` | `{ms}` | `{node, fault, ms}` |
//!
//! Every error is `{"code": "<machine code>", "message": "<text>"}` with a fitting status:
//! `node_not_found`/`no_route` (404), `bad_request` (400), `method_not_allowed` (405), the
//! authentication failures `user_not_found`, `wrong_password`, `forbidden` (403),
//! `directory_error` (502), `directory_timeout` (504), `no_directory` (503), and the call
//! errors of [`CallError`] (see [`ControlError::code`]).

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::directory::AuthFailure;
use crate::node::{CallError, SimNode};

/// The profile a call joins with when the request names none (mod_conference's `default`).
pub const DEFAULT_PROFILE: &str = "default";

/// A failed control request.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No node has that name.
    #[error("no node named {0:?}")]
    NodeNotFound(String),
    /// The request body or path is unusable.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The node's directory refused the user.
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthFailure),
    /// The node refused or failed the call operation.
    #[error("call failed: {0}")]
    Call(#[from] CallError),
}

impl ControlError {
    /// The machine-readable `code` of the JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::NodeNotFound(_) => "node_not_found",
            ControlError::BadRequest(_) => "bad_request",
            ControlError::Auth(a) => auth_code(a),
            ControlError::Call(c) => call_code(c),
        }
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            ControlError::NodeNotFound(_) => StatusCode::NOT_FOUND,
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::Auth(a) => auth_status(a),
            ControlError::Call(c) => call_status(c),
        }
    }
}

fn auth_code(a: &AuthFailure) -> &'static str {
    match a {
        AuthFailure::NotFound => "user_not_found",
        AuthFailure::WrongPassword => "wrong_password",
        AuthFailure::Forbidden(_) => "forbidden",
        AuthFailure::Http(_) => "directory_error",
        AuthFailure::Timeout => "directory_timeout",
        AuthFailure::NoDirectory => "no_directory",
    }
}

fn auth_status(a: &AuthFailure) -> StatusCode {
    match a {
        AuthFailure::NotFound | AuthFailure::WrongPassword | AuthFailure::Forbidden(_) => {
            StatusCode::FORBIDDEN
        }
        AuthFailure::Http(_) => StatusCode::BAD_GATEWAY,
        AuthFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
        AuthFailure::NoDirectory => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn call_code(c: &CallError) -> &'static str {
    match c {
        CallError::Auth(a) => auth_code(a),
        CallError::NoSuchChannel(_) => "no_such_channel",
        CallError::NotInConference(_) => "not_in_conference",
        CallError::MaxSessions(_) => "max_sessions",
        CallError::Locked(_) => "conference_locked",
    }
}

fn call_status(c: &CallError) -> StatusCode {
    match c {
        CallError::Auth(a) => auth_status(a),
        CallError::NoSuchChannel(_) => StatusCode::NOT_FOUND,
        CallError::NotInConference(_) | CallError::Locked(_) => StatusCode::CONFLICT,
        CallError::MaxSessions(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code(), "message": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

/// The nodes the control port drives.
#[derive(Debug, Clone)]
struct ControlState {
    nodes: Arc<Vec<SimNode>>,
}

impl ControlState {
    fn node(&self, name: &str) -> Result<&SimNode, ControlError> {
        self.nodes
            .iter()
            .find(|n| n.name() == name)
            .ok_or_else(|| ControlError::NodeNotFound(name.to_owned()))
    }
}

/// The axum router of the control port for `nodes`.
pub fn router(nodes: Vec<SimNode>) -> Router {
    let state = ControlState {
        nodes: Arc::new(nodes),
    };
    Router::new()
        .route("/nodes", get(list_nodes))
        .route("/nodes/{name}", get(snapshot))
        .route("/nodes/{name}/register", post(register))
        .route("/nodes/{name}/calls", post(call))
        .route("/nodes/{name}/calls/{uuid}", axum::routing::delete(hangup))
        .route("/nodes/{name}/calls/{uuid}/talking", post(talking))
        .route("/nodes/{name}/faults/{fault}", post(fault))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves the control port on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    nodes: Vec<SimNode>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(nodes))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn no_route() -> Response {
    let body = json!({ "code": "no_route", "message": "no such control endpoint" });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn method_not_allowed() -> Response {
    let body = json!({ "code": "method_not_allowed", "message": "method not allowed here" });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

/// Parses a JSON request body. The `Content-Type` is not checked, so `curl -d '{...}'` works.
fn body<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(payload)
        .map_err(|e| ControlError::BadRequest(format!("invalid JSON body: {e}")))
}

#[derive(Debug, Serialize)]
struct NodeSummary {
    name: String,
    esl_addr: String,
    /// `ws://host:port` of the SIP-over-WebSocket endpoint, when enabled.
    sip_ws_url: Option<String>,
    core_uuid: String,
}

async fn list_nodes(State(st): State<ControlState>) -> Json<Vec<NodeSummary>> {
    Json(
        st.nodes
            .iter()
            .map(|n| NodeSummary {
                name: n.name().to_owned(),
                esl_addr: n.esl_addr().to_string(),
                sip_ws_url: n.sip_ws_addr().map(|a| format!("ws://{a}")),
                core_uuid: n.core_uuid(),
            })
            .collect(),
    )
}

async fn snapshot(
    State(st): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let node = st.node(&name)?;
    Ok(Json(snapshot_json(node)))
}

/// The JSON form of [`SimNode::snapshot`].
fn snapshot_json(node: &SimNode) -> Value {
    let snap = node.snapshot();
    let conferences: Vec<Value> = snap
        .conferences
        .iter()
        .map(|c| {
            let members: Vec<Value> = c
                .members
                .iter()
                .map(|m| {
                    json!({
                        "id": m.id,
                        "channel_uuid": m.channel_uuid,
                        "caller_id_name": m.caller_id_name,
                        "caller_id_number": m.caller_id_number,
                        "hear": m.hear,
                        "speak": m.speak,
                        "talking": m.talking,
                    })
                })
                .collect();
            json!({
                "name": c.name,
                "uuid": c.uuid,
                "profile": c.profile,
                "locked": c.locked,
                "floor": c.floor,
                "members": members,
                "recordings": c.recordings,
            })
        })
        .collect();
    let channels: Vec<Value> = snap
        .channels
        .iter()
        .map(|ch| {
            json!({
                "uuid": ch.uuid,
                "name": ch.name,
                "state": ch.state,
                "conference": ch.member.as_ref().map(|(conf, _)| conf),
                "member_id": ch.member.as_ref().map(|(_, id)| id),
            })
        })
        .collect();
    json!({
        "name": node.name(),
        "esl_addr": node.esl_addr().to_string(),
        "sip_ws_url": node.sip_ws_addr().map(|a| format!("ws://{a}")),
        "core_uuid": snap.core_uuid,
        "uptime_ms": u64::try_from(snap.uptime.as_millis()).unwrap_or(u64::MAX),
        "frozen": snap.frozen,
        "esl_connections": snap.esl_connections,
        "registrations": snap.registrations,
        "conferences": conferences,
        "channels": channels,
        "open_auth_count": node.directory().open_auth_count(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    user: String,
    password: String,
}

async fn register(
    State(st): State<ControlState>,
    Path(name): Path<String>,
    payload: Bytes,
) -> Result<Json<Value>, ControlError> {
    let node = st.node(&name)?;
    let req: RegisterBody = body(&payload)?;
    node.register(&req.user, &req.password).await?;
    Ok(Json(
        json!({ "node": name, "user": req.user, "registered": true }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    user: String,
    password: String,
    conference: String,
    #[serde(default)]
    profile: Option<String>,
}

async fn call(
    State(st): State<ControlState>,
    Path(name): Path<String>,
    payload: Bytes,
) -> Result<(StatusCode, Json<Value>), ControlError> {
    let node = st.node(&name)?;
    let req: CallBody = body(&payload)?;
    if req.conference.is_empty() {
        return Err(ControlError::BadRequest("empty conference name".to_owned()));
    }
    let profile = req
        .profile
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or(DEFAULT_PROFILE);
    let call = node
        .call(&req.user, &req.password, &req.conference, profile)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "uuid": call.uuid,
            "member_id": call.member_id,
            "conference": call.conference,
        })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TalkingBody {
    talking: bool,
}

async fn talking(
    State(st): State<ControlState>,
    Path((name, uuid)): Path<(String, String)>,
    payload: Bytes,
) -> Result<Json<Value>, ControlError> {
    let node = st.node(&name)?;
    let req: TalkingBody = body(&payload)?;
    if req.talking {
        node.start_talking(&uuid).await?;
    } else {
        node.stop_talking(&uuid).await?;
    }
    Ok(Json(json!({ "uuid": uuid, "talking": req.talking })))
}

async fn hangup(
    State(st): State<ControlState>,
    Path((name, uuid)): Path<(String, String)>,
) -> Result<Json<Value>, ControlError> {
    let node = st.node(&name)?;
    node.hangup(&uuid).await?;
    Ok(Json(json!({ "uuid": uuid, "hung_up": true })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DelayBody {
    ms: u64,
}

async fn fault(
    State(st): State<ControlState>,
    Path((name, fault)): Path<(String, String)>,
    payload: Bytes,
) -> Result<Json<Value>, ControlError> {
    let node = st.node(&name)?;
    match fault.as_str() {
        "drop-esl" => node.drop_esl_connections(),
        "freeze" => node.freeze(),
        "unfreeze" => node.unfreeze(),
        "restart" => {
            node.restart().await;
            return Ok(Json(
                json!({ "node": name, "fault": fault, "core_uuid": node.core_uuid() }),
            ));
        }
        "directory-delay" => {
            let req: DelayBody = body(&payload)?;
            node.set_directory_delay(std::time::Duration::from_millis(req.ms));
            return Ok(Json(json!({ "node": name, "fault": fault, "ms": req.ms })));
        }
        other => {
            return Err(ControlError::BadRequest(format!(
                "unknown fault {other:?} (drop-esl, freeze, unfreeze, restart, directory-delay)"
            )));
        }
    }
    Ok(Json(json!({ "node": name, "fault": fault })))
}
