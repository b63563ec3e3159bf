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

fn node_spec(id: &str) -> switchyard::store::NodeSpec {
    switchyard::store::NodeSpec {
        id: id.to_owned(),
        esl_addr: "10.0.0.1:8021".to_owned(),
        esl_password: secrecy::SecretString::from("pw"),
        wss_url: format!("wss://{id}.example.com"),
        capacity: 50,
        labels: [("region".to_owned(), "eu".to_owned())].into(),
    }
}

/// Config nodes are upserted keeping their drain flag; API nodes are insert-only.
#[tokio::test]
async fn nodes_crud() {
    use secrecy::ExposeSecret as _;
    use switchyard::store::NodeSource;
    for db in test_dbs().await {
        let store = &db.store;
        let backend = db.backend();
        store
            .upsert_config_node(&node_spec("fs1"))
            .await
            .unwrap_or_else(|e| panic!("{backend}: upsert: {}", switchyard::error_chain(&e)));
        assert!(store.set_node_draining("fs1", true).await.expect("drain"));
        let mut changed = node_spec("fs1");
        changed.capacity = 70;
        store
            .upsert_config_node(&changed)
            .await
            .expect("upsert again");
        let fs1 = store.get_node("fs1").await.expect("get").expect("fs1");
        assert_eq!(fs1.capacity, 70, "{backend}");
        assert!(fs1.draining, "{backend}: the drain flag survives a restart");
        assert_eq!(fs1.source, NodeSource::Config);
        assert_eq!(fs1.labels["region"], "eu");
        assert_eq!(fs1.esl_password.expose_secret(), "pw");

        assert!(
            store
                .insert_api_node(&node_spec("fs2"))
                .await
                .unwrap_or_else(|e| panic!("{backend}: insert: {}", switchyard::error_chain(&e)))
        );
        assert!(
            !store
                .insert_api_node(&node_spec("fs2"))
                .await
                .expect("again")
        );
        assert!(
            !store
                .insert_api_node(&node_spec("fs1"))
                .await
                .expect("taken")
        );
        let ids: Vec<String> = store
            .list_nodes()
            .await
            .expect("list")
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, ["fs1", "fs2"], "{backend}");

        let started = chrono::Utc::now();
        store
            .record_node_start("fs2", started, Some("uuid-1"))
            .await
            .expect("start");
        store
            .record_node_start("fs2", started, None)
            .await
            .expect("start");
        let fs2 = store.get_node("fs2").await.expect("get").expect("fs2");
        assert_eq!(
            fs2.core_uuid.as_deref(),
            Some("uuid-1"),
            "kept when unknown"
        );
        assert!(fs2.started_at.is_some());
        assert!(store.delete_node("fs2").await.expect("delete"));
        assert!(!store.delete_node("fs2").await.expect("delete again"));
        assert!(
            !store
                .set_node_draining("fs2", true)
                .await
                .expect("drain gone")
        );
    }
}

