//! The optional Redis connection, against a real Redis (`REDIS_URL`, or a local one).

use std::time::Duration;

use secrecy::SecretString;
use switchyard::App;
use switchyard::app::BuildError;
use switchyard::coord::CoordError;

use crate::support::spawn::test_config;

/// `REDIS_URL`, the local default when a server answers, or `None` (CI=true: a failure).
pub fn redis_url() -> Option<String> {
    if let Some(url) = std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
    {
        return Some(url);
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 6379));
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
        return Some("redis://127.0.0.1:6379".to_owned());
    }
    assert!(
        std::env::var("CI").map_or(true, |ci| ci != "true"),
        "CI=true but no Redis: set REDIS_URL (e.g. redis://127.0.0.1:6379)"
    );
    eprintln!("notice: no Redis (REDIS_URL unset, nothing on 127.0.0.1:6379); skipping");
    None
}

#[tokio::test]
async fn readyz_reports_redis() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    config.redis.url = Some(SecretString::from(url));
    let app = App::build(config).await.expect("app with Redis");
    let coord = app.coord.clone().expect("coord configured");
    coord.ping().await.expect("PING");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = app.shutdown.clone();
    let server = tokio::spawn(switchyard::run(listener, app, std::future::pending()));
    let body: serde_json::Value = reqwest::get(format!("http://{addr}/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(body["redis"], "ok", "{body}");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}

#[tokio::test]
async fn an_unreachable_or_invalid_redis_fails_startup_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    config.redis.url = Some(SecretString::from(format!("redis://127.0.0.1:{port}")));
    let err = App::build(config).await.expect_err("no Redis there");
    assert!(
        matches!(
            err,
            BuildError::Redis(CoordError::Unreachable(_) | CoordError::Timeout(_))
        ),
        "{err:?}"
    );

    let mut config = test_config(&dir);
    config.redis.url = Some(SecretString::from("not a url"));
    let err = App::build(config).await.expect_err("invalid URL");
    assert!(
        matches!(err, BuildError::Redis(CoordError::Url(_))),
        "{err:?}"
    );
}
