//! Demo mode (`[demo]`): off by default; the demo backend answers loopback clients only, not
//! what a proxy forwarded, and refuses garbage with clear errors.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::Value;

use crate::pool::pool_config;
use crate::support::api::problem;
use crate::support::spawn::{TestApp, client};

fn demo_config(config: &mut switchyard::Config) {
    pool_config(config);
    config.demo.enabled = true;
    config.demo.web_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/web");
}

async fn post(
    app: &TestApp,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client()
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("POST")
}

#[tokio::test]
async fn demo_is_off_by_default() {
    let app = TestApp::spawn_configured(None, pool_config).await;
    for path in ["/demo/api/login", "/demo/api/token-expired"] {
        let response = post(&app, path, br#"{"user_id": "ann"}"#, &[]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let page = client().get(app.url("/demo/")).send().await.expect("GET");
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn demo_backend_is_loopback_only_and_checks_its_input() {
    let app = TestApp::spawn_configured(None, demo_config).await;

    let login = post(&app, "/demo/api/login", br#"{"user_id": "ann"}"#, &[]).await;
    assert_eq!(login.status(), StatusCode::OK);
    let login: Value = login.json().await.expect("JSON");
    assert!(
        login["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("sy_st_"))
    );
    assert!(
        login["events_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("ws://") && u.ends_with("/v1/events"))
    );

    // Forwarded by a proxy on this host: the peer is loopback, the client is not.
    for header in [
        "x-forwarded-for",
        "forwarded",
        "via",
        "x-real-ip",
        "x-forwarded-host",
    ] {
        let value = if header == "forwarded" {
            "for=203.0.113.9"
        } else {
            "203.0.113.9"
        };
        let refused = post(
            &app,
            "/demo/api/login",
            br#"{"user_id": "ann"}"#,
            &[(header, value)],
        )
        .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{header}");
        assert_eq!(problem(refused).await.code, "forbidden", "{header}");
    }

    // Garbage: clear 400s, nothing stored.
    for (path, body) in [
        ("/demo/api/login", &b"{"[..]),
        ("/demo/api/login", b"[]"),
        ("/demo/api/login", br#"{"user_id": "ann", "extra": 1}"#),
        ("/demo/api/login", br#"{"user_id": ""}"#),
        ("/demo/api/login", br#"{"user_id": "a b"}"#),
        ("/demo/api/login", b"\xff\xfe"),
        ("/demo/api/token-expired", br#"{"user_id": 3}"#),
        ("/demo/api/invite", br#"{"from": "ann"}"#),
        (
            "/demo/api/invite",
            br#"{"from": "ann", "to": "bob", "conference": "no spaces"}"#,
        ),
    ] {
        let response = post(&app, path, body, &[]).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{path} {}",
            String::from_utf8_lossy(body)
        );
        let code = problem(response).await.code;
        assert!(
            [
                "invalid_request",
                "invalid_user_id",
                "invalid_conference_name"
            ]
            .contains(&code.as_str()),
            "{path}: {code}"
        );
    }
    // An expired token for a user who does not exist: refused, not a server error.
    let unknown = post(
        &app,
        "/demo/api/token-expired",
        br#"{"user_id": "nobody"}"#,
        &[],
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(problem(unknown).await.code, "user_not_found");

    // The page itself.
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url("/demo"))
        .send()
        .await
        .expect("GET /demo");
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    let page = client()
        .get(app.url("/demo/"))
        .send()
        .await
        .expect("GET /demo/");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("text").contains("<html"));
    app.stop().await.expect("stop");
}

#[tokio::test]
async fn allow_remote_accepts_forwarded_requests() {
    let app = TestApp::spawn_configured(None, |c| {
        demo_config(c);
        c.demo.allow_remote = true;
    })
    .await;
    let login = post(
        &app,
        "/demo/api/login",
        br#"{"user_id": "ann"}"#,
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await;
    assert_eq!(login.status(), StatusCode::OK);
    app.stop().await.expect("stop");
}
