//! The HTTP API: the only module that imports axum.
//!
//! [`router`] builds the whole route table on one [`AppState`]. Every error a client can see is
//! an [`ApiError`] rendered as an RFC 9457 `application/problem+json` document with a stable
//! `code`, including unknown routes, wrong methods and requests cut off by the timeout layer.
//!
//! - `users`: `/v1/users/...`, behind [`ApiPrincipal`] (API key + scope per handler).
//! - `nodes`: `/v1/nodes/...`, the node pool; `conferences`: `/v1/conferences/{name}`, placement.
//! - `metrics`: `/metrics`, Prometheus text; `health`: `/healthz`, `/readyz`.
//! - `freeswitch`: `/freeswitch/{directory,dialplan}` for mod_xml_curl, behind the node guard (allow-list +
//!   basic auth); answers are XML documents, errors are still problem documents.

mod conferences;
mod control;
mod demo;
mod error;
mod events;
mod freeswitch;
mod health;
mod metrics;
mod nodes;
mod openapi;
mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, map_response};
use axum::routing::{delete, get, post, put};
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use conferences::{
    ConferenceBody, Dial, InvitationList, InvitationResult, MemberBody, MemberList, NodeRef,
    PROFILES, Page, StayBody,
};
pub use control::{CommandResult, RecordingList, RecordingStarted};
pub use error::{ApiError, Problem};
pub use events::{PresenceEntry, PresenceList, SessionTokenBody};
pub use nodes::{NodeBody, NodeList};
pub use openapi::ApiDoc;
pub use users::{ApiPrincipal, LongLivedBody, SipCredentialBody, UserBody};

use crate::app::AppState;

/// The status the timeout layer answers with; [`error::timeout_as_problem`] gives it a body.
const TIMEOUT_STATUS: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// Largest JSON body of the REST API.
const V1_BODY_LIMIT: usize = 64 * 1024;

/// All routes, with tracing and the request timeout from `http.request_timeout_secs`.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.http.request_timeout();
    let v1 = Router::new()
        .route(
            "/v1/users/{user_id}",
            put(users::put_user)
                .get(users::get_user)
                .delete(users::delete_user),
        )
        .route(
            "/v1/users/{user_id}/sip-credentials",
            post(users::issue_sip_credential),
        )
        .route(
            "/v1/users/{user_id}/long-lived-sip-credential",
            put(users::put_long_lived_credential).delete(users::delete_long_lived_credential),
        )
        .route("/v1/nodes", get(nodes::list).post(nodes::add))
        .route("/v1/nodes/{node_id}", get(nodes::get).delete(nodes::remove))
        .route("/v1/nodes/{node_id}/drain", post(nodes::drain))
        .route("/v1/nodes/{node_id}/undrain", post(nodes::undrain))
        .route("/v1/conferences", get(conferences::list))
        .route(
            "/v1/conferences/{name}",
            put(conferences::put)
                .get(conferences::get)
                .delete(conferences::end),
        )
        .route(
            "/v1/conferences/{name}/invitations",
            post(conferences::invite).get(conferences::invitations),
        )
        .route(
            "/v1/conferences/{name}/invitations/{user_id}",
            delete(conferences::uninvite),
        )
        .route("/v1/conferences/{name}/members", get(conferences::members))
        .route(
            "/v1/conferences/{name}/members/{member_id}/{action}",
            post(control::member_action),
        )
        .route("/v1/conferences/{name}/lock", post(control::lock))
        .route("/v1/conferences/{name}/unlock", post(control::unlock))
        .route("/v1/conferences/{name}/layout", post(control::layout))
        .route("/v1/conferences/{name}/play", post(control::play))
        .route(
            "/v1/conferences/{name}/recordings",
            get(control::recordings)
                .post(control::start_recording)
                .delete(control::stop_recordings),
        )
        .route(
            "/v1/conferences/{name}/broadcasts",
            post(control::start_broadcast).delete(control::stop_broadcasts),
        )
        .route(
            "/v1/users/{user_id}/session-tokens",
            post(events::create_token).delete(events::revoke_tokens),
        )
        .route("/v1/presence", get(events::presence))
        .route("/v1/events", get(events::events))
        .route("/v1/members", get(conferences::user_members))
        .route(
            "/v1/history/conferences",
            get(conferences::history_conferences),
        )
        .route("/v1/history/members", get(conferences::history_members))
        .layer(DefaultBodyLimit::max(V1_BODY_LIMIT));
    let nodes = Router::new()
        .route("/freeswitch/directory", post(freeswitch::directory))
        .route("/freeswitch/dialplan", post(freeswitch::dialplan))
        .layer(DefaultBodyLimit::max(
            state.config.freeswitch.max_body_bytes,
        ))
        .route_layer(from_fn_with_state(state.clone(), freeswitch::node_guard));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(v1)
        .merge(nodes)
        .merge(demo::router(&state))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(map_response(error::timeout_as_problem))
                .layer(TimeoutLayer::with_status_code(TIMEOUT_STATUS, timeout)),
        )
        .with_state(state)
}
