//! `/freeswitch/*`: the mod_xml_curl endpoints, for the nodes only.
//!
//! [`node_guard`] runs before the body is read: peer address against `freeswitch.allow_from`
//! (403), then HTTP basic auth (401). Refusals are logged with the peer address, never with
//! the presented credentials. The body is limited to `freeswitch.max_body_bytes` (413).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::ApiError;
use crate::app::AppState;
use crate::auth::{NodePassword, NodeRefusal};
use crate::freeswitch::directory::{self, AnswerError};

/// Allow-list and basic auth, before anything else happens.
pub(super) async fn node_guard(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match state.node_access.check(peer.ip(), authorization) {
        Ok(NodePassword::Current) => Ok(next.run(request).await),
        Ok(NodePassword::Previous) => {
            // The operator's cue that a node lags behind a rotation (once a minute per node).
            if state.node_access.log_previous_use(peer.ip()) {
                tracing::info!(
                    %peer,
                    "FreeSWITCH node authenticated with freeswitch.previous_password; move it to the new password"
                );
            }
            Ok(next.run(request).await)
        }
        Err(NodeRefusal::AddressNotAllowed) => {
            tracing::warn!(%peer, path = %request.uri().path(), "FreeSWITCH endpoint: address not allowed");
            Err(ApiError::NodeNotAllowed)
        }
        Err(NodeRefusal::BadCredentials) => {
            tracing::warn!(
                %peer,
                path = %request.uri().path(),
                has_authorization = authorization.is_some(),
                "FreeSWITCH endpoint: missing or wrong credentials"
            );
            Err(ApiError::NodeUnauthorized)
        }
    }
}

fn body_or_error(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.config.freeswitch.max_body_bytes)
        } else {
            ApiError::InvalidRequest(e.body_text())
        }
    })
}

fn xml_response(answer: Result<impl Into<Bytes>, AnswerError>) -> Result<Response, ApiError> {
    let text: Bytes = answer
        .map_err(|e| match e {
            AnswerError::Store(e) => ApiError::Store(e),
            AnswerError::Render(e) => ApiError::Unexpected(e.into()),
        })?
        .into();
    Ok((
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// `POST /freeswitch/dialplan`.
#[utoipa::path(post, path = "/freeswitch/dialplan", tag = "freeswitch", request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "The mod_xml_curl form"), responses((status = 200, description = "A FreeSWITCH XML document (a conference extension, a refusal, or not found)", content_type = "text/xml", body = String), (status = 401, description = "Bad node credentials", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "Address not allowed", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json")), security(("node_basic" = [])))]
pub(super) async fn dialplan(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(&state, body)?;
    xml_response(
        crate::freeswitch::dialplan::answer(
            &state.store,
            &body,
            &state.nodes.ids(),
            &state.config.conferences,
        )
        .await,
    )
}

/// `POST /freeswitch/directory`.
#[utoipa::path(post, path = "/freeswitch/directory", tag = "freeswitch", request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "The mod_xml_curl form"), responses((status = 200, description = "A FreeSWITCH XML document (the user, the domain, or not found)", content_type = "text/xml", body = String), (status = 401, description = "Bad node credentials", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "Address not allowed", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json")), security(("node_basic" = [])))]
pub(super) async fn directory(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(&state, body)?;
    xml_response(
        directory::answer(
            &state.store,
            &state.directory_cache,
            &state.config.sip,
            &body,
            Utc::now(),
        )
        .await,
    )
}
