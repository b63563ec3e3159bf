//! The OpenAPI 3 document of the HTTP API, served at `/openapi.json`.
//!
//! Built from the handlers' `#[utoipa::path]` annotations and the bodies' `ToSchema` derives,
//! so it cannot drift from the code silently: a test compares its paths with the router's.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{conferences, control, events, freeswitch, health, metrics, nodes, users};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Switchyard",
        description = "Control plane for conferences on a pool of FreeSWITCH nodes. Every `/v1` call needs `Authorization: Bearer <API key>` with the scope the operation names; errors are `application/problem+json` documents whose `code` is stable.",
        license(name = "see the repository")
    ),
    paths(
        users::put_user,
        users::get_user,
        users::delete_user,
        users::issue_sip_credential,
        users::put_long_lived_credential,
        users::delete_long_lived_credential,
        events::create_token,
        events::revoke_tokens,
        events::presence,
        events::events,
        nodes::list,
        nodes::add,
        nodes::get,
        nodes::remove,
        nodes::drain,
        nodes::undrain,
        conferences::list,
        conferences::put,
        conferences::get,
        conferences::end,
        conferences::invite,
        conferences::invitations,
        conferences::uninvite,
        conferences::members,
        conferences::user_members,
        conferences::history_conferences,
        conferences::history_members,
        control::member_action,
        control::lock,
        control::unlock,
        control::layout,
        control::play,
        control::start_recording,
        control::recordings,
        control::stop_recordings,
        control::start_broadcast,
        control::stop_broadcasts,
        freeswitch::directory,
        freeswitch::dialplan,
        health::healthz,
        health::readyz,
        metrics::metrics,
    ),
    modifiers(&Security),
    tags(
        (name = "users", description = "Users and their SIP credentials"),
        (name = "nodes", description = "The FreeSWITCH node pool"),
        (name = "conferences", description = "Conferences and invitations (CppComet's `conference` table)"),
        (name = "members", description = "Live members (CppComet's `conference_members` table)"),
        (name = "control", description = "Server-side control of live conferences"),
        (name = "history", description = "Ended conferences and members' stays"),
        (name = "events", description = "The browser event channel (docs/events.md): session tokens, presence, the WebSocket"),
        (name = "freeswitch", description = "mod_xml_curl endpoints for the nodes"),
        (name = "operations", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from `[api] keys` of the config"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "node_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "mod_xml_curl `gateway-credentials` (`[freeswitch] username/password`)",
                    ))
                    .build(),
            ),
        );
    }
}

pub(super) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