/// Concurrent claims of one name: exactly one wins, everyone gets its node; an ended
/// placement frees the name and stays as history.
#[tokio::test]
async fn conference_claims_are_atomic() {
    use switchyard::store::{Claim, EndReason, NewConference, Origin};
    for db in test_dbs().await {
        let store = &db.store;
        let backend = db.backend();
        let claim = |node: &str| NewConference {
            name: "room".to_owned(),
            node_id: node.to_owned(),
            profile: "video".to_owned(),
            labels: Default::default(),
            origin: Origin::Placed,
            options: Default::default(),
        };
        let attempts: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                let new = claim(&format!("fs{}", i % 3));
                tokio::spawn(async move { store.claim_conference(&new).await })
            })
            .collect();
        let mut winners = Vec::new();
        let mut nodes = std::collections::BTreeSet::new();
        for attempt in attempts {
            match attempt
                .await
                .expect("join")
                .unwrap_or_else(|e| panic!("{backend}: claim: {}", switchyard::error_chain(&e)))
            {
                Claim::Claimed(c) => {
                    nodes.insert(c.node_id.clone());
                    winners.push(c);
                }
                Claim::Existing(c) => {
                    nodes.insert(c.node_id);
                }
            }
        }
        assert_eq!(winners.len(), 1, "{backend}: exactly one claim wins");
        assert_eq!(nodes.len(), 1, "{backend}: everyone got the winner's node");
        let winner = winners.remove(0);
        assert_eq!(
            winner.idle_since,
            Some(winner.created_at),
            "idle until joined"
        );

        store
            .set_conference_occupancy("room", &winner.node_id, 3)
            .await
            .expect("busy");
        store
            .set_conference_occupancy("room", &winner.node_id, 2)
            .await
            .expect("busy");
        let live = store
            .live_conference("room")
            .await
            .expect("live")
            .expect("room");
        assert_eq!((live.peak_members, live.idle_since), (3, None), "{backend}");
        store
            .set_conference_occupancy("room", &winner.node_id, 0)
            .await
            .expect("idle");
        let counts = store.live_conference_counts().await.expect("counts");
        assert_eq!(counts[&winner.node_id].live, 1);
        assert_eq!(counts[&winner.node_id].idle, 1);

        let later = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
        let reaped = store
            .end_idle_conferences(&winner.node_id, later, Duration::from_millis(500))
            .await
            .expect("reap");
        assert_eq!(reaped.len(), 1, "{backend}");
        assert!(
            !store
                .end_conference(&winner.id, EndReason::Ended)
                .await
                .expect("again")
        );
        assert!(store.live_conference("room").await.expect("live").is_none());
        let Claim::Claimed(next) = store
            .claim_conference(&claim("fs9"))
            .await
            .expect("reclaim")
        else {
            panic!("{backend}: the name is free again");
        };
        assert_eq!(next.node_id, "fs9");
        assert!(
            store
                .end_conference(&next.id, EndReason::NodeDown)
                .await
                .expect("end")
        );
        assert_eq!(
            count(
                store,
                "SELECT COUNT(*) FROM conferences WHERE name = 'room'"
            )
            .await,
            2,
            "{backend}: history kept"
        );
    }
}

/// Member stays open at join, close at leave with a reason, and list newest first by page.
#[tokio::test]
async fn member_stays_history() {
    use switchyard::store::{Cursor, NewStay, StayFilter};
    for db in test_dbs().await {
        let store = &db.store;
        let backend = db.backend();
        let t0 = chrono::Utc::now();
        for (i, user) in ["a", "b", "c"].into_iter().enumerate() {
            let stay = NewStay {
                name: "room",
                node_id: "fs1",
                member_id: u32::try_from(i).unwrap_or(0) + 1,
                user_id: Some(user),
                caller_id_name: user,
                joined_at: t0 + chrono::TimeDelta::seconds(i64::try_from(i).unwrap_or(0)),
            };
            store
                .open_stay(&stay)
                .await
                .unwrap_or_else(|e| panic!("{backend}: open: {}", switchyard::error_chain(&e)));
            store.open_stay(&stay).await.expect("open twice is a no-op");
        }
        assert!(
            store
                .close_stay("fs1", "room", 2, "kicked", t0)
                .await
                .expect("close")
        );
        assert!(
            !store
                .close_stay("fs1", "room", 2, "hangup", t0)
                .await
                .expect("again")
        );
        let all = store
            .stays(&StayFilter::default(), None, 10)
            .await
            .unwrap_or_else(|e| panic!("{backend}: list: {}", switchyard::error_chain(&e)));
        let users: Vec<_> = all.iter().filter_map(|s| s.user_id.clone()).collect();
        assert_eq!(users, ["c", "b", "a"], "{backend}: newest first");
        assert_eq!(all[1].reason.as_deref(), Some("kicked"));
        let first = store
            .stays(&StayFilter::default(), None, 2)
            .await
            .expect("page 1");
        let last = first.last().expect("row");
        let cursor = Cursor {
            at: last.joined_at,
            id: last.id.clone(),
        };
        let second = store
            .stays(&StayFilter::default(), Some(&cursor), 2)
            .await
            .expect("page 2");
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].user_id.as_deref(), Some("a"));
        let by_user = store
            .stays(
                &StayFilter {
                    name: Some("room".to_owned()),
                    user_id: Some("b".to_owned()),
                },
                None,
                10,
            )
            .await
            .expect("filtered");
        assert_eq!(by_user.len(), 1, "{backend}");
    }
}

