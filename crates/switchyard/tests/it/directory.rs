//! `POST /freeswitch/directory` over HTTP: node auth, allow-list, bad input, documents; and fsim
//! nodes authenticating REGISTER and INVITE against the running service, on every backend.

use std::time::Duration;

use fsim::directory::{AuthFailure, DirectoryConfig};
use fsim::{CallError, NodeConfig as SimConfig, SimNode};
use reqwest::StatusCode;

use crate::support::api::{ADMIN_KEY, FS_PASSWORD, FS_USER, configure, issue, problem, put_user};
use crate::support::db::test_dbs;
use crate::support::spawn::{TestApp, client};

const PRELUDE: &str = "hostname=vm&section=directory&tag_name=domain&key_name=name&key_value=127.0.0.1&Event-Name=REQUEST_PARAMS&Core-UUID=60521194-8708-47ec-8892-6f189eab12ad";

const NOT_FOUND: &str = "<document type=\"freeswitch/xml\">\n  <section name=\"result\">\n    <result status=\"not found\"/>\n  </section>\n</document>\n";

fn sip_auth(user: &str) -> String {
    format!(
        "{PRELUDE}&action=sip_auth&sip_profile=internal&sip_auth_username={user}&sip_auth_realm=127.0.0.1&sip_auth_method=REGISTER&key=id&user={user}&domain=127.0.0.1&ip=127.0.0.1"
    )
}

async fn post(app: &TestApp, body: impl Into<reqwest::Body>) -> reqwest::Response {
    client()
        .post(app.url("/freeswitch/directory"))
        .basic_auth(FS_USER, Some(FS_PASSWORD))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST")
}

async fn document(app: &TestApp, body: impl Into<reqwest::Body>) -> String {
    let response = post(app, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/xml; charset=utf-8")
    );
    response.text().await.expect("body")
}

