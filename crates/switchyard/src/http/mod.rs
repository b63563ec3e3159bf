//! The HTTP API: the only module that imports axum.
//!
//! [`router`] builds the whole route table on one [`AppState`]. Every error a client can see is
//! an [`ApiError`] rendered as an RFC 9457 `application/problem+json` document with a stable
//! `code`, including unknown routes, wrong methods and requests cut off by the timeout layer.

mod error;
mod health;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware::map_response;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, Problem};

use crate::app::AppState;

/// The status the timeout layer answers with; [`error::timeout_as_problem`] gives it a body.
const TIMEOUT_STATUS: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// All routes, with tracing and the request timeout from `http.request_timeout_secs`.
pub fn router(state: AppState) -> Router {
    let timeout = state.config.http.request_timeout();
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
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