#[tokio::test]
async fn recordings_open_and_close() {
    for db in test_dbs().await {
        let store = &db.store;
        let backend = db.backend();
        store
            .recording_started("fs1", "room", "/rec/a.wav", None)
            .await
            .unwrap_or_else(|e| panic!("{backend}: start: {}", switchyard::error_chain(&e)));
        store
            .recording_started("fs1", "room", "rtmp://x/live/room", None)
            .await
            .expect("broadcast");
        store
            .recording_started("fs1", "room", "/rec/a.wav", None)
            .await
            .expect("twice is a no-op");
        store
            .recording_stopped("fs1", "/rec/a.wav", Some(1500))
            .await
            .unwrap_or_else(|e| panic!("{backend}: stop: {}", switchyard::error_chain(&e)));
        let list = store
            .recordings("room")
            .await
            .unwrap_or_else(|e| panic!("{backend}: list: {}", switchyard::error_chain(&e)));
        assert_eq!(list.len(), 2, "{backend}");
        let file = list.iter().find(|r| r.kind == "file").expect("file");
        assert_eq!(file.milliseconds, Some(1500));
        assert!(file.stopped_at.is_some());
        let cast = list
            .iter()
            .find(|r| r.kind == "broadcast")
            .expect("broadcast");
        assert!(cast.stopped_at.is_none());
    }
}

/// Housekeeping drops every user's expired SIP credentials and the session tokens expired for
/// more than a day; live, long-lived and recently expired tokens stay. Both backends.
#[tokio::test]
async fn housekeeping_purges_expired_rows_of_every_user() {
    use chrono::{Duration as ChronoDuration, Utc};
    use switchyard::store::NewSipCredential;

    for db in test_dbs().await {
        let store = &db.store;
        let backend = db.backend();
        for id in ["alice", "bob"] {
            store
                .upsert_user(&UpsertUser {
                    id: id.to_owned(),
                    ..alice(true)
                })
                .await
                .expect("user");
        }
        let now = Utc::now();
        let credentials = [
            ("alice", "syold", Some(now - ChronoDuration::days(3))),
            (
                "bob",
                "syjustnow",
                Some(now - ChronoDuration::milliseconds(5)),
            ),
            ("bob", "sylive", Some(now + ChronoDuration::minutes(5))),
            ("alice", "sylong", None),
        ];
        for (user, username, expires_at) in credentials {
            store
                .insert_sip_credential(&NewSipCredential {
                    username: username.to_owned(),
                    user_id: user.to_owned(),
                    realm: "example.com".to_owned(),
                    a1_hash: "0123456789abcdef0123456789abcdef".to_owned(),
                    expires_at,
                })
                .await
                .expect("credential");
        }
        let tokens = [
            ("alice", "t-old", now - ChronoDuration::days(2)),
            ("bob", "t-recent", now - ChronoDuration::hours(2)),
            ("bob", "t-live", now + ChronoDuration::hours(1)),
        ];
        for (user, hash, expires_at) in tokens {
            store
                .insert_session_token(hash, user, expires_at)
                .await
                .expect("token");
        }

        switchyard::housekeeping::run_once(store, 0).await;

        for (username, kept) in [
            ("syold", false),
            ("syjustnow", false),
            ("sylive", true),
            ("sylong", true),
        ] {
            let found = store.directory_entry(username).await.expect("query");
            assert_eq!(found.is_some(), kept, "{backend}: {username}");
        }
        for (hash, kept) in [("t-old", false), ("t-recent", true), ("t-live", true)] {
            let found = store.session_token_owner(hash).await.expect("query");
            assert_eq!(found.is_some(), kept, "{backend}: {hash}");
        }
    }
}

