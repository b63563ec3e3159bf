//! `/v1/users`: users and their SIP credentials (API-key protected, JSON).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::app::AppState;
use crate::config::Scope;
use crate::credentials;
use crate::ids::valid_user_id;
use crate::store::{NewSipCredential, UpsertUser, User};

/// Longest display name accepted (characters).
pub const MAX_DISPLAY_NAME: usize = 128;

/// The API key a request authenticated with (id only; the secret is never kept).
#[derive(Debug, Clone)]
pub struct ApiPrincipal {
    pub key_id: String,
    scopes: Vec<Scope>,
}

impl ApiPrincipal {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            tracing::info!(key_id = %self.key_id, scope = scope.as_str(), "API key lacks scope");
            Err(ApiError::MissingScope(scope.as_str()))
        }
    }
}

impl FromRequestParts<AppState> for ApiPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| state.api_keys.authenticate_header(v.as_bytes()));
        match key {
            Some(key) => Ok(Self {
                key_id: key.id.clone(),
                scopes: key.scopes.clone(),
            }),
            None => {
                tracing::info!(
                    path = %parts.uri.path(),
                    has_authorization = parts.headers.contains_key(AUTHORIZATION),
                    "API request without a valid key"
                );
                Err(ApiError::Unauthorized)
            }
        }
    }
}

/// `PUT /v1/users/{id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutUser {
    #[serde(default)]
    pub display_name: String,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
}

fn enabled_default() -> bool {
    true
}

/// A user as the API shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct UserBody {
    pub id: String,
    pub display_name: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserBody {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            display_name: u.display_name,
            enabled: u.enabled,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// `POST /v1/users/{id}/sip-credentials` answer. `password` is shown once and not stored.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct SipCredentialBody {
    pub user_id: String,
    /// The SIP user (URI user and digest username): `sip:<username>@<domain>`.
    pub username: String,
    pub password: String,
    pub domain: String,
    /// Digest realm; with `ha1` an alternative to `password` (JsSIP `ha1` + `realm`).
    pub realm: String,
    pub ha1: String,
    pub expires_at: DateTime<Utc>,
    /// WebSocket URLs of the nodes (JsSIP `sockets`).
    pub ws_servers: Vec<String>,
}

/// `PUT /v1/users/{id}/long-lived-sip-credential` body: the CppComet `users_auth` key.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutLongLived {
    pub password: String,
}

impl std::fmt::Debug for PutLongLived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PutLongLived { .. }")
    }
}

impl std::fmt::Debug for SipCredentialBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipCredentialBody")
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LongLivedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LongLivedBody")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// `PUT /v1/users/{id}/long-lived-sip-credential` answer.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct LongLivedBody {
    pub user_id: String,
    /// The SIP user: the user id itself (as CppComet users registered).
    pub username: String,
    pub domain: String,
    pub realm: String,
    pub ws_servers: Vec<String>,
}

/// Shortest and longest long-lived password accepted.
const LONG_LIVED_PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

pub(super) fn user_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    if valid_user_id(&id) {
        Ok(id)
    } else {
        Err(ApiError::InvalidUserId(id.chars().take(80).collect()))
    }
}

fn valid_display_name(name: &str) -> Result<(), ApiError> {
    if name.chars().count() > MAX_DISPLAY_NAME {
        return Err(ApiError::InvalidRequest(format!(
            "display_name must be at most {MAX_DISPLAY_NAME} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(
            "display_name must not contain control characters".to_owned(),
        ));
    }
    Ok(())
}

#[utoipa::path(put, path = "/v1/users/{user_id}", tag = "users", params(("user_id" = String, Path, description = "User id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), request_body = super::users::PutUser, responses((status = 200, body = UserBody), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn put_user(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<PutUser>, JsonRejection>,
) -> Result<Json<UserBody>, ApiError> {
    principal.require(Scope::UsersWrite)?;
    let id = user_id(path)?;
    let Json(body) = body?;
    valid_display_name(&body.display_name)?;
    let user = state
        .store
        .upsert_user(&UpsertUser {
            id,
            display_name: body.display_name,
            enabled: body.enabled,
        })
        .await?;
    state.directory_cache.invalidate_user(&user.id);
    if !user.enabled {
        close_channels(&state, &user.id).await;
    }
    tracing::info!(key_id = %principal.key_id, user = %user.id, enabled = user.enabled, "user saved");
    Ok(Json(user.into()))
}

#[utoipa::path(get, path = "/v1/users/{user_id}", tag = "users", params(("user_id" = String, Path, description = "User id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = UserBody), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn get_user(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<UserBody>, ApiError> {
    principal.require(Scope::UsersRead)?;
    let id = user_id(path)?;
    match state.store.get_user(&id).await? {
        Some(user) => Ok(Json(user.into())),
        None => Err(ApiError::UserNotFound),
    }
}

#[utoipa::path(delete, path = "/v1/users/{user_id}", tag = "users", params(("user_id" = String, Path, description = "User id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 204, description = "Deleted, with its credentials and invitations"), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn delete_user(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::UsersWrite)?;
    let id = user_id(path)?;
    let deleted = state.store.delete_user(&id).await?;
    state.directory_cache.invalidate_user(&id);
    if deleted {
        close_channels(&state, &id).await;
        tracing::info!(key_id = %principal.key_id, user = %id, "user deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::UserNotFound)
    }
}

