//! The tokio client against a tiny scripted ESL server on 127.0.0.1:0 (replayed capture bytes
//! and scripted replies; no simulator).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use esl::client::DisconnectReason;
use esl::conn::{ClientEvent, ConnectConfig, ConnectError, EslClient, Events, RequestError};
use esl::{Event, EventFormat, FrameError, Request, RequestDecoder, serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep, timeout};

// ---------------------------------------------------------------------------------------------
// The scripted server.

enum Step {
    Send(Bytes),
    Sleep(Duration),
    /// Close the connection.
    Close,
    /// Keep the connection open, read and ignore everything.
    Silence,
}

type Reply = dyn Fn(usize, &Request) -> Vec<Step> + Send + Sync;
type Greet = dyn Fn(usize) -> Vec<Step> + Send + Sync;

struct Server {
    addr: String,
    /// (connection number, command line) of every command received.
    log: Arc<Mutex<Vec<(usize, String)>>>,
    accepted: Arc<AtomicUsize>,
    /// Connections that ended (EOF from the client, or closed by the script).
    ended: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(reply: impl Fn(usize, &Request) -> Vec<Step> + Send + Sync + 'static) -> Server {
        Server::start_with(Arc::new(|_| vec![send(AUTH_REQUEST)]), Arc::new(reply)).await
    }

    async fn start_with(greet: Arc<Greet>, reply: Arc<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (log2, accepted2, ended2) = (log.clone(), accepted.clone(), ended.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let conn = accepted2.fetch_add(1, Ordering::SeqCst);
                let (greet, reply, log, ended) =
                    (greet.clone(), reply.clone(), log2.clone(), ended2.clone());
                tokio::spawn(async move {
                    connection(socket, conn, greet, reply, log).await;
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Server {
            addr,
            log,
            accepted,
            ended,
            task,
        }
    }

    fn commands(&self, conn: usize) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, line)| line.clone())
            .collect()
    }

    fn config(&self) -> ConnectConfig {
        ConnectConfig {
            node: Some("test-node".into()),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(3),
            job_timeout: Duration::from_secs(2),
            dead_after: Duration::from_secs(5),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..ConnectConfig::new(self.addr.clone(), "ClueCon")
        }
    }
}