/// With a retention, housekeeping deletes ended conferences, finished stays and stopped
/// recordings older than it, and unfinished ones outside live conferences; live and recent rows
/// stay; 0 keeps everything. Both backends.
#[tokio::test]
async fn history_older_than_the_retention_is_deleted() {
    use chrono::{Duration as ChronoDuration, Utc};
    use switchyard::store::{Claim, EndReason, NewConference, NewStay, Origin};

    for db in test_dbs().await {
        let store = &db.store;
        let backend = db.backend();
        let now = Utc::now();
        let mut ids = Vec::new();
        for name in ["old", "recent", "live"] {
            let Claim::Claimed(c) = store
                .claim_conference(&NewConference {
                    name: name.to_owned(),
                    node_id: "fs1".to_owned(),
                    profile: "audio".to_owned(),
                    labels: Default::default(),
                    origin: Origin::Placed,
                    options: Default::default(),
                })
                .await
                .expect("claim")
            else {
                panic!("{backend}: {name} claimed");
            };
            ids.push(c.id);
            store
                .recording_started("fs1", name, &format!("/rec/{name}.wav"), None)
                .await
                .expect("recording");
            let joined_at = now - ChronoDuration::days(40);
            store
                .open_stay(&NewStay {
                    name,
                    node_id: "fs1",
                    member_id: 1,
                    user_id: Some("alice"),
                    caller_id_name: "Alice",
                    joined_at,
                })
                .await
                .expect("stay");
        }
        for (i, name) in ["old", "recent"].iter().enumerate() {
            store
                .end_conference(&ids[i], EndReason::Ended)
                .await
                .expect("end");
            store
                .recording_stopped("fs1", &format!("/rec/{name}.wav"), Some(1000))
                .await
                .expect("stop");
            let left_at = if *name == "old" {
                now - ChronoDuration::days(31)
            } else {
                now - ChronoDuration::days(29)
            };
            store
                .close_stay("fs1", name, 1, "hangup", left_at)
                .await
                .expect("leave");
        }
        // Age the old conference and its recording as if they had ended 31 days ago.
        let aged = now - ChronoDuration::days(31);
        match store {
            Store::Sqlite(pool) => {
                for sql in [
                    "UPDATE conferences SET ended_at = ?1 WHERE name = 'old'",
                    "UPDATE recordings SET stopped_at = ?1 WHERE name = 'old'",
                ] {
                    sqlx::query(sql).bind(aged).execute(pool).await.expect(sql);
                }
            }
            Store::Postgres(pool) => {
                for sql in [
                    "UPDATE conferences SET ended_at = $1 WHERE name = 'old'",
                    "UPDATE recordings SET stopped_at = $1 WHERE name = 'old'",
                ] {
                    sqlx::query(sql).bind(aged).execute(pool).await.expect(sql);
                }
            }
        }
        // A stay whose leave was never stored, in a conference that is gone.
        store
            .open_stay(&NewStay {
                name: "gone",
                node_id: "fs1",
                member_id: 7,
                user_id: Some("alice"),
                caller_id_name: "Alice",
                joined_at: now - ChronoDuration::days(40),
            })
            .await
            .expect("unfinished stay");
        let rows = |table: &str| format!("SELECT COUNT(*) FROM {table}");

        switchyard::housekeeping::run_once(store, 0).await;
        for (table, all) in [("conferences", 3), ("member_stays", 4), ("recordings", 3)] {
            let left = count(store, &rows(table)).await;
            assert_eq!(left, all, "{backend}: 0 keeps {table}");
        }

        switchyard::housekeeping::run_once(store, 30).await;
        for table in ["conferences", "member_stays", "recordings"] {
            let old = count(
                store,
                &format!("{} WHERE name IN ('old', 'gone')", rows(table)),
            )
            .await;
            assert_eq!(old, 0, "{backend}: old {table} deleted");
            // What is left: the recent and the live one (whose stay started 40 days ago).
            assert_eq!(count(store, &rows(table)).await, 2, "{backend}: {table}");
        }
        assert!(
            store.live_conference("live").await.expect("live").is_some(),
            "{backend}"
        );
    }
}
