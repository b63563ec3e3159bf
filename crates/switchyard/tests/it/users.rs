//! `/v1/users`: API keys, scopes, validation, CRUD and SIP credentials.

use std::time::Duration;

use chrono::Utc;
use fsim::{NodeConfig as SimConfig, SimNode};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use switchyard::config::NodeConfig;
use switchyard::http::UserBody;

use crate::support::api::{ADMIN_KEY, READER_KEY, configure, issue, problem, put_user};
use crate::support::spawn::{TestApp, client};

#[tokio::test]
async fn v1_requires_a_valid_api_key() {
    let app = TestApp::spawn_configured(None, configure).await;
    let url = app.url("/v1/users/alice");
    let cases = [
        None,
        Some("Bearer wrong-key-0123456789abcdefghijklmn".to_owned()),
        Some(format!("Basic {ADMIN_KEY}")),
        Some(format!("Bearer {}", &ADMIN_KEY[..ADMIN_KEY.len() - 1])),
        Some(ADMIN_KEY.to_owned()),
    ];
    for auth in cases {
        let mut request = client().get(&url);
        if let Some(auth) = &auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        let p = problem(response).await;
        assert_eq!((p.code.as_str(), p.status), ("unauthorized", 401));
        assert!(!p.detail.contains(ADMIN_KEY));
    }
    // Authentication comes before validation: a bad id without a key is still 401.
    let response = client()
        .get(app.url("/v1/users/-bad"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn scopes_are_enforced() {
    let app = TestApp::spawn_configured(None, configure).await;
    put_user(&app, "alice", "Alice", true).await;
    let reader = |r: reqwest::RequestBuilder| r.bearer_auth(READER_KEY);

    let get = reader(client().get(app.url("/v1/users/alice")))
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status(), StatusCode::OK);

    for request in [
        client()
            .put(app.url("/v1/users/alice"))
            .json(&json!({ "display_name": "x" })),
        client().delete(app.url("/v1/users/alice")),
        client().post(app.url("/v1/users/alice/sip-credentials")),
    ] {
        let response = reader(request).send().await.expect("send");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let p = problem(response).await;
        assert_eq!((p.code.as_str(), p.status), ("forbidden", 403));
    }
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn user_crud_over_http() {
    let app = TestApp::spawn_configured(None, configure).await;
    let url = app.url("/v1/users/alice.b-1");

    let response = client()
        .get(&url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(problem(response).await.code, "user_not_found");

    let created: UserBody = client()
        .put(&url)
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "display_name": "Alice B." }))
        .send()
        .await
        .expect("PUT")
        .json()
        .await
        .expect("JSON");
    assert_eq!(created.id, "alice.b-1");
    assert_eq!(created.display_name, "Alice B.");
    assert!(created.enabled, "enabled by default");

    let updated: UserBody = client()
        .put(&url)
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "display_name": "Alice", "enabled": false }))
        .send()
        .await
        .expect("PUT")
        .json()
        .await
        .expect("JSON");
    assert!(!updated.enabled);
    assert_eq!(updated.created_at, created.created_at);

    let read: UserBody = client()
        .get(&url)
        .bearer_auth(READER_KEY)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(read, updated);

    let deleted = client()
        .delete(&url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let again = client()
        .delete(&url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_input_gets_400_problems() {
    let app = TestApp::spawn_configured(None, configure).await;
    for id in [
        "-alice",
        "a%20b",
        "a%22%2F%3E%3Cuser%20id%3D%22admin",
        "zo%C3%AB",
        "a@b",
        &"a".repeat(65),
    ] {
        let response = client()
            .put(app.url(&format!("/v1/users/{id}")))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({ "display_name": "x" }))
            .send()
            .await
            .expect("PUT");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{id}");
        assert_eq!(problem(response).await.code, "invalid_user_id", "{id}");
    }
    for (body, why) in [
        (json!({ "display_name": 5 }), "wrong type"),
        (
            json!({ "display_name": "x", "admin": true }),
            "unknown field",
        ),
        (json!({ "display_name": "a\nb" }), "control character"),
        (json!({ "display_name": "x".repeat(129) }), "too long"),
    ] {
        let response = client()
            .put(app.url("/v1/users/alice"))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .expect("PUT");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{why}");
        assert_eq!(problem(response).await.code, "invalid_request", "{why}");
    }
    let not_json = client()
        .put(app.url("/v1/users/alice"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("PUT");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem(not_json).await.code, "invalid_request");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn sip_credentials_are_issued_per_request() {
    let sim = SimNode::start(SimConfig::new("fs1"))
        .await
        .expect("fsim node");
    let esl_addr = sim.esl_addr().to_string();
    let app = TestApp::spawn_configured(None, |config| {
        configure(config);
        config.sip.domain = "sip.example.com".to_owned();
        config.sip.credential_ttl_secs = 600;
        config.nodes = vec![NodeConfig {
            id: "fs1".to_owned(),
            esl_addr,
            esl_password: SecretString::from("ClueCon"),
            wss_url: "wss://fs1.example.com:7443".to_owned(),
            capacity: 10,
            labels: Default::default(),
        }];
    })
    .await;

    let missing = client()
        .post(app.url("/v1/users/nobody/sip-credentials"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("POST");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(problem(missing).await.code, "user_not_found");

    put_user(&app, "alice", "Alice", true).await;
    let before = Utc::now();
    let a = issue(&app, "alice").await;
    let b = issue(&app, "alice").await;
    assert_eq!(a.user_id, "alice");
    assert_ne!(a.username, b.username, "one SIP user per credential (tab)");
    assert_ne!(a.password, b.password);
    assert_eq!(a.domain, "sip.example.com");
    assert_eq!(a.realm, "sip.example.com");
    assert_eq!(
        a.ha1,
        switchyard::credentials::a1_hash(&a.username, &a.realm, &a.password)
    );
    assert_eq!(a.ws_servers, ["wss://fs1.example.com:7443"]);
    let ttl = a.expires_at - before;
    assert!(
        ttl <= chrono::Duration::seconds(601) && ttl >= chrono::Duration::seconds(590),
        "{ttl}"
    );

    // Only the hash is stored.
    let entry = app
        .store
        .directory_entry(&a.username)
        .await
        .expect("query")
        .expect("stored");
    assert_eq!(entry.a1_hash, a.ha1);
    assert_eq!(entry.user_id, "alice");
    assert!(entry.usable_at(Utc::now()));

    put_user(&app, "alice", "Alice", false).await;
    let disabled = client()
        .post(app.url("/v1/users/alice/sip-credentials"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("POST");
    assert_eq!(disabled.status(), StatusCode::CONFLICT);
    assert_eq!(problem(disabled).await.code, "user_disabled");
    app.stop().await.expect("clean shutdown");
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .expect("fsim stops");
}