async fn connection(
    mut socket: TcpStream,
    conn: usize,
    greet: Arc<Greet>,
    reply: Arc<Reply>,
    log: Arc<Mutex<Vec<(usize, String)>>>,
) {
    if !perform(&mut socket, greet(conn)).await {
        return;
    }
    let mut decoder = RequestDecoder::default();
    let mut buf = BytesMut::new();
    loop {
        while let Ok(Some(request)) = decoder.decode(&mut buf) {
            log.lock().unwrap().push((conn, request.line.clone()));
            if !perform(&mut socket, reply(conn, &request)).await {
                return;
            }
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Runs the steps; false when the connection is over.
async fn perform(socket: &mut TcpStream, steps: Vec<Step>) -> bool {
    for step in steps {
        match step {
            Step::Send(bytes) => {
                if socket.write_all(&bytes).await.is_err() {
                    return false;
                }
            }
            Step::Sleep(d) => sleep(d).await,
            Step::Close => return false,
            Step::Silence => {
                let mut sink = [0u8; 1024];
                while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                return false;
            }
        }
    }
    true
}

const AUTH_REQUEST: &[u8] = b"Content-Type: auth/request\n\n";

fn send(bytes: &[u8]) -> Step {
    Step::Send(Bytes::copy_from_slice(bytes))
}

fn reply(text: &str) -> Step {
    reply_with(text, &[])
}

fn reply_with(text: &str, extra: &[(&str, &str)]) -> Step {
    let mut out = BytesMut::new();
    serialize::command_reply(&mut out, text, extra);
    Step::Send(out.freeze())
}

fn api_response(body: &str) -> Step {
    let mut out = BytesMut::new();
    serialize::api_response(&mut out, body.as_bytes());
    Step::Send(out.freeze())
}

fn event(headers: &[(&str, &str)], body: Option<&str>) -> Step {
    let event = Event::new(
        headers.iter().copied().collect(),
        body.map(|b| Bytes::copy_from_slice(b.as_bytes())),
    );
    let mut out = BytesMut::new();
    serialize::event_frame(&mut out, EventFormat::Plain, &event);
    Step::Send(out.freeze())
}

fn goodbye() -> Step {
    let mut out = BytesMut::new();
    serialize::disconnect_notice(&mut out, serialize::GOODBYE);
    Step::Send(out.freeze())
}

const CORE_UUID: &str = "60521194-8708-47ec-8892-6f189eab12ad";

/// How FreeSWITCH answers (password `ClueCon`); `api X` answers with the body `X`.
fn standard(request: &Request) -> Vec<Step> {
    let line = request.line.as_str();
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "auth" if rest == "ClueCon" => vec![reply("+OK accepted")],
        "auth" => vec![reply("-ERR invalid"), goodbye(), Step::Close],
        "event" => vec![reply("+OK event listener enabled plain")],
        "nixevent" => vec![reply("+OK events nixed")],
        "filter" if rest.starts_with("delete") => vec![reply("+OK filter deleted.")],
        "filter" => vec![reply("+OK filter added.")],
        "api" => vec![api_response(rest)],
        "bgapi" => {
            let job = request.headers.get("Job-UUID").unwrap_or("none").to_owned();
            vec![
                reply_with(&format!("+OK Job-UUID: {job}"), &[("Job-UUID", &job)]),
                event(
                    &[
                        ("Event-Name", "BACKGROUND_JOB"),
                        ("Core-UUID", CORE_UUID),
                        ("Job-UUID", &job),
                        ("Job-Command", rest),
                    ],
                    Some(&format!("+OK {rest}\n")),
                ),
            ]
        }
        "exit" => vec![reply("+OK bye"), goodbye(), Step::Close],
        _ => vec![reply("-ERR command not found")],
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/freeswitch")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn next(events: &mut Events) -> ClientEvent {
    timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .expect("the client is running")
}

async fn expect_connected(events: &mut Events, reconnect: bool) {
    match next(events).await {
        ClientEvent::Connected { reconnect: r, .. } => assert_eq!(r, reconnect),
        other => panic!("expected Connected, got {other:?}"),
    }
}

async fn expect_disconnected(events: &mut Events) -> DisconnectReason {
    match next(events).await {
        ClientEvent::Disconnected { reason } => reason,
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn connect_authenticates_and_subscribes() {
    let server = Server::start(|_, r| standard(r)).await;
    let config = ConnectConfig {
        events: vec![
            "CHANNEL_CREATE".into(),
            "CUSTOM conference::maintenance".into(),
        ],
        ..server.config()
    };
    assert!(
        !format!("{config:?}").contains("ClueCon"),
        "Debug shows the password"
    );
    let (client, mut events) = EslClient::connect(config).await.unwrap();
    assert!(client.is_connected());
    expect_connected(&mut events, false).await;
    assert_eq!(
        server.commands(0),
        [
            "auth ClueCon",
            "event plain HEARTBEAT BACKGROUND_JOB CHANNEL_CREATE CUSTOM conference::maintenance",
        ]
    );
    assert_eq!(&client.api("status").await.unwrap()[..], b"status");
}

#[tokio::test]
async fn wrong_password_fails_fast_with_the_captured_bytes() {
    // The server replays what FreeSWITCH sent to `auth WrongPassword`.
    let capture = fixture("esl-auth-bad.txt");
    let after_greeting = Bytes::copy_from_slice(&capture[AUTH_REQUEST.len()..]);
    assert!(capture.starts_with(AUTH_REQUEST));
    let server =
        Server::start(move |_, _| vec![Step::Send(after_greeting.clone()), Step::Close]).await;
    let started = Instant::now();
    let config = ConnectConfig {
        password: "WrongPassword".into(),
        ..server.config()
    };
    let err = EslClient::connect(config).await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::AuthFailed(t) if t == "-ERR invalid"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.commands(0), ["auth WrongPassword"]);
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        1,
        "connect() does not retry"
    );
}

#[tokio::test]
async fn connect_errors_are_typed() {
    // Nobody listens.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = EslClient::connect(ConnectConfig::new(addr, "ClueCon"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Refused(_)), "{err:?}");

    // Accepts but never says auth/request: the handshake times out.
    let server = Server::start_with(
        Arc::new(|_| vec![Step::Silence]),
        Arc::new(|_, r| standard(r)),
    )
    .await;
    let started = Instant::now();
    let config = ConnectConfig {
        connect_timeout: Duration::from_millis(300),
        ..server.config()
    };
    let err = EslClient::connect(config).await.unwrap_err();
    assert!(matches!(err, ConnectError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // ACL refusal.
    let mut rude = BytesMut::new();
    serialize::rude_rejection(&mut rude);
    serialize::disconnect_notice(&mut rude, serialize::GOODBYE);
    let rude = rude.freeze();
    let server = Server::start_with(
        Arc::new(move |_| vec![Step::Send(rude.clone()), Step::Close]),
        Arc::new(|_, r| standard(r)),
    )
    .await;
    let err = EslClient::connect(server.config()).await.unwrap_err();
    assert!(
        matches!(&err, ConnectError::Rejected(t) if t.starts_with("Access Denied")),
        "{err:?}"
    );

    // A refused subscription from the config.
    let server = Server::start(|_, r| {
        if r.line.starts_with("filter") {
            vec![reply("-ERR invalid syntax")]
        } else {
            standard(r)
        }
    })
    .await;
    let config = ConnectConfig {
        filters: vec![("X".into(), "y".into())],
        ..server.config()
    };
    let err = EslClient::connect(config).await.unwrap_err();
    assert!(matches!(err, ConnectError::Subscribe { .. }), "{err:?}");
}

#[tokio::test]
async fn fifty_concurrent_api_calls_get_their_own_replies_in_order() {
    let server = Server::start(|_, r| {
        // Vary the timing so replies do not all come back in one read.
        let n: u64 = r.line.trim_start_matches("api ").parse().unwrap_or(0);
        let mut steps = vec![];
        if n.is_multiple_of(7) {
            steps.push(Step::Sleep(Duration::from_millis(3)));
        }
        steps.extend(standard(r));
        steps
    })
    .await;
    let (client, _events) = EslClient::connect(server.config()).await.unwrap();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { (i, client.api(&i.to_string()).await) })
        })
        .collect();
    for call in calls {
        let (i, result) = call.await.unwrap();
        assert_eq!(result.unwrap(), Bytes::from(i.to_string()), "caller {i}");
    }
    let sent: Vec<String> = server
        .commands(0)
        .into_iter()
        .filter(|c| c.starts_with("api"))
        .collect();
    assert_eq!(sent.len(), 50);
}

#[tokio::test]
async fn bgapi_waits_for_its_background_job() {
    let server = Server::start(|_, r| {
        let mut steps = vec![];
        if r.line.starts_with("bgapi") {
            // Someone else's job result comes first: not ours, and not asked for as an event.
            steps.push(event(
                &[
                    ("Event-Name", "BACKGROUND_JOB"),
                    ("Job-UUID", "00000000-0000-4000-8000-000000000000"),
                ],
                Some("+OK other\n"),
            ));
        }
        steps.extend(standard(r));
        steps
    })
    .await;
    let (client, mut events) = EslClient::connect(server.config()).await.unwrap();
    expect_connected(&mut events, false).await;
    let body = client.bgapi("conference list").await.unwrap();
    assert_eq!(&body[..], b"+OK conference list\n");
    let line = server.commands(0).pop().unwrap();
    assert_eq!(line, "bgapi conference list");
    assert!(
        events.try_recv().is_none(),
        "BACKGROUND_JOB leaked into the event stream"
    );
}

#[tokio::test]
async fn events_between_a_command_and_its_reply() {
    let server = Server::start(|_, r| {
        if r.line == "api slow" {
            let mut steps: Vec<Step> = (0..3)
                .map(|i| {
                    event(
                        &[
                            ("Event-Name", "CHANNEL_CREATE"),
                            ("Core-UUID", CORE_UUID),
                            ("Event-Sequence", &i.to_string()),
                        ],
                        None,
                    )
                })
                .collect();
            steps.push(event(
                &[("Event-Name", "HEARTBEAT"), ("Core-UUID", CORE_UUID)],
                None,
            ));
            steps.extend(standard(r));
            steps
        } else {
            standard(r)
        }
    })
    .await;
    let config = ConnectConfig {
        events: vec!["CHANNEL_CREATE".into()],
        ..server.config()
    };
    let (client, mut events) = EslClient::connect(config).await.unwrap();
    expect_connected(&mut events, false).await;
    assert_eq!(&client.api("slow").await.unwrap()[..], b"slow");
    for i in 0..3u64 {
        match next(&mut events).await {
            ClientEvent::Event(e) => {
                assert_eq!(e.event_name(), Some("CHANNEL_CREATE"));
                assert_eq!(e.sequence(), Some(i));
            }
            other => panic!("{other:?}"),
        }
    }
    // The HEARTBEAT keeps the connection alive but was not asked for.
    assert!(events.try_recv().is_none());
}

#[tokio::test]
async fn reconnects_and_replays_the_subscription() {
    let server = Server::start(|conn, r| {
        if conn == 0 && r.line == "api drop" {
            vec![Step::Close]
        } else {
            standard(r)
        }
    })
    .await;
    let config = ConnectConfig {
        events: vec!["CHANNEL_CREATE".into()],
        filters: vec![("Unique-ID".into(), "abc".into())],
        ..server.config()
    };
    let (client, mut events) = EslClient::spawn(config);
    expect_connected(&mut events, false).await;
    client.filter("Unique-ID", "def").await.unwrap();
    client
        .subscribe(EventFormat::Plain, ["CHANNEL_ANSWER"])
        .await
        .unwrap();
    assert_eq!(client.api("drop").await, Err(RequestError::Disconnected));
    assert_eq!(
        expect_disconnected(&mut events).await,
        DisconnectReason::Closed
    );
    expect_connected(&mut events, true).await;
    assert!(client.is_connected());
    assert_eq!(
        server.commands(1),
        [
            "auth ClueCon",
            "event plain HEARTBEAT BACKGROUND_JOB CHANNEL_ANSWER CHANNEL_CREATE",
            "filter Event-Name HEARTBEAT",
            "filter Event-Name BACKGROUND_JOB",
            "filter Unique-ID abc",
            "filter Unique-ID def",
        ]
    );
    assert_eq!(&client.api("again").await.unwrap()[..], b"again");
}

#[tokio::test]
async fn dead_peer_is_detected_and_replaced() {
    let dead_after = Duration::from_millis(300);
    let server = Server::start(move |conn, r| {
        let mut steps = standard(r);
        if conn == 0 && r.line.starts_with("event") {
            // Authenticated and subscribed, then nothing, not even a HEARTBEAT.
            steps.push(Step::Silence);
        }
        steps
    })
    .await;
    let config = ConnectConfig {
        dead_after,
        ..server.config()
    };
    let (client, mut events) = EslClient::spawn(config);
    expect_connected(&mut events, false).await;
    let connected_at = Instant::now();
    let reason = expect_disconnected(&mut events).await;
    let elapsed = connected_at.elapsed();
    assert_eq!(reason, DisconnectReason::DeadPeer(dead_after));
    assert!(
        elapsed >= dead_after - Duration::from_millis(20),
        "{elapsed:?}"
    );
    assert!(elapsed < dead_after + Duration::from_secs(3), "{elapsed:?}");
    expect_connected(&mut events, true).await;
    assert_eq!(&client.api("alive").await.unwrap()[..], b"alive");
}

#[tokio::test]
async fn requests_fail_fast_while_disconnected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let config = ConnectConfig {
        backoff_min: Duration::from_secs(30),
        backoff_max: Duration::from_secs(60),
        ..ConnectConfig::new(addr, "ClueCon")
    };
    let (client, _events) = EslClient::spawn(config);
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(client.api("status").await, Err(RequestError::NotConnected));
        assert_eq!(
            client.bgapi("status").await,
            Err(RequestError::NotConnected)
        );
        assert_eq!(
            client.filter("A", "b").await,
            Err(RequestError::NotConnected)
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert!(matches!(
        client.api("status\r\napi fsctl shutdown").await,
        Err(RequestError::InvalidCommand(_))
    ));
    assert!(!client.is_connected());
    client.exit().await.unwrap();
    assert_eq!(client.api("status").await, Err(RequestError::Closed));
}

#[tokio::test]
async fn command_injection_is_refused_while_connected() {
    let server = Server::start(|_, r| standard(r)).await;
    let (client, _events) = EslClient::connect(server.config()).await.unwrap();
    for bad in ["status\n\nexit", "status\rexit"] {
        assert!(matches!(
            client.api(bad).await,
            Err(RequestError::InvalidCommand(_))
        ));
    }
    assert!(matches!(
        client.filter("Unique-ID", "x\nexit").await,
        Err(RequestError::InvalidCommand(_))
    ));
    assert_eq!(
        server.commands(0).len(),
        2,
        "nothing but auth and event was sent"
    );
}

#[tokio::test]
async fn garbage_from_the_server_is_a_decode_error_then_reconnect() {
    let server = Server::start(|conn, r| {
        if conn == 0 && r.line == "api garbage" {
            vec![send(
                b"Content-Type: api/response\nContent-Length: twelve\n\n",
            )]
        } else {
            standard(r)
        }
    })
    .await;
    let (client, mut events) = EslClient::spawn(server.config());
    expect_connected(&mut events, false).await;
    assert_eq!(client.api("garbage").await, Err(RequestError::Disconnected));
    let reason = expect_disconnected(&mut events).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::Decode(FrameError::BadContentLength(_))
        ),
        "{reason:?}"
    );
    expect_connected(&mut events, true).await;
}

