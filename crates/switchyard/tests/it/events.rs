//! The browser event channel over real WebSockets: session tokens, refusals with their close
//! codes, garbage frames, the invitation flow with fsim members, chat, decline, resumption, and
//! two replicas sharing events through Redis.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use switchyard::Config;
use switchyard::nodes::NodeState;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::pool::{add_node, pool_config, sim_node, wait_state};
use crate::redis::redis_url;
use crate::support::api::{ADMIN_KEY, READER_KEY, delete, put_user};
use crate::support::db::{postgres_url, test_dbs};
use crate::support::spawn::{TestApp, client};

const WAIT: Duration = Duration::from_secs(10);

/// A browser's end of `/v1/events`.
struct Channel {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Channel {
    async fn open(app: &TestApp) -> Channel {
        let url = format!("ws://{}/v1/events", app.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket handshake");
        Channel { ws }
    }

    async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Opens a channel, says hello and returns it with its `welcome`.
    async fn hello(app: &TestApp, token: &str, resume: Option<u64>) -> (Channel, Value) {
        let mut channel = Channel::open(app).await;
        let mut hello = json!({"type": "hello", "token": token});
        if let Some(seq) = resume {
            hello["resume"] = json!({ "seq": seq });
        }
        channel.send(hello).await;
        let welcome = channel.next().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        (channel, welcome)
    }

    /// The next JSON frame (WebSocket pings are skipped).
    async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within 10 s")
                .expect("the channel is open")
                .expect("a frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next frame of `kind`, skipping others.
    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The JSON frames that arrive within `wait` (none expected).
    async fn pending(&mut self, wait: Duration) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Ok(Some(Ok(message))) = tokio::time::timeout(wait, self.ws.next()).await {
            if let Message::Text(text) = message {
                frames.push(serde_json::from_str(&text).expect("JSON frame"));
            }
        }
        frames
    }

    /// Reads until the server closes; the close code.
    async fn closed(&mut self) -> u16 {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("closed within 10 s");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return 1006,
                Some(Ok(_)) => {}
            }
        }
    }
}

async fn token(app: &TestApp, user: &str) -> String {
    let response = client()
        .post(app.url(&format!("/v1/users/{user}/session-tokens")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("POST session-tokens");
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["user_id"], user);
    assert_eq!(body["events_path"], "/v1/events");
    body["token"].as_str().expect("token").to_owned()
}

/// The service with one simulated node, `fs-a`, up.
async fn app_with_node(configure: fn(&mut Config)) -> (TestApp, fsim::SimNode) {
    let app = TestApp::spawn_configured(None, configure).await;
    let sim = sim_node(&app, "fs-a").await;
    add_node(&app, "fs-a", &sim, json!({})).await;
    wait_state(&app, "fs-a", NodeState::Up).await;
    (app, sim)
}

/// Joins conference `name` on `sim` with the SIP credentials an `invited` event carried.
async fn join_invited(
    sim: &fsim::SimNode,
    invited: &Value,
    name: &str,
    profile: &str,
) -> fsim::Call {
    let field = |k: &str| invited["sip"][k].as_str().expect("sip field").to_owned();
    sim.call(&field("username"), &field("password"), name, profile)
        .await
        .expect("joins with the invited credentials")
}

async fn invite(app: &TestApp, name: &str, user: &str, caller: &str) -> Value {
    let response = client()
        .post(app.url(&format!("/v1/conferences/{name}/invitations")))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"user_id": user, "caller_id": caller, "profile": "video", "message": "Созвон 📞"}))
        .send()
        .await
        .expect("POST invitation");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("JSON")
}