/// During a rotation both passwords get in; nothing else does.
#[tokio::test]
async fn previous_password_is_accepted_during_a_rotation() {
    let app = TestApp::spawn_configured(None, |config| {
        configure(config);
        config.freeswitch.password = Some(secrecy::SecretString::from("the-new-one"));
        config.freeswitch.previous_password = Some(secrecy::SecretString::from(FS_PASSWORD));
    })
    .await;
    for (password, status) in [
        ("the-new-one", StatusCode::OK),
        (FS_PASSWORD, StatusCode::OK),
        ("the-third-one", StatusCode::UNAUTHORIZED),
    ] {
        let response = client()
            .post(app.url("/freeswitch/directory"))
            .basic_auth(FS_USER, Some(password))
            .body(sip_auth("nobody"))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), status, "{password}");
    }
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn nodes_must_authenticate() {
    let app = TestApp::spawn_configured(None, configure).await;
    for creds in [
        None,
        Some((FS_USER, "wrong")),
        Some(("other", FS_PASSWORD)),
        Some((FS_USER, "")),
    ] {
        let mut request = client()
            .post(app.url("/freeswitch/directory"))
            .body(sip_auth("x"));
        if let Some((user, pass)) = creds {
            request = request.basic_auth(user, Some(pass));
        }
        let response = request.send().await.expect("POST");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{creds:?}");
        assert!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Basic")),
        );
        assert_eq!(problem(response).await.code, "unauthorized");
    }
    // An API key is not a node credential.
    let response = client()
        .post(app.url("/freeswitch/directory"))
        .bearer_auth(ADMIN_KEY)
        .body(sip_auth("x"))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn addresses_outside_the_allow_list_are_forbidden() {
    let app = TestApp::spawn_configured(None, |config| {
        configure(config);
        config.freeswitch.allow_from = vec!["192.0.2.0/24".to_owned()];
    })
    .await;
    let response = post(&app, sip_auth("x")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(problem(response).await.code, "forbidden");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn no_configured_password_refuses_everyone() {
    let app = TestApp::spawn_configured(None, |config| {
        configure(config);
        config.freeswitch.password = None;
    })
    .await;
    let response = post(&app, sip_auth("x")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn bad_input_gets_the_defined_answer() {
    let app = TestApp::spawn_configured(None, |config| {
        configure(config);
        config.freeswitch.max_body_bytes = 4096;
    })
    .await;
    put_user(&app, "alice", "Alice", true).await;
    let cred = issue(&app, "alice").await;

    let malformed: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"garbage".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        format!("{}&x=%ff", sip_auth(&cred.username)).into_bytes(),
        format!("{}&user=other", sip_auth(&cred.username)).into_bytes(),
        sip_auth(&cred.username)
            .replace("section=directory", "section=dialplan")
            .into_bytes(),
        sip_auth(&cred.username)
            .replace("action=sip_auth", "action=event_socket_auth")
            .into_bytes(),
        sip_auth(&cred.username)
            .replace("domain=127.0.0.1", "domain=evil.example")
            .into_bytes(),
        sip_auth("a%22%2F%3E%3Cuser%20id%3D%22admin").into_bytes(),
        sip_auth("unknown-user").into_bytes(),
    ];
    for body in malformed {
        let text = document(&app, body.clone()).await;
        assert_eq!(text, NOT_FOUND, "{}", String::from_utf8_lossy(&body));
    }

    let huge = format!("{}&pad={}", sip_auth(&cred.username), "a".repeat(5000));
    let response = post(&app, huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem(response).await.code, "payload_too_large");

    // The real thing still works, and carries only the hash.
    let text = document(&app, sip_auth(&cred.username)).await;
    assert!(
        text.contains(&format!("<user id=\"{}\">", cred.username)),
        "{text}"
    );
    assert!(text.contains(&format!("name=\"a1-hash\" value=\"{}\"", cred.ha1)));
    assert!(text.contains("name=\"allow-empty-password\" value=\"false\""));
    assert!(text.contains("name=\"switchyard_user_id\" value=\"alice\""));
    assert!(!text.contains(&cred.password), "never the password");
    assert!(!text.contains("<?"), "no declaration line");
    // Unknown request fields are never echoed.
    let echo = document(
        &app,
        format!("{}&X-Evil=%24%24%7Bexec%7D", sip_auth(&cred.username)),
    )
    .await;
    assert!(!echo.contains("X-Evil") && !echo.contains("exec"), "{echo}");
    app.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn startup_requests_get_the_domain() {
    let app = TestApp::spawn_configured(None, configure).await;
    for body in [
        "hostname=vm&section=directory&tag_name=&key_name=&key_value=&Event-Name=REQUEST_PARAMS&purpose=gateways&profile=internal",
        "hostname=vm&section=directory&tag_name=domain&key_name=name&key_value=127.0.0.1&Event-Name=GENERAL&domain=127.0.0.1&purpose=network-list",
    ] {
        let text = document(&app, body).await;
        assert!(text.contains("<domain name=\"127.0.0.1\">"), "{text}");
        assert!(!text.contains("<user"), "users are never listed: {text}");
    }
    app.stop().await.expect("clean shutdown");
}

async fn sim_node(app: &TestApp, name: &str) -> SimNode {
    let mut config = SimConfig::new(name);
    config.directory = DirectoryConfig {
        url: Some(app.url("/freeswitch/directory")),
        credentials: Some((FS_USER.to_owned(), FS_PASSWORD.to_owned())),
        timeout: Duration::from_secs(5),
    };
    SimNode::start(config).await.expect("fsim node starts")
}

#[tokio::test]
async fn fsim_registers_and_calls_with_issued_credentials() {
    for db in test_dbs().await {
        let backend = db.backend();
        let app = TestApp::spawn_configured(Some(&db.url), configure).await;
        let node = sim_node(&app, "fs1").await;

        put_user(&app, "alice", "Alice", true).await;
        put_user(&app, "bob", "Bob", true).await;
        let alice = issue(&app, "alice").await;
        let alice_tab2 = issue(&app, "alice").await;
        let bob = issue(&app, "bob").await;

        // Right password: REGISTER and INVITE authenticate; both tabs at once.
        node.register(&alice.username, &alice.password)
            .await
            .unwrap_or_else(|e| panic!("{backend}: alice registers: {e}"));
        node.register(&alice_tab2.username, &alice_tab2.password)
            .await
            .unwrap_or_else(|e| panic!("{backend}: second tab registers: {e}"));
        let call = node
            .call(&alice.username, &alice.password, "3000", "default")
            .await
            .unwrap_or_else(|e| panic!("{backend}: alice calls: {e}"));
        assert_eq!(call.conference, "3000");

        // Wrong password, someone else's password, unknown user.
        assert_eq!(
            node.register(&alice.username, "wrong").await,
            Err(AuthFailure::WrongPassword),
            "{backend}"
        );
        assert_eq!(
            node.register(&alice.username, &bob.password).await,
            Err(AuthFailure::WrongPassword),
            "{backend}"
        );
        assert_eq!(
            node.register("sy-unknown", "x").await,
            Err(AuthFailure::NotFound),
            "{backend}"
        );
        assert!(matches!(
            node.call(&alice.username, "wrong", "3000", "default").await,
            Err(CallError::Auth(AuthFailure::WrongPassword))
        ));

        // Disabling the user revokes every credential at once; enabling restores them.
        put_user(&app, "alice", "Alice", false).await;
        for cred in [&alice, &alice_tab2] {
            assert_eq!(
                node.register(&cred.username, &cred.password).await,
                Err(AuthFailure::NotFound),
                "{backend}: disabled"
            );
        }
        assert!(matches!(
            node.call(&alice.username, &alice.password, "3000", "default")
                .await,
            Err(CallError::Auth(AuthFailure::NotFound))
        ));
        node.register(&bob.username, &bob.password)
            .await
            .unwrap_or_else(|e| panic!("{backend}: bob is unaffected: {e}"));
        put_user(&app, "alice", "Alice", true).await;
        node.register(&alice.username, &alice.password)
            .await
            .unwrap_or_else(|e| panic!("{backend}: re-enabled: {e}"));

        // Deleting the user removes its credentials.
        let deleted = client()
            .delete(app.url("/v1/users/bob"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            node.register(&bob.username, &bob.password).await,
            Err(AuthFailure::NotFound),
            "{backend}: deleted"
        );
        assert_eq!(node.directory().open_auth_count(), 0, "never an open user");

        tokio::time::timeout(Duration::from_secs(5), node.shutdown())
            .await
            .expect("fsim stops");
        app.stop().await.expect("clean shutdown");
    }
}

#[tokio::test]
async fn expired_credentials_fail() {
    for db in test_dbs().await {
        let backend = db.backend();
        let app = TestApp::spawn_configured(Some(&db.url), |config| {
            configure(config);
            config.sip.credential_ttl_secs = 1;
        })
        .await;
        let node = sim_node(&app, "fs1").await;
        put_user(&app, "carol", "Carol", true).await;
        let cred = issue(&app, "carol").await;
        node.register(&cred.username, &cred.password)
            .await
            .unwrap_or_else(|e| panic!("{backend}: fresh credential: {e}"));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            node.register(&cred.username, &cred.password).await,
            Err(AuthFailure::NotFound),
            "{backend}: expired"
        );
        assert!(matches!(
            node.call(&cred.username, &cred.password, "3000", "default")
                .await,
            Err(CallError::Auth(AuthFailure::NotFound))
        ));
        tokio::time::timeout(Duration::from_secs(5), node.shutdown())
            .await
            .expect("fsim stops");
        app.stop().await.expect("clean shutdown");
    }
}

#[tokio::test]
async fn fsim_registers_with_a_long_lived_cppcomet_credential() {
    for db in test_dbs().await {
        let backend = db.backend();
        let app = TestApp::spawn_configured(Some(&db.url), configure).await;
        let node = sim_node(&app, "fs1").await;
        put_user(&app, "1000123", "Migrated", true).await;
        let url = app.url("/v1/users/1000123/long-lived-sip-credential");
        let set = |password: &str| {
            client()
                .put(&url)
                .bearer_auth(ADMIN_KEY)
                .json(&serde_json::json!({ "password": password }))
                .send()
        };

        let response = set("short").await.expect("PUT");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{backend}");
        assert_eq!(problem(response).await.code, "invalid_request");

        let response = set("users-auth-key-1").await.expect("PUT");
        assert_eq!(response.status(), StatusCode::OK, "{backend}");
        let body: switchyard::http::LongLivedBody = response.json().await.expect("JSON");
        assert_eq!(body.username, "1000123");
        assert_eq!(body.realm, "127.0.0.1");
        let row = app
            .store
            .directory_entry("1000123")
            .await
            .expect("query")
            .expect("stored");
        assert_eq!(row.expires_at, None, "{backend}: long-lived");
        assert_ne!(row.a1_hash, "users-auth-key-1", "only the hash is stored");

        node.register("1000123", "users-auth-key-1")
            .await
            .unwrap_or_else(|e| panic!("{backend}: migrated user registers: {e}"));
        node.call("1000123", "users-auth-key-1", "3000", "default")
            .await
            .unwrap_or_else(|e| panic!("{backend}: migrated user calls: {e}"));
        assert_eq!(
            node.register("1000123", "users-auth-key-2").await,
            Err(AuthFailure::WrongPassword)
        );

        // Replacing the key: the old one stops working.
        assert_eq!(
            set("users-auth-key-2").await.expect("PUT").status(),
            StatusCode::OK
        );
        assert_eq!(
            node.register("1000123", "users-auth-key-1").await,
            Err(AuthFailure::WrongPassword),
            "{backend}"
        );
        node.register("1000123", "users-auth-key-2")
            .await
            .unwrap_or_else(|e| panic!("{backend}: new key: {e}"));

        // Disabling revokes it; deleting the credential removes it.
        put_user(&app, "1000123", "Migrated", false).await;
        assert_eq!(
            node.register("1000123", "users-auth-key-2").await,
            Err(AuthFailure::NotFound),
            "{backend}: disabled"
        );
        put_user(&app, "1000123", "Migrated", true).await;
        let deleted = client()
            .delete(&url)
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            node.register("1000123", "users-auth-key-2").await,
            Err(AuthFailure::NotFound),
            "{backend}: deleted"
        );
        tokio::time::timeout(Duration::from_secs(5), node.shutdown())
            .await
            .expect("fsim stops");
        app.stop().await.expect("clean shutdown");
    }
}

#[tokio::test]
async fn cached_lookups_do_not_need_the_database() {
    let app = TestApp::spawn_configured(None, configure).await;
    put_user(&app, "alice", "Alice", true).await;
    let cred = issue(&app, "alice").await;
    let first = document(&app, sip_auth(&cred.username)).await;
    assert!(first.contains(&cred.ha1));
    assert_eq!(document(&app, sip_auth("syunknown")).await, NOT_FOUND);

    app.store.close().await;
    assert_eq!(
        document(&app, sip_auth(&cred.username)).await,
        first,
        "known user from the cache"
    );
    assert_eq!(
        document(&app, sip_auth("syunknown")).await,
        NOT_FOUND,
        "unknown user from the cache"
    );
    // A miss needs the store: 503, which FreeSWITCH logs (never a user without a check).
    let response = post(&app, sip_auth("syother")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem(response).await.code, "store_unavailable");
    app.stop().await.expect("clean shutdown");
}

fn dialplan_request(destination: &str, caller: Option<&str>) -> String {
    let mut body = format!(
        "hostname=vm&section=dialplan&tag_name=&key_name=&key_value=&Event-Name=REQUEST_PARAMS&Caller-Context=default&Caller-Destination-Number={destination}&Hunt-Context=default&Hunt-Destination-Number={destination}"
    );
    if let Some(caller) = caller {
        body.push_str(&format!("&variable_switchyard_user_id={caller}"));
    }
    body
}

async fn post_dialplan(app: &TestApp, body: String) -> reqwest::Response {
    client()
        .post(app.url("/freeswitch/dialplan"))
        .basic_auth(FS_USER, Some(FS_PASSWORD))
        .body(body)
        .send()
        .await
        .expect("POST")
}

#[tokio::test]
async fn dialplan_admits_invited_callers_only() {
    for db in test_dbs().await {
        let backend = db.backend();
        let app = TestApp::spawn_configured(Some(&db.url), configure).await;
        put_user(&app, "alice", "Alice", true).await;
        put_user(&app, "bob", "Bob", true).await;
        let invite = "INSERT INTO invitations (name, user_id, caller_id, message, profile, created_at) \
                      VALUES ('room1', 'alice', 'bob', '', 'video', CURRENT_TIMESTAMP)";
        match &app.store {
            switchyard::store::Store::Sqlite(pool) => {
                sqlx::query(invite).execute(pool).await.map(drop)
            }
            switchyard::store::Store::Postgres(pool) => {
                sqlx::query(invite).execute(pool).await.map(drop)
            }
        }
        .expect("invitation");

        let text = |r: reqwest::Response| async move {
            assert_eq!(r.status(), StatusCode::OK);
            r.text().await.expect("body")
        };
        let join =
            text(post_dialplan(&app, dialplan_request("conf*room1", Some("alice"))).await).await;
        assert!(
            join.contains("<action application=\"conference\" data=\"room1@video\"/>"),
            "{backend}: {join}"
        );
        assert!(join.contains("<action application=\"answer\"/>"));
        for (destination, caller, expected) in [
            ("conf*room1", Some("bob"), "404 Not Found"),
            ("conf*nope", Some("alice"), "404 Not Found"),
            ("conf*room1", None, "403 Forbidden"),
        ] {
            let doc = text(post_dialplan(&app, dialplan_request(destination, caller)).await).await;
            assert!(
                doc.contains(&format!("application=\"respond\" data=\"{expected}\"")),
                "{backend}: {destination} {caller:?}: {doc}"
            );
            assert!(!doc.contains("conference\" data"), "{doc}");
        }
        let other = text(post_dialplan(&app, dialplan_request("3000", Some("alice"))).await).await;
        assert_eq!(other, NOT_FOUND);

        let unauthenticated = client()
            .post(app.url("/freeswitch/dialplan"))
            .body(dialplan_request("conf*room1", Some("alice")))
            .send()
            .await
            .expect("POST");
        assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);

        // The store is gone: the join is refused with a retryable SIP code, not an HTTP error
        // (which would send FreeSWITCH to its static dialplan).
        app.store.close().await;
        let refused =
            text(post_dialplan(&app, dialplan_request("conf*room1", Some("alice"))).await).await;
        assert!(
            refused.contains("application=\"respond\" data=\"503 Service Unavailable\""),
            "{backend}: {refused}"
        );
        app.stop().await.expect("clean shutdown");
    }
}

/// A join is checked against the conference's placement: the node named by the request's
/// `hostname` must be the conference's node (the first caller's node claims an unplaced one).
#[tokio::test]
async fn dialplan_keeps_a_conference_on_one_node() {
    let app = TestApp::spawn_configured(None, |config| {
        crate::pool::pool_config(config);
        // The API's `video` is this node's `vmcu` profile.
        config.conferences.video_profile = "vmcu".to_owned();
        config.nodes = ["fs-a", "fs-b"]
            .into_iter()
            .map(|id| switchyard::config::NodeConfig {
                id: id.to_owned(),
                esl_addr: "127.0.0.1:9".to_owned(),
                esl_password: secrecy::SecretString::from("ClueCon"),
                wss_url: format!("wss://{id}.example.com"),
                capacity: 10,
                labels: Default::default(),
            })
            .collect();
    })
    .await;
    crate::pool::eventually("both nodes in the pool", || async {
        let (a, b) = (
            crate::pool::try_node(&app, "fs-a").await,
            crate::pool::try_node(&app, "fs-b").await,
        );
        (a.is_some() && b.is_some()).then_some(())
    })
    .await;
    put_user(&app, "alice", "Alice", true).await;
    let switchyard::store::Store::Sqlite(pool) = &app.store else {
        panic!("SQLite");
    };
    sqlx::query(
        "INSERT INTO invitations (name, user_id, caller_id, message, profile, created_at) \
         VALUES ('room1', 'alice', 'bob', '', 'video', CURRENT_TIMESTAMP)",
    )
    .execute(pool)
    .await
    .expect("invitation");
    let from = |host: &str| {
        dialplan_request("conf*room1", Some("alice"))
            .replace("hostname=vm", &format!("hostname={host}"))
    };
    let answer = |host: &'static str| {
        let body = from(host);
        let app = &app;
        async move { post_dialplan(app, body).await.text().await.expect("body") }
    };
    assert!(
        answer("fs-a").await.contains("data=\"room1@vmcu\""),
        "first caller's node"
    );
    assert_eq!(
        crate::pool::get_conference(&app, "room1")
            .await
            .map(|c| c.node.id),
        Some("fs-a".to_owned()),
        "placed on fs-a by its first caller"
    );
    assert!(answer("fs-a").await.contains("data=\"room1@vmcu\""));
    let elsewhere = answer("fs-b").await;
    assert!(
        elsewhere.contains("application=\"respond\" data=\"404 Not Found\""),
        "never on a second node: {elsewhere}"
    );
    assert!(
        answer("vm").await.contains("data=\"room1@vmcu\""),
        "an unknown hostname cannot be checked"
    );
    app.stop().await.expect("clean shutdown");
}
