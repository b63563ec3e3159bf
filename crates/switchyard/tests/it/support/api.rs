//! A service configured with API keys and node credentials, and helpers to call it.

use reqwest::StatusCode;
use secrecy::SecretString;
use switchyard::Config;
use switchyard::config::{ApiKeyConfig, Scope};
use switchyard::http::{Problem, SipCredentialBody};

use super::spawn::{TestApp, client};

/// Every scope.
pub const ADMIN_KEY: &str = "admin-key-0123456789abcdefghijklmnop";
/// `users:read` only.
pub const READER_KEY: &str = "reader-key-0123456789abcdefghijklmno";
pub const FS_USER: &str = "freeswitch";
pub const FS_PASSWORD: &str = "node-secret-123";

pub fn configure(config: &mut Config) {
    config.api.keys = vec![
        ApiKeyConfig {
            id: "admin".to_owned(),
            key: SecretString::from(ADMIN_KEY),
            scopes: vec![
                Scope::UsersRead,
                Scope::UsersWrite,
                Scope::CredentialsIssue,
                Scope::NodesRead,
                Scope::NodesWrite,
                Scope::ConferencesRead,
                Scope::ConferencesWrite,
            ],
        },
        ApiKeyConfig {
            id: "reader".to_owned(),
            key: SecretString::from(READER_KEY),
            scopes: vec![Scope::UsersRead],
        },
    ];
    config.freeswitch.username = FS_USER.to_owned();
    config.freeswitch.password = Some(SecretString::from(FS_PASSWORD));
}

pub async fn problem(response: reqwest::Response) -> Problem {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    response.json().await.expect("problem JSON")
}

/// `PUT /v1/users/{id}` with the admin key; panics unless 200.
pub async fn put_user(app: &TestApp, id: &str, display_name: &str, enabled: bool) {
    let response = client()
        .put(app.url(&format!("/v1/users/{id}")))
        .bearer_auth(ADMIN_KEY)
        .json(&serde_json::json!({ "display_name": display_name, "enabled": enabled }))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), StatusCode::OK, "PUT /v1/users/{id}");
}

/// `POST /v1/users/{id}/sip-credentials` with the admin key; panics unless 201.
pub async fn issue(app: &TestApp, id: &str) -> SipCredentialBody {
    let response = client()
        .post(app.url(&format!("/v1/users/{id}/sip-credentials")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::CREATED, "issue for {id}");
    response.json().await.expect("credential JSON")
}

/// `DELETE` with the admin key.
pub async fn delete(app: &TestApp, path: &str) -> reqwest::Response {
    client()
        .delete(app.url(path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("DELETE")
}