/// Tokens are issued only for existing, enabled users with the right key and sane bodies; the
/// channel refuses bad hellos and tokens with the documented close codes.
#[tokio::test]
async fn tokens_and_refusals() {
    for db in test_dbs().await {
        let app = TestApp::spawn_configured(Some(&db.url), pool_config).await;
        put_user(&app, "ann", "Ann", true).await;
        put_user(&app, "off", "Off", false).await;
        let post = |user: &str, key: &str, body: &'static str| {
            client()
                .post(app.url(&format!("/v1/users/{user}/session-tokens")))
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let cases: [(&str, &str, &str, StatusCode, &str); 8] = [
            (
                "ann",
                ADMIN_KEY,
                r#"{"ttl_secs": 5}"#,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                "ann",
                ADMIN_KEY,
                r#"{"ttl_secs": 99999999}"#,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                "ann",
                ADMIN_KEY,
                r#"{"nope": 1}"#,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                "ann",
                ADMIN_KEY,
                "\u{0}garbage",
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                "nobody",
                ADMIN_KEY,
                "",
                StatusCode::NOT_FOUND,
                "user_not_found",
            ),
            ("off", ADMIN_KEY, "", StatusCode::CONFLICT, "user_disabled"),
            ("ann", READER_KEY, "", StatusCode::FORBIDDEN, "forbidden"),
            (
                "bad id!",
                ADMIN_KEY,
                "",
                StatusCode::BAD_REQUEST,
                "invalid_user_id",
            ),
        ];
        for (user, key, body, status, code) in cases {
            let response = post(user, key, body).await.expect("POST");
            assert_eq!(response.status(), status, "{user} {body:?}");
            let problem: Value = response.json().await.expect("problem");
            assert_eq!(problem["code"], code, "{user} {body:?}");
        }
        let ok = post("ann", ADMIN_KEY, r#"{"ttl_secs": 120}"#)
            .await
            .expect("POST");
        assert_eq!(ok.status(), StatusCode::CREATED);

        // Plain HTTP on the WebSocket endpoint.
        let response = client()
            .get(app.url("/v1/events"))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
        let problem: Value = response.json().await.expect("problem");
        assert_eq!(problem["code"], "websocket_required");

        // Bad hellos and bad tokens.
        for (first, code) in [
            (Message::Text("not json".into()), 4000),
            (Message::Text(r#"{"type":"ping"}"#.into()), 4000),
            (Message::Binary(vec![1, 2, 3].into()), 4000),
            (
                Message::Text(r#"{"type":"hello","token":"sy_st_unknown"}"#.into()),
                4001,
            ),
            (
                Message::Text(r#"{"type":"hello","token":"bearer-something"}"#.into()),
                4001,
            ),
        ] {
            let mut channel = Channel::open(&app).await;
            channel.ws.send(first.clone()).await.expect("send");
            assert_eq!(channel.closed().await, code, "{first:?}");
        }
        let expired = "sy_st_expired-token-for-the-test-0000000000000";
        app.store
            .insert_session_token(
                &switchyard::browser::token_digest(expired),
                "ann",
                chrono::Utc::now() - chrono::Duration::seconds(1),
            )
            .await
            .expect("insert");
        let mut channel = Channel::open(&app).await;
        channel
            .send(json!({"type": "hello", "token": expired}))
            .await;
        assert_eq!(channel.closed().await, 4002, "expired token");

        // An open channel: garbage gets error frames and the channel stays; ping gets pong.
        let ann = token(&app, "ann").await;
        let (mut channel, welcome) = Channel::hello(&app, &ann, None).await;
        assert_eq!(welcome["user_id"], "ann");
        assert_eq!(welcome["resumed"], false);
        assert_eq!(welcome["heartbeat_secs"], 25);
        for garbage in [
            "{",
            "[]",
            r#"{"type":"nope","id":"g1"}"#,
            r#"{"type":"decline"}"#,
            r#"{"type":"hello","token":"again"}"#,
            "\u{1}\u{2}",
        ] {
            channel.send_text(garbage).await;
            let error = channel.next().await;
            assert_eq!(error["type"], "error", "{garbage}");
            assert_eq!(error["code"], "bad_message", "{garbage}");
        }
        channel
            .send(json!({"type": "decline", "conference": "nothing"}))
            .await;
        assert_eq!(channel.next().await["code"], "not_invited");
        channel
            .send(json!({"type": "message", "conference": "nothing", "text": "hi"}))
            .await;
        assert_eq!(channel.next().await["code"], "not_in_audience");
        channel.send(json!({"type": "ping", "id": "p1"})).await;
        assert_eq!(channel.next().await, json!({"type": "pong", "id": "p1"}));

        // Presence sees the channel.
        let presence: Value = client()
            .get(app.url("/v1/presence"))
            .bearer_auth(READER_KEY)
            .send()
            .await
            .expect("GET presence")
            .json()
            .await
            .expect("JSON");
        assert_eq!(
            presence["users"],
            json!([{"user_id": "ann", "connections": 1}])
        );

        // Revoking the user's tokens closes the open channel and refuses the token.
        let response = client()
            .delete(app.url("/v1/users/ann/session-tokens"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .expect("DELETE");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(channel.closed().await, 4001);
        let mut again = Channel::open(&app).await;
        again.send(json!({"type": "hello", "token": ann})).await;
        assert_eq!(again.closed().await, 4001);

        // Disabling the user closes its channels with 4003 and refuses new ones.
        let ann = token(&app, "ann").await;
        let (mut channel, _) = Channel::hello(&app, &ann, None).await;
        put_user(&app, "ann", "Ann", false).await;
        assert_eq!(channel.closed().await, 4003);
        let mut again = Channel::open(&app).await;
        again.send(json!({"type": "hello", "token": ann})).await;
        assert_eq!(again.closed().await, 4003);
        app.stop().await.expect("stop");
    }
}

/// Invited on every tab with per-tab SIP credentials that work on the node; answering in one
/// tab cancels the others; members, talking, chat (UTF-8), decline and end reach the audience.
#[tokio::test]
async fn invitation_call_chat_decline_end() {
    let (app, sim) = app_with_node(pool_config).await;
    for user in ["alice", "bob", "carol"] {
        put_user(&app, user, user, true).await;
    }
    let alice_token = token(&app, "alice").await;
    let bob_token = token(&app, "bob").await;
    let (mut alice, _) = Channel::hello(&app, &alice_token, None).await;
    let (mut bob1, _) = Channel::hello(&app, &bob_token, None).await;
    let (mut bob2, _) = Channel::hello(&app, &bob_token, None).await;

    invite(&app, "room", "alice", "alice").await;
    let invited_alice = alice.next_of("invited").await;
    invite(&app, "room", "bob", "alice").await;
    let (b1, b2) = (bob1.next_of("invited").await, bob2.next_of("invited").await);
    for invited in [&b1, &b2] {
        assert_eq!(invited["conference"], "room");
        assert_eq!(invited["caller_id"], "alice");
        assert_eq!(invited["message"], "Созвон 📞");
        assert_eq!(invited["profile"], "video");
        assert_eq!(invited["node"], "fs-a");
        assert_eq!(invited["wss_url"], "wss://fs-a.example.com:7443");
        assert!(
            invited["dial_uri"]
                .as_str()
                .is_some_and(|u| u.contains("room"))
        );
        assert_eq!(invited["seq"], 1, "bob's first event");
    }
    assert_ne!(
        b1["sip"]["username"], b2["sip"]["username"],
        "each tab is its own SIP user"
    );

    // Bob's first tab answers with its credentials; the second stops ringing.
    bob1.send(json!({"type": "accept", "conference": "room"}))
        .await;
    let cancelled = bob2.next_of("invitation_cancelled").await;
    assert_eq!(cancelled["reason"], "answered");
    let bob_call = join_invited(&sim, &b1, "room", "video").await;
    let alice_call = join_invited(&sim, &invited_alice, "room", "video").await;
    let joined = alice.next_of("member_joined").await;
    assert_eq!(joined["member"]["user_id"], "bob");
    assert_eq!(joined["conference"], "room");
    assert!(joined["member"].get("channel_uuid").is_none());
    let joined = bob2.next_of("member_joined").await;
    assert_eq!(joined["member"]["user_id"], "bob");

    // Talking.
    sim.start_talking(&bob_call.uuid).await.expect("talk");
    let talking = alice.next_of("talking").await;
    assert_eq!(
        (talking["user_id"].as_str(), talking["talking"].as_bool()),
        (Some("bob"), Some(true))
    );

    // Chat, UTF-8 intact, to everyone in the audience (the sender too).
    let text = "Привет, Алиса! 👋🏽 👨‍👩‍👧 «ёлка»";
    bob1.send(json!({"type": "message", "conference": "room", "text": text, "id": "m1"}))
        .await;
    for channel in [&mut alice, &mut bob1, &mut bob2] {
        let message = channel.next_of("message").await;
        assert_eq!(message["text"], text);
        assert_eq!(message["from"], "bob");
        assert_eq!(message["id"], "m1");
    }
    // The longest allowed text in 4-byte characters: an 8 KB frame, over the 4 KiB read buffer.
    let widest = "👋".repeat(2000);
    bob1.send(json!({"type": "message", "conference": "room", "text": widest, "id": "m-wide"}))
        .await;
    for channel in [&mut alice, &mut bob1, &mut bob2] {
        assert_eq!(channel.next_of("message").await["text"], widest.as_str());
    }
    let long = "я".repeat(2001);
    bob1.send(json!({"type": "message", "conference": "room", "text": long, "id": "m2"}))
        .await;
    let error = bob1.next_of("error").await;
    assert_eq!(
        (error["code"].as_str(), error["id"].as_str()),
        (Some("message_too_long"), Some("m2"))
    );
    bob1.send(json!({"type": "message", "conference": "room", "text": "  \n"}))
        .await;
    assert_eq!(bob1.next_of("error").await["code"], "message_empty");

    // Carol declines: alice hears it, the invitation is gone, a second decline is refused.
    let carol_token = token(&app, "carol").await;
    let (mut carol, _) = Channel::hello(&app, &carol_token, None).await;
    invite(&app, "room", "carol", "alice").await;
    carol.next_of("invited").await;
    carol
        .send(json!({"type": "decline", "conference": "room"}))
        .await;
    let declined = alice.next_of("declined").await;
    assert_eq!(declined["user_id"], "carol");
    assert_eq!(
        carol.next_of("invitation_cancelled").await["reason"],
        "declined"
    );
    let invitations: Value = client()
        .get(app.url("/v1/conferences/room/invitations"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert!(
        !invitations["invitations"]
            .as_array()
            .expect("list")
            .iter()
            .any(|i| i["user_id"] == "carol")
    );
    carol
        .send(json!({"type": "busy", "conference": "room"}))
        .await;
    assert_eq!(carol.next_of("error").await["code"], "not_invited");

    // Alice hangs up: bob sees her leave; ending the conference tells everyone.
    sim.hangup(&alice_call.uuid).await.expect("hang up");
    let left = bob1.next_of("member_left").await;
    assert_eq!(
        (left["member"]["user_id"].as_str(), left["reason"].as_str()),
        (Some("alice"), Some("hangup"))
    );
    assert!(
        delete(&app, "/v1/conferences/room")
            .await
            .status()
            .is_success()
    );
    assert_eq!(bob2.next_of("ended").await["reason"], "ended");
    assert_eq!(alice.next_of("ended").await["conference"], "room");
    // Carol declined: the conference's later news is none of her business.
    let after_decline = carol.pending(Duration::from_millis(300)).await;
    assert!(after_decline.is_empty(), "{after_decline:?}");
    app.stop().await.expect("stop");
}

/// An uninvited user hears of their own removal, then nothing more of the conference: not
/// the others' leaving, not its end.
#[tokio::test]
async fn uninvited_users_stop_hearing_the_conference() {
    let (app, sim) = app_with_node(pool_config).await;
    for user in ["ann", "dan"] {
        put_user(&app, user, user, true).await;
    }
    let (mut ann, _) = Channel::hello(&app, &token(&app, "ann").await, None).await;
    let (mut dan, _) = Channel::hello(&app, &token(&app, "dan").await, None).await;
    invite(&app, "r", "ann", "x").await;
    invite(&app, "r", "dan", "x").await;
    for channel in [&mut ann, &mut dan] {
        let invited = channel.next_of("invited").await;
        join_invited(&sim, &invited, "r", "default").await;
    }
    for _ in 0..2 {
        dan.next_of("member_joined").await;
    }

    assert_eq!(
        delete(&app, "/v1/conferences/r/invitations/dan")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    // (Joining already stopped the ringing: `answered` first.)
    while dan.next_of("invitation_cancelled").await["reason"] != "cancelled" {}
    let left = ann.next_of("member_left").await;
    assert_eq!(
        (left["member"]["user_id"].as_str(), left["reason"].as_str()),
        (Some("dan"), Some("uninvited"))
    );
    // Dan hears his own leave, as a member; then nothing.
    let own = dan.next_of("member_left").await;
    assert_eq!(own["member"]["user_id"], "dan");

    assert!(
        delete(&app, "/v1/conferences/r")
            .await
            .status()
            .is_success()
    );
    assert_eq!(ann.next_of("ended").await["conference"], "r");
    let after = dan.pending(Duration::from_millis(300)).await;
    assert!(after.is_empty(), "{after:?}");
    app.stop().await.expect("stop");
}

/// A browser that stops answering (no pong, no frame) is closed with 4008 after the idle limit
/// (twice the heartbeat plus 10 s: 20 s with the shortest heartbeat validation allows, 5 s).
/// Spoken over a raw socket: a WebSocket library would answer the pings.
#[tokio::test]
async fn silent_browsers_are_closed_with_heartbeat_timeout() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let app = TestApp::spawn_configured(None, |c| {
        pool_config(c);
        c.events.heartbeat_secs = 5;
    })
    .await;
    put_user(&app, "sam", "sam", true).await;
    let token = token(&app, "sam").await;
    let mut socket = TcpStream::connect(app.addr).await.expect("connect");
    let upgrade = format!(
        "GET /v1/events HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app.addr
    );
    socket.write_all(upgrade.as_bytes()).await.expect("upgrade");
    let hello = json!({"type": "hello", "token": token}).to_string();
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let len = u8::try_from(hello.len()).expect("short hello");
    assert!(len < 126);
    let mut frame = vec![0x81, 0x80 | len];
    frame.extend_from_slice(&mask);
    frame.extend(hello.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    socket.write_all(&frame).await.expect("hello");

    // Read (never answer) until the server closes the connection.
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(40), socket.read_to_end(&mut received))
        .await
        .expect("closed within the idle limit")
        .expect("read");
    let body = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| &received[at + 4..])
        .expect("101 response");
    let mut frames = Vec::new();
    let mut rest = body;
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let (len, header) = match rest[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 => panic!("no frame here is that long"),
            n => (usize::from(n), 2),
        };
        frames.push((opcode, rest[header..header + len].to_vec()));
        rest = &rest[header + len..];
    }
    let kinds: Vec<u8> = frames.iter().map(|(op, _)| *op).collect();
    assert_eq!(kinds.first(), Some(&0x1), "welcome first: {kinds:?}");
    assert!(kinds.contains(&0x9), "the server pinged: {kinds:?}");
    let (opcode, close) = frames.last().expect("frames");
    assert_eq!(*opcode, 0x8, "{kinds:?}");
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 4008);
    assert_eq!(&close[2..], b"heartbeat_timeout");
    app.stop().await.expect("stop");
}

fn small_replay(config: &mut Config) {
    pool_config(config);
    config.events.replay_events = 3;
}

/// A browser that reconnects gets what it missed, in order, if it is still kept; otherwise it
/// is told to resynchronise.
#[tokio::test]
async fn resumption() {
    let (app, _sim) = app_with_node(small_replay).await;
    put_user(&app, "bob", "bob", true).await;
    let bob = token(&app, "bob").await;
    let (mut channel, welcome) = Channel::hello(&app, &bob, None).await;
    assert_eq!(welcome["seq"], 0);
    invite(&app, "r1", "bob", "x").await;
    assert_eq!(channel.next_of("invited").await["seq"], 1);
    drop(channel);

    invite(&app, "r2", "bob", "x").await;
    invite(&app, "r3", "bob", "x").await;
    let (mut channel, welcome) = Channel::hello(&app, &bob, Some(1)).await;
    assert_eq!(
        (welcome["resumed"].as_bool(), welcome["seq"].as_u64()),
        (Some(true), Some(3))
    );
    for (seq, name) in [(2, "r2"), (3, "r3")] {
        let invited = channel.next().await;
        assert_eq!(
            (invited["seq"].as_u64(), invited["conference"].as_str()),
            (Some(seq), Some(name))
        );
        assert!(
            invited["sip"]["password"].is_string(),
            "replayed invitations get credentials"
        );
    }
    drop(channel);

    for name in ["r4", "r5", "r6", "r7"] {
        invite(&app, name, "bob", "x").await;
    }
    let (_channel, welcome) = Channel::hello(&app, &bob, Some(3)).await;
    assert_eq!(welcome["resumed"], false, "event 4 is no longer kept");
    assert_eq!(welcome["seq"], 7);
    let (_channel, welcome) = Channel::hello(&app, &bob, Some(99)).await;
    assert_eq!(welcome["resumed"], false, "numbers from the future");
    app.stop().await.expect("stop");
}

/// Two replicas sharing PostgreSQL and Redis: an invitation made through one reaches a browser
/// connected to the other, which can resume on the first.
#[tokio::test]
async fn replicas_share_events() {
    let (Some(redis), Some(pg)) = (redis_url(), postgres_url()) else {
        eprintln!("notice: PostgreSQL or Redis unavailable; skipping");
        return;
    };
    let db = crate::support::db::postgres(&pg).await;
    let prefix = format!("sy-events-{:08x}:", rand::random::<u32>());
    let configure = |config: &mut Config| {
        pool_config(config);
        config.redis.url = Some(SecretString::from(redis.clone()));
        config.redis.key_prefix = prefix.clone();
    };
    let a = TestApp::spawn_configured(Some(&db.url), configure).await;
    let b = TestApp::spawn_configured(Some(&db.url), configure).await;
    let sim = sim_node(&a, "fs-a").await;
    add_node(&a, "fs-a", &sim, json!({})).await;
    wait_state(&a, "fs-a", NodeState::Up).await;
    wait_state(&b, "fs-a", NodeState::Up).await;
    // Placement waits for the owner's view of the node to be shared.
    crate::pool::eventually("the owner's view of fs-a", || async {
        let node: Value = client()
            .get(a.url("/v1/nodes/fs-a"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (node["owner_health"] == "up").then_some(())
    })
    .await;
    put_user(&a, "bob", "bob", true).await;
    let bob = token(&a, "bob").await;
    let (mut on_b, _) = Channel::hello(&b, &bob, None).await;

    // Presence through replica A shows bob's channel on B.
    let presence = crate::pool::eventually("bob online through A", || async {
        let presence: Value = client()
            .get(a.url("/v1/presence"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (presence["users"].as_array()?.len() == 1).then_some(presence)
    })
    .await;
    assert_eq!(presence["users"][0]["user_id"], "bob");

    invite(&a, "shared", "bob", "x").await;
    let invited = on_b.next_of("invited").await;
    assert_eq!(
        (invited["seq"].as_u64(), invited["conference"].as_str()),
        (Some(1), Some("shared"))
    );
    drop(on_b);
    invite(&b, "shared2", "bob", "x").await;
    let (mut on_a, welcome) = Channel::hello(&a, &bob, Some(1)).await;
    assert_eq!(welcome["resumed"], true);
    assert_eq!(on_a.next().await["conference"], "shared2");

    // Uninvited through the replica that does not own the node: the owner, which routes the
    // members' news, stops telling dan within its 2 s audience refresh.
    let owner_is_a = crate::pool::node(&a, "fs-a").await.owned_here;
    let (owner, other) = if owner_is_a { (&a, &b) } else { (&b, &a) };
    for user in ["ann", "dan"] {
        put_user(&a, user, user, true).await;
    }
    let (mut ann, _) = Channel::hello(owner, &token(owner, "ann").await, None).await;
    let (mut dan, _) = Channel::hello(other, &token(other, "dan").await, None).await;
    let mut ann_call = None;
    for (user, channel) in [("ann", &mut ann), ("dan", &mut dan)] {
        invite(other, "shared3", user, "x").await;
        let invited = channel.next_of("invited").await;
        let call = join_invited(&sim, &invited, "shared3", "default").await;
        if user == "ann" {
            ann_call = Some(call);
        }
    }
    for _ in 0..2 {
        dan.next_of("member_joined").await;
    }
    assert_eq!(
        delete(other, "/v1/conferences/shared3/invitations/dan")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let left = ann.next_of("member_left").await;
    assert_eq!(left["member"]["user_id"], "dan");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let ann_call = ann_call.expect("ann's call");
    sim.start_talking(&ann_call.uuid).await.expect("talk");
    assert_eq!(ann.next_of("talking").await["user_id"], "ann");
    sim.hangup(&ann_call.uuid).await.expect("hang up");
    assert_eq!(ann.next_of("member_left").await["member"]["user_id"], "ann");
    let heard: Vec<Value> = dan
        .pending(Duration::from_millis(500))
        .await
        .into_iter()
        // His own news (answered on joining, cancelled, his leave) is all he may get.
        .filter(|f| {
            f["type"] != "invitation_cancelled"
                && !(f["type"] == "member_left" && f["member"]["user_id"] == "dan")
        })
        .collect();
    assert!(
        heard.is_empty(),
        "dan heard after his uninvitation: {heard:?}"
    );
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}

/// Expired session tokens are dropped, live ones kept, on both backends. (On the store alone:
/// a running app's housekeeping would race the count.)
#[tokio::test]
async fn expired_session_tokens_are_deleted() {
    for db in test_dbs().await {
        let store = &db.store;
        store
            .upsert_user(&switchyard::store::UpsertUser {
                id: "ann".to_owned(),
                display_name: "Ann".to_owned(),
                enabled: true,
            })
            .await
            .expect("user");
        let now = chrono::Utc::now();
        for (hash, expires_at) in [
            ("old", now - chrono::Duration::days(2)),
            ("live", now + chrono::Duration::hours(1)),
        ] {
            store
                .insert_session_token(hash, "ann", expires_at)
                .await
                .expect("insert");
        }
        let deleted = store
            .delete_expired_session_tokens("ann", now)
            .await
            .expect("delete");
        assert_eq!(deleted, 1, "{:?}", db.backend());
        assert!(
            store
                .session_token_owner("old")
                .await
                .expect("get")
                .is_none()
        );
        assert!(
            store
                .session_token_owner("live")
                .await
                .expect("get")
                .is_some()
        );
    }
}