/// A long-lived credential for users migrating from CppComet: SIP username = user id,
/// password = their `users_auth` key, stored as its `a1-hash` only, no expiry. Disabling or
/// deleting the user revokes it like any other credential.
#[utoipa::path(put, path = "/v1/users/{user_id}/long-lived-sip-credential", tag = "users", params(("user_id" = String, Path, description = "User id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), request_body = super::users::PutLongLived, responses((status = 200, body = LongLivedBody), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 413, description = "Body too large", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn put_long_lived_credential(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<PutLongLived>, JsonRejection>,
) -> Result<Json<LongLivedBody>, ApiError> {
    principal.require(Scope::CredentialsIssue)?;
    let id = user_id(path)?;
    let Json(body) = body?;
    if !LONG_LIVED_PASSWORD_LEN.contains(&body.password.len())
        || !body.password.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::InvalidRequest(format!(
            "password must be {}-{} printable ASCII characters without spaces",
            LONG_LIVED_PASSWORD_LEN.start(),
            LONG_LIVED_PASSWORD_LEN.end()
        )));
    }
    let user = state
        .store
        .get_user(&id)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    let sip = &state.config.sip;
    // FreeSWITCH matches user ids case-insensitively; the store keys them in lowercase.
    let username = user.id.to_ascii_lowercase();
    let stored = state
        .store
        .put_long_lived_sip_credential(&NewSipCredential {
            username,
            user_id: user.id.clone(),
            realm: sip.domain.clone(),
            // The UA hashes the id as it writes it; sofia uses our a1-hash verbatim.
            a1_hash: credentials::a1_hash(&user.id, &sip.domain, &body.password),
            expires_at: None,
        })
        .await?;
    state.directory_cache.invalidate_user(&user.id);
    if !stored {
        return Err(ApiError::CredentialConflict);
    }
    tracing::info!(key_id = %principal.key_id, user = %user.id, "long-lived SIP credential set");
    Ok(Json(LongLivedBody {
        username: user.id.clone(),
        user_id: user.id,
        domain: sip.domain.clone(),
        realm: sip.domain.clone(),
        ws_servers: ws_servers(&state),
    }))
}

#[utoipa::path(delete, path = "/v1/users/{user_id}/long-lived-sip-credential", tag = "users", params(("user_id" = String, Path, description = "User id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 204, description = "Revoked"), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn delete_long_lived_credential(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::CredentialsIssue)?;
    let id = user_id(path)?;
    let deleted = state.store.delete_long_lived_sip_credentials(&id).await?;
    state.directory_cache.invalidate_user(&id);
    if deleted {
        tracing::info!(key_id = %principal.key_id, user = %id, "long-lived SIP credential deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Closes the user's browser event channels (`4003 user_disabled`). The user is already
/// disabled or gone in the store, so a failure here only delays the close until the channel
/// next resumes; it is logged, not returned.
async fn close_channels(state: &AppState, user: &str) {
    if let Err(e) = state
        .browser
        .hub
        .revoke(user, crate::browser::protocol::Close::UserDisabled)
        .await
    {
        tracing::warn!(error = %e, %user, "browser channels of a disabled user not closed");
    }
}

/// The WebSocket URLs of the nodes in the pool (draining ones included: members of their
/// conferences still register there).
fn ws_servers(state: &AppState) -> Vec<String> {
    state
        .nodes
        .records()
        .into_iter()
        .map(|n| n.wss_url)
        .collect()
}

#[utoipa::path(post, path = "/v1/users/{user_id}/sip-credentials", tag = "users", params(("user_id" = String, Path, description = "User id", pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")), responses((status = 201, body = SipCredentialBody), (status = 400, description = "Invalid input (`code` says which)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 401, description = "No valid API key", body = crate::http::Problem, content_type = "application/problem+json"), (status = 403, description = "The key lacks the scope", body = crate::http::Problem, content_type = "application/problem+json"), (status = 404, description = "Not found (`code` says what)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 409, description = "Conflict (`code` and `detail` say why)", body = crate::http::Problem, content_type = "application/problem+json"), (status = 503, description = "Unavailable (`code` says why)", body = crate::http::Problem, content_type = "application/problem+json")), security(("api_key" = [])))]
pub(super) async fn issue_sip_credential(
    principal: ApiPrincipal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<SipCredentialBody>), ApiError> {
    principal.require(Scope::CredentialsIssue)?;
    let id = user_id(path)?;
    let user = state
        .store
        .get_user(&id)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    if !user.enabled {
        return Err(ApiError::UserDisabled);
    }
    let sip = &state.config.sip;
    let issued = credentials::issue(
        &state.store,
        &state.directory_cache,
        &sip.domain,
        &user.id,
        sip.credential_ttl(),
    )
    .await?;
    let expires_at = issued.expires_at;
    tracing::info!(
        key_id = %principal.key_id,
        user = %user.id,
        sip_username = %issued.username,
        %expires_at,
        "SIP credential issued"
    );
    Ok((
        StatusCode::CREATED,
        Json(SipCredentialBody {
            user_id: user.id,
            username: issued.username,
            password: issued.password,
            domain: sip.domain.clone(),
            realm: sip.domain.clone(),
            ha1: issued.a1_hash,
            expires_at,
            ws_servers: ws_servers(&state),
        }),
    ))
}
