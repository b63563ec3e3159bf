//! `ApiError`: the one error type handlers return, and its problem-document rendering.
//!
//! Clients branch on `code`, never on `title` or `detail`: codes are part of the API and do
//! not change once shipped. 5xx errors are logged here, once, with their cause.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::TIMEOUT_STATUS;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no resource at this path")]
    NotFound,
    #[error("this path does not support the request method")]
    MethodNotAllowed,
    #[error("the request did not complete in time")]
    Timeout,
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("the database is unavailable: {0}")]
    StoreUnavailable(String),
    /// A store query failed; the cause is logged, the client sees `store_unavailable`.
    #[error("the database is unavailable")]
    Store(#[from] crate::store::StoreError),
    /// `/v1` without a valid `Authorization: Bearer <API key>`.
    #[error("a valid API key is required (Authorization: Bearer <key>)")]
    Unauthorized,
    /// `/freeswitch` without valid basic-auth credentials.
    #[error("valid node credentials are required (HTTP basic auth)")]
    NodeUnauthorized,
    /// `/freeswitch` from an address outside `freeswitch.allow_from`.
    #[error("this address may not call the FreeSWITCH endpoints")]
    NodeNotAllowed,
    /// The API key lacks the scope the operation needs.
    #[error("the API key lacks the scope {0:?}")]
    MissingScope(&'static str),
    #[error("invalid user id {0:?}: it must match {pattern}", pattern = crate::ids::USER_ID_PATTERN)]
    InvalidUserId(String),
    /// The request body or a parameter is unusable; the message says why.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the user does not exist")]
    UserNotFound,
    #[error("the user is disabled")]
    UserDisabled,
    /// The user id is already the SIP username of another user's credential.
    #[error("the user id is already the SIP username of another user's credential")]
    CredentialConflict,
    #[error("no node with this id")]
    NodeNotFound,
    #[error("a node with this id exists already")]
    NodeExists,
    #[error(
        "the node carries {conferences} live conference(s) and {members} member(s); drain it and wait, or pass force=true"
    )]
    NodeNotEmpty { conferences: u32, members: u32 },
    #[error("the node is configured in the config file of this replica; remove it there")]
    NodeInConfig,
    /// Placement found no node; each node's reason goes into `rejections`.
    #[error(transparent)]
    NoNodeAvailable(crate::nodes::PlaceError),
    #[error("no conference with this name is live")]
    ConferenceNotFound,
    #[error("no such invitation, and the user is not in the conference")]
    InvitationNotFound,
    /// The node says there is no such member.
    #[error("the node has no such member: {0}")]
    MemberNotFound(String),
    /// Placed, but not running on its node (nobody joined yet, or everyone left).
    #[error("the conference is not running on its node: {0}")]
    ConferenceNotRunning(String),
    /// The node answered `-ERR` to a control command.
    #[error("the node refused: {0}")]
    NodeRefused(String),
    /// The conference's node cannot be reached now.
    #[error("{0}")]
    NodeUnreachable(String),
    #[error("the conference has profile {actual:?}, not {asked:?}")]
    ProfileConflict { asked: String, actual: String },
    #[error("invalid conference name {0:?}: it must match {pattern}", pattern = crate::ids::CONFERENCE_NAME_PATTERN)]
    InvalidConferenceName(String),
    /// The live state (Redis) did not answer.
    #[error("live state is unavailable: {0}")]
    LiveUnavailable(String),
    /// `GET /v1/events` without a WebSocket upgrade.
    #[error("this endpoint speaks WebSocket only: {0}")]
    WebSocketRequired(String),
    /// The browser event hub (Redis) did not answer.
    #[error("browser events are unavailable: {0}")]
    EventsUnavailable(String),
    /// The demo backend answers loopback clients only (`demo.allow_remote`).
    #[error(
        "the demo backend answers loopback clients only, not requests forwarded by a proxy \
         (demo.allow_remote)"
    )]
    DemoRemote,
    /// Anything unexpected; the cause is logged, the client only sees `internal`.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<crate::nodes::PlaceError> for ApiError {
    fn from(e: crate::nodes::PlaceError) -> Self {
        match e {
            crate::nodes::PlaceError::Store(e) => Self::Store(e),
            other => Self::NoNodeAvailable(other),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        body_rejection(e.status(), e.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        body_rejection(e.status(), e.body_text())
    }
}

/// An unreadable request body: too large (413) or otherwise invalid (400).
fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(super::V1_BODY_LIMIT)
    } else {
        ApiError::InvalidRequest(text)
    }
}

impl From<crate::browser::hub::HubError> for ApiError {
    fn from(e: crate::browser::hub::HubError) -> Self {
        Self::EventsUnavailable(e.to_string())
    }
}