#[tokio::test]
async fn a_timed_out_request_does_not_shift_later_replies() {
    let server = Server::start(|_, r| match r.line.as_str() {
        "api slow" => vec![],
        "api fast" => vec![api_response("slow"), api_response("fast")],
        _ => standard(r),
    })
    .await;
    let config = ConnectConfig {
        request_timeout: Duration::from_millis(200),
        ..server.config()
    };
    let (client, _events) = EslClient::connect(config).await.unwrap();
    let started = Instant::now();
    assert_eq!(client.api("slow").await, Err(RequestError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(&client.api("fast").await.unwrap()[..], b"fast");
    assert_eq!(&client.api("next").await.unwrap()[..], b"next");
}

#[tokio::test]
async fn a_slow_consumer_gets_every_event() {
    const COUNT: u64 = 2000;
    let server = Server::start(|_, r| {
        if r.line == "api burst" {
            let mut steps: Vec<Step> = (0..COUNT)
                .map(|i| {
                    event(
                        &[
                            ("Event-Name", "CHANNEL_CREATE"),
                            ("Event-Sequence", &i.to_string()),
                        ],
                        None,
                    )
                })
                .collect();
            steps.extend(standard(r));
            steps
        } else {
            standard(r)
        }
    })
    .await;
    let config = ConnectConfig {
        events: vec!["CHANNEL_CREATE".into()],
        event_capacity: 4,
        dead_after: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        ..server.config()
    };
    let (client, mut events) = EslClient::connect(config).await.unwrap();
    expect_connected(&mut events, false).await;
    let burst = tokio::spawn({
        let client = client.clone();
        async move { client.api("burst").await }
    });
    // Not reading for longer than dead_after: paused reads must not count as a dead peer.
    sleep(Duration::from_millis(1500)).await;
    for i in 0..COUNT {
        match next(&mut events).await {
            ClientEvent::Event(e) => assert_eq!(e.sequence(), Some(i)),
            other => panic!("event {i}: {other:?}"),
        }
        if i % 500 == 0 {
            sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(&burst.await.unwrap().unwrap()[..], b"burst");
    assert!(events.try_recv().is_none());
}

#[tokio::test]
async fn exit_stops_the_client() {
    let server = Server::start(|_, r| standard(r)).await;
    let (client, mut events) = EslClient::connect(server.config()).await.unwrap();
    expect_connected(&mut events, false).await;
    client.exit().await.unwrap();
    assert_eq!(
        expect_disconnected(&mut events).await,
        DisconnectReason::Exit
    );
    assert!(
        timeout(Duration::from_secs(2), events.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(client.api("status").await, Err(RequestError::Closed));
    assert_eq!(server.commands(0).last().map(String::as_str), Some("exit"));
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        1,
        "no reconnect after exit"
    );
}

#[tokio::test]
async fn events_is_a_stream_and_dropping_everything_stops_the_task() {
    use futures_util::StreamExt;
    let server = Server::start(|_, r| standard(r)).await;
    let (client, mut events) = EslClient::connect(server.config()).await.unwrap();
    let first = timeout(Duration::from_secs(2), events.next())
        .await
        .unwrap();
    assert!(matches!(
        first,
        Some(ClientEvent::Connected {
            reconnect: false,
            ..
        })
    ));
    drop(client);
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.ended.load(Ordering::SeqCst),
        0,
        "Events alone keep it running"
    );
    drop(events);
    // The task closes the connection: the server sees EOF and does not get a reconnect.
    wait_for("EOF at the server", || {
        server.ended.load(Ordering::SeqCst) == 1
    })
    .await;
    sleep(Duration::from_millis(100)).await;
    assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn backoff_grows_between_failed_attempts() {
    // Every attempt is refused at auth: the client keeps retrying with growing delays.
    let server = Server::start(|_, r| {
        if r.line.starts_with("auth") {
            vec![reply("-ERR invalid"), goodbye(), Step::Close]
        } else {
            standard(r)
        }
    })
    .await;
    let config = ConnectConfig {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(80),
        ..server.config()
    };
    let (client, _events) = EslClient::spawn(config);
    let started = Instant::now();
    wait_for("6 attempts", || server.accepted.load(Ordering::SeqCst) >= 6).await;
    // Delays are at least backoff_min each and at most 10+20+40+80+80 ms in total.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(client.api("x").await, Err(RequestError::NotConnected));
}
