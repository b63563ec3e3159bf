//! `switchyard::run` in-process: probes, problem documents, graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard::http::Problem;
use tokio::io::AsyncWriteExt;

use crate::support::spawn::{TestApp, client};

async fn problem(response: reqwest::Response) -> Problem {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    response.json().await.expect("problem JSON")
}

#[tokio::test]
async fn probes_answer_ok() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz"] {
        let response = client().get(app.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["status"], json!("ok"), "{path}");
    }
    let body: Value = client()
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        body,
        json!({ "status": "ok", "redis": "not_configured", "nodes": [] })
    );
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn readyz_is_503_problem_when_store_is_down() {
    let app = TestApp::spawn().await;
    app.store.close().await;

    let response = client().get(app.url("/readyz")).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem = problem(response).await;
    assert_eq!(problem.type_, "about:blank");
    assert_eq!(problem.title, "Service Unavailable");
    assert_eq!(problem.status, 503);
    assert_eq!(problem.code, "store_unavailable");
    assert!(problem.detail.contains("closed"), "{}", problem.detail);

    let health = client().get(app.url("/healthz")).send().await.expect("GET");
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "liveness does not depend on the store"
    );
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn unknown_route_and_method_are_problems() {
    let app = TestApp::spawn().await;
    let response = client().get(app.url("/nope")).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let problem_404 = problem(response).await;
    assert_eq!(
        (problem_404.code.as_str(), problem_404.status),
        ("not_found", 404)
    );
    assert_eq!(problem_404.title, "Not Found");

    let response = client()
        .post(app.url("/healthz"))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(problem(response).await.code, "method_not_allowed");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_cancels_and_waits_for_background_tasks() {
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopped);
    let app = TestApp::spawn_with(|app| {
        let token = app.shutdown.clone();
        app.tasks.spawn(async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, Ordering::SeqCst);
        });
    })
    .await;
    let token = app.shutdown_token.clone();
    let tasks = app.tasks.clone();
    assert!(!token.is_cancelled());
    app.stop().await.expect("clean shutdown");
    assert!(token.is_cancelled());
    assert!(tasks.is_closed() && tasks.is_empty());
    assert!(
        stopped.load(Ordering::SeqCst),
        "run waited for the task to finish"
    );
}

#[tokio::test]
async fn cancelling_the_app_token_also_stops_the_server() {
    let app = TestApp::spawn().await;
    app.shutdown_token.cancel();
    app.stop().await.expect("clean shutdown");
}

/// A request that never completes cannot hold shutdown beyond the grace period (2 s here).
#[tokio::test]
async fn shutdown_gives_up_on_stuck_requests_after_the_grace_period() {
    let app = TestApp::spawn().await;
    let mut stuck = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    // Half a request head: the connection is busy, not idle.
    stuck
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    app.stop().await.expect("run still returns Ok");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "shutdown took {took:?}"
    );
    drop(stuck);
}

/// `/openapi.json` documents every route of the router, each `/v1` one with the API key.
#[tokio::test]
async fn openapi_documents_every_route() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = client()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let mut operations = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            operations.insert(format!("{} {path}", method.to_uppercase()));
            // The event channel authenticates with a session token in its first frame.
            if path.starts_with("/v1/") && path != "/v1/events" {
                assert_eq!(
                    op["security"][0]["api_key"],
                    serde_json::json!([]),
                    "{method} {path}"
                );
                assert!(
                    op["responses"]["401"].is_object(),
                    "{method} {path} documents 401"
                );
            }
        }
    }
    // The router's routes (http::router), method by method.
    let routes = [
        "PUT /v1/users/{user_id}",
        "GET /v1/users/{user_id}",
        "DELETE /v1/users/{user_id}",
        "POST /v1/users/{user_id}/sip-credentials",
        "PUT /v1/users/{user_id}/long-lived-sip-credential",
        "DELETE /v1/users/{user_id}/long-lived-sip-credential",
        "POST /v1/users/{user_id}/session-tokens",
        "DELETE /v1/users/{user_id}/session-tokens",
        "GET /v1/presence",
        "GET /v1/events",
        "GET /v1/nodes",
        "POST /v1/nodes",
        "GET /v1/nodes/{node_id}",
        "DELETE /v1/nodes/{node_id}",
        "POST /v1/nodes/{node_id}/drain",
        "POST /v1/nodes/{node_id}/undrain",
        "GET /v1/conferences",
        "PUT /v1/conferences/{name}",
        "GET /v1/conferences/{name}",
        "DELETE /v1/conferences/{name}",
        "POST /v1/conferences/{name}/invitations",
        "GET /v1/conferences/{name}/invitations",
        "DELETE /v1/conferences/{name}/invitations/{user_id}",
        "GET /v1/conferences/{name}/members",
        "POST /v1/conferences/{name}/members/{member_id}/{action}",
        "POST /v1/conferences/{name}/lock",
        "POST /v1/conferences/{name}/unlock",
        "POST /v1/conferences/{name}/layout",
        "POST /v1/conferences/{name}/play",
        "GET /v1/conferences/{name}/recordings",
        "POST /v1/conferences/{name}/recordings",
        "DELETE /v1/conferences/{name}/recordings",
        "POST /v1/conferences/{name}/broadcasts",
        "DELETE /v1/conferences/{name}/broadcasts",
        "GET /v1/members",
        "GET /v1/history/conferences",
        "GET /v1/history/members",
        "POST /freeswitch/directory",
        "POST /freeswitch/dialplan",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    ];
    let expected: std::collections::BTreeSet<String> =
        routes.iter().map(|r| (*r).to_owned()).collect();
    assert_eq!(operations, expected);
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    app.stop().await.expect("clean shutdown");
}