impl From<crate::live::LiveError> for ApiError {
    fn from(e: crate::live::LiveError) -> Self {
        Self::LiveUnavailable(e.to_string())
    }
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout => TIMEOUT_STATUS,
            Self::ShuttingDown | Self::StoreUnavailable(_) | Self::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Unauthorized | Self::NodeUnauthorized => StatusCode::UNAUTHORIZED,
            Self::NodeNotAllowed | Self::MissingScope(_) => StatusCode::FORBIDDEN,
            Self::InvalidUserId(_) | Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UserNotFound => StatusCode::NOT_FOUND,
            Self::UserDisabled | Self::CredentialConflict => StatusCode::CONFLICT,
            Self::NodeNotFound | Self::ConferenceNotFound | Self::InvitationNotFound => {
                StatusCode::NOT_FOUND
            }
            Self::ProfileConflict { .. } | Self::NodeRefused(_) => StatusCode::CONFLICT,
            Self::MemberNotFound(_) | Self::ConferenceNotRunning(_) => StatusCode::NOT_FOUND,
            Self::NodeUnreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NodeExists | Self::NodeNotEmpty { .. } | Self::NodeInConfig => {
                StatusCode::CONFLICT
            }
            Self::NoNodeAvailable(_) | Self::LiveUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidConferenceName(_) => StatusCode::BAD_REQUEST,
            Self::WebSocketRequired(_) => StatusCode::UPGRADE_REQUIRED,
            Self::EventsUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::DemoRemote => StatusCode::FORBIDDEN,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Timeout => "timeout",
            Self::ShuttingDown => "shutting_down",
            Self::StoreUnavailable(_) | Self::Store(_) => "store_unavailable",
            Self::Unauthorized | Self::NodeUnauthorized => "unauthorized",
            Self::NodeNotAllowed | Self::MissingScope(_) => "forbidden",
            Self::InvalidUserId(_) => "invalid_user_id",
            Self::InvalidRequest(_) => "invalid_request",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UserNotFound => "user_not_found",
            Self::UserDisabled => "user_disabled",
            Self::CredentialConflict => "credential_conflict",
            Self::NodeNotFound => "node_not_found",
            Self::NodeExists => "node_exists",
            Self::NodeNotEmpty { .. } => "node_not_empty",
            Self::NodeInConfig => "node_in_config",
            Self::NoNodeAvailable(crate::nodes::PlaceError::NodeUnavailable { .. }) => {
                "conference_node_unavailable"
            }
            Self::NoNodeAvailable(_) => "no_node_available",
            Self::ConferenceNotFound => "conference_not_found",
            Self::InvitationNotFound => "invitation_not_found",
            Self::ProfileConflict { .. } => "profile_conflict",
            Self::MemberNotFound(_) => "member_not_found",
            Self::ConferenceNotRunning(_) => "conference_not_running",
            Self::NodeRefused(_) => "node_refused",
            Self::NodeUnreachable(_) => "node_unreachable",
            Self::InvalidConferenceName(_) => "invalid_conference_name",
            Self::LiveUnavailable(_) => "live_state_unavailable",
            Self::WebSocketRequired(_) => "websocket_required",
            Self::EventsUnavailable(_) => "events_unavailable",
            Self::DemoRemote => "forbidden",
            Self::Unexpected(_) => "internal",
        }
    }

    fn extensions(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        match self {
            Self::NoNodeAvailable(crate::nodes::PlaceError::NoNode(rejections)) => {
                map.insert(
                    "rejections".to_owned(),
                    serde_json::to_value(rejections).unwrap_or_default(),
                );
            }
            Self::NodeNotEmpty {
                conferences,
                members,
            } => {
                map.insert("conferences".to_owned(), (*conferences).into());
                map.insert("members".to_owned(), (*members).into());
            }
            _ => {}
        }
        map
    }

    fn detail(&self) -> String {
        match self {
            Self::Unexpected(_) => "an unexpected error occurred; see the server log".to_owned(),
            other => other.to_string(),
        }
    }
}

/// RFC 9457 problem details plus our `code` extension member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub code: String,
    pub detail: String,
    /// Extension members of some codes (`rejections` of `no_node_available`, the counts of
    /// `node_not_empty`).
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schema(value_type = Object)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        // Errors of ours (500) and of the store are logged at error; the other 5xx are the
        // service working as designed (no node available, a node unreachable) and are warnings.
        match self {
            Self::Unexpected(_) | Self::Store(_) | Self::StoreUnavailable(_) => {
                tracing::error!(code = self.code(), error = ?self, "request failed");
            }
            _ if status.is_server_error() => {
                tracing::warn!(code = self.code(), error = %self, "request refused");
            }
            _ => {}
        }
        let problem = Problem {
            type_: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: self.code().to_owned(),
            detail: self.detail(),
            extensions: self.extensions(),
        };
        let challenge = match self {
            Self::Unauthorized => Some("Bearer"),
            Self::NodeUnauthorized => Some("Basic realm=\"switchyard\""),
            _ => None,
        };
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

pub(super) async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// tower-http's `TimeoutLayer` answers with a bare status; turn that into a problem document.
/// Our own responses always carry a content type, so a bare [`TIMEOUT_STATUS`] is the layer's.
pub(super) async fn timeout_as_problem(response: Response) -> Response {
    if response.status() == TIMEOUT_STATUS && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        ApiError::Timeout.into_response()
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};

    use super::{ApiError, Problem, timeout_as_problem};

    async fn problem_of(response: Response) -> Problem {
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
        let body = to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("body");
        serde_json::from_slice(&body).expect("problem JSON")
    }

    #[tokio::test]
    async fn bare_timeout_response_becomes_a_problem() {
        let bare = Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Body::empty())
            .expect("response");
        let problem = problem_of(timeout_as_problem(bare).await).await;
        assert_eq!((problem.code.as_str(), problem.status), ("timeout", 503));

        let ours = ApiError::StoreUnavailable("down".to_owned()).into_response();
        let problem = problem_of(timeout_as_problem(ours).await).await;
        assert_eq!(
            problem.code, "store_unavailable",
            "our own 503s pass through"
        );
    }

    #[tokio::test]
    async fn unexpected_errors_hide_their_cause() {
        let err = ApiError::from(anyhow::anyhow!("secret internals"));
        let problem = problem_of(err.into_response()).await;
        assert_eq!((problem.code.as_str(), problem.status), ("internal", 500));
        assert_eq!(problem.title, "Internal Server Error");
        assert!(!problem.detail.contains("secret internals"));
    }
}
