//! The store behaves the same on SQLite and PostgreSQL: every test runs its body on each
//! backend from `support::db::test_dbs()`.

use std::time::Duration;

use switchyard::store::{Backend, Store, StoreError, StoreOptions, UpsertUser};

use crate::support::db::{self, test_dbs};

fn alice(enabled: bool) -> UpsertUser {
    UpsertUser {
        id: "alice".to_owned(),
        display_name: "Alice".to_owned(),
        enabled,
    }
}

#[tokio::test]
async fn user_crud() {
    for db in test_dbs().await {
        let store = &db.store;
        let backend = db.backend();
        assert_eq!(
            store.get_user("alice").await.expect("get"),
            None,
            "{backend}"
        );

        let created = store.upsert_user(&alice(true)).await.expect("insert");
        assert_eq!(created.id, "alice");
        assert_eq!(created.display_name, "Alice");
        assert!(created.enabled);
        assert_eq!(created.created_at, created.updated_at, "{backend}");
        assert_eq!(
            store.get_user("alice").await.expect("get"),
            Some(created.clone()),
            "{backend}: read back equals what upsert returned"
        );

        tokio::time::sleep(Duration::from_millis(5)).await;
        let update = UpsertUser {
            display_name: "Alice B.".to_owned(),
            ..alice(false)
        };
        let updated = store.upsert_user(&update).await.expect("update");
        assert_eq!(updated.display_name, "Alice B.");
        assert!(!updated.enabled);
        assert_eq!(
            updated.created_at, created.created_at,
            "{backend}: created_at kept"
        );
        assert!(updated.updated_at > created.updated_at, "{backend}");
        assert_eq!(store.get_user("alice").await.expect("get"), Some(updated));

        assert!(
            store.delete_user("alice").await.expect("delete"),
            "{backend}"
        );
        assert_eq!(store.get_user("alice").await.expect("get"), None);
        assert!(
            !store.delete_user("alice").await.expect("delete again"),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn text_round_trips_unchanged() {
    for db in test_dbs().await {
        for (id, name) in [
            ("o'brien", "Robert'); DROP TABLE users;--"),
            ("zoë", "Zoë 🎧 Ünïcødé"),
            ("user@example.com", ""),
        ] {
            let user = UpsertUser {
                id: id.to_owned(),
                display_name: name.to_owned(),
                enabled: true,
            };
            db.store.upsert_user(&user).await.expect("upsert");
            let got = db.store.get_user(id).await.expect("get").expect("exists");
            assert_eq!((got.id.as_str(), got.display_name.as_str()), (id, name));
        }
        assert_eq!(
            db.store.get_user("ZOË").await.expect("get"),
            None,
            "ids are exact"
        );
    }
}

#[tokio::test]
async fn ping_and_close() {
    for db in test_dbs().await {
        db.store.ping().await.expect("ping");
        db.store.close().await;
        let err = db.store.ping().await.expect_err("closed pool");
        assert!(
            matches!(err, StoreError::Query(sqlx::Error::PoolClosed)),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn migrations_run_once() {
    for db in test_dbs().await {
        db.store.upsert_user(&alice(true)).await.expect("upsert");
        // A second process starting on the same database finds the schema up to date.
        let again = Store::connect(&db.url).await.expect("reconnect");
        assert!(again.get_user("alice").await.expect("get").is_some());
        again.close().await;
    }
}

/// Both migrations define the same tables and columns, and deleting a user removes their
/// invitations on both backends.
#[tokio::test]
async fn schema_matches_across_backends() {
    for db in test_dbs().await {
        let store = &db.store;
        for select in [
            "SELECT id, esl_addr, esl_password, wss_url, capacity, labels, draining, source, \
             started_at, core_uuid, created_at FROM nodes",
            "SELECT id, display_name, enabled, created_at, updated_at FROM users",
            "SELECT name, user_id, caller_id, message, profile, created_at FROM invitations",
            "SELECT id, name, node_id, profile, labels, origin, created_at, idle_since, \
             peak_members, ended_at, end_reason FROM conferences",
        ] {
            execute(store, select).await;
        }
        store.upsert_user(&alice(true)).await.expect("upsert");
        execute(
            store,
            "INSERT INTO invitations (name, user_id, caller_id, message, profile, created_at) \
             VALUES ('room1', 'alice', 'bob', 'hi', 'video', CURRENT_TIMESTAMP)",
        )
        .await;
        assert_eq!(count(store, "SELECT COUNT(*) FROM invitations").await, 1);
        store.delete_user("alice").await.expect("delete");
        assert_eq!(
            count(store, "SELECT COUNT(*) FROM invitations").await,
            0,
            "{}: invitations cascade",
            db.backend()
        );
    }
}

#[tokio::test]
async fn sqlite_file_is_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fresh.db");
    assert!(!path.exists());
    let store = Store::connect(&db::sqlite_url(path.clone()))
        .await
        .expect("connect");
    assert_eq!(store.backend(), Backend::Sqlite);
    assert!(path.exists());
    store.close().await;
}

#[tokio::test]
async fn bad_urls_are_typed_errors() {
    let err = Store::connect("mysql://root:pw@db/x")
        .await
        .expect_err("mysql");
    assert!(matches!(err, StoreError::UnsupportedUrl { ref scheme } if scheme == "mysql"));
    assert!(!err.to_string().contains("pw"), "{err}");

    let options = StoreOptions {
        max_connections: 1,
        acquire_timeout: Duration::from_secs(2),
    };
    // Port 1 on loopback: nothing listens there.
    let err = Store::connect_with("postgres://sy:hunter2@127.0.0.1:1/x", &options)
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        matches!(
            err,
            StoreError::Connect {
                backend: Backend::Postgres,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

async fn execute(store: &Store, sql: &str) {
    let result = match store {
        Store::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        Store::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
    };
    result.unwrap_or_else(|e| panic!("{}: {sql}: {e}", store.backend()));
}

async fn count(store: &Store, sql: &str) -> i64 {
    let result = match store {
        Store::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        Store::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
    };
    result.unwrap_or_else(|e| panic!("{}: {sql}: {e}", store.backend()))
}

#[tokio::test]
async fn sip_credentials_map_back_to_their_user() {
    use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
    use switchyard::store::NewSipCredential;

    for db in test_dbs().await {
        let store = &db.store;
        let backend = db.backend();
        store.upsert_user(&alice(true)).await.expect("user");
        let now = Utc::now().trunc_subsecs(6);
        let cred = |username: &str, expires_at| NewSipCredential {
            username: username.to_owned(),
            user_id: "alice".to_owned(),
            realm: "example.com".to_owned(),
            a1_hash: "0123456789abcdef0123456789abcdef".to_owned(),
            expires_at,
        };
        let live = cred("sylive", Some(now + ChronoDuration::hours(1)));
        let expired = cred("syexpired", Some(now - ChronoDuration::seconds(1)));
        let long_lived = cred("sylong", None);
        for c in [&live, &expired, &long_lived] {
            store.insert_sip_credential(c).await.expect("insert");
        }
        assert!(
            store.insert_sip_credential(&live).await.is_err(),
            "{backend}: usernames are unique"
        );
        let orphan = NewSipCredential {
            user_id: "nobody".to_owned(),
            ..cred("syorphan", None)
        };
        assert!(
            store.insert_sip_credential(&orphan).await.is_err(),
            "{backend}: the user must exist"
        );

        let entry = store
            .directory_entry("sylive")
            .await
            .expect("query")
            .expect("found");
        assert_eq!(entry.user_id, "alice", "{backend}");
        assert_eq!(entry.display_name, "Alice");
        assert_eq!(entry.realm, "example.com");
        assert_eq!(
            entry.expires_at, live.expires_at,
            "{backend}: exact round trip"
        );
        assert!(entry.usable_at(now));
        let gone = store
            .directory_entry("syexpired")
            .await
            .expect("query")
            .expect("still stored");
        assert!(!gone.usable_at(now), "{backend}: expired");
        let long = store
            .directory_entry("sylong")
            .await
            .expect("query")
            .expect("found");
        assert!(long.usable_at(now + ChronoDuration::days(3650)));
        assert_eq!(store.directory_entry("nope").await.expect("query"), None);

        assert_eq!(
            store
                .delete_expired_sip_credentials("alice", now)
                .await
                .expect("cleanup"),
            1,
            "{backend}"
        );
        assert_eq!(
            store.directory_entry("syexpired").await.expect("query"),
            None
        );

        store.upsert_user(&alice(false)).await.expect("disable");
        let disabled = store
            .directory_entry("sylive")
            .await
            .expect("query")
            .expect("found");
        assert!(!disabled.usable_at(now), "{backend}: disabled user");

        assert!(store.delete_user("alice").await.expect("delete"));
        for username in ["sylive", "sylong"] {
            assert_eq!(
                store.directory_entry(username).await.expect("query"),
                None,
                "{backend}: cascade"
            );
        }
    }
}
