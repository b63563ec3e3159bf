//! The tokio ESL client: one background task per FreeSWITCH node, driving [`crate::client`].
//!
//! # Runtime behaviour
//!
//! [`EslClient::spawn`] (or [`EslClient::connect`]) starts **one task** that owns the TCP
//! connection and the sans-IO [`Client`]. The handle ([`EslClient`], cheap to clone) talks to it
//! over an mpsc channel; events come out through [`Events`]. The task loops through three states,
//! and answers requests in every one of them, so no call ever waits for a connection:
//!
//! 1. **Connecting**: TCP connect bounded by [`ConnectConfig::connect_timeout`], then the ESL
//!    handshake (`auth`, then the subscription replay: `event <format> HEARTBEAT BACKGROUND_JOB
//!    <your events>`, then the filters), bounded by the same timeout. Requests fail at once with
//!    [`RequestError::NotConnected`].
//! 2. **Connected**: one `select!` loop: socket read → `handle_input`, request → `send`, the
//!    state machine's next deadline → `Timeout`, then drain `poll_output` (writes, replies,
//!    events). [`ClientEvent::Connected`] is emitted when the subscription is in place; with
//!    `reconnect: true` it tells you this is a new connection and any state you derived from
//!    events (conference members, channels…) must be read again. Requests time out after
//!    [`ConnectConfig::request_timeout`] (bgapi after [`ConnectConfig::job_timeout`]); if the
//!    connection ends first they fail with [`RequestError::Disconnected`]. No byte for
//!    [`ConnectConfig::dead_after`] (FreeSWITCH sends a HEARTBEAT every 20 s) counts as a dead
//!    peer and ends the connection.
//! 3. **Backing off**: after a connection ends (then [`ClientEvent::Disconnected`]) or an attempt
//!    fails, the task sleeps a random delay in `[backoff_min, min(backoff_max, backoff_min·2ⁿ⁺¹)]`
//!    (exponential backoff with full jitter; `n` counts failed attempts since the last successful
//!    connection) and goes back to 1. Failed attempts that never reached "connected" (refused,
//!    timeout, wrong password) are logged but emit no event.
//!
//! # Backpressure: events are never dropped
//!
//! Events go through a bounded channel of [`ConnectConfig::event_capacity`]. When it is full the
//! task **stops reading the socket** until the consumer catches up; FreeSWITCH then queues events
//! on its side (up to 100 000 per connection, after which it drops the connection itself, which
//! we see as a disconnect, never as a silent gap). While reads are paused, replies queued behind
//! events wait too, so a slow consumer slows `api` calls down (they may time out), and the dead
//! peer check is suspended (not reading is not the peer's fault). Consume [`Events`] promptly, or
//! drop it: a dropped `Events` discards events instead of blocking.
//!
//! # Ending
//!
//! [`EslClient::exit`] sends `exit` and stops the task (no reconnect); the task also stops once
//! every [`EslClient`] clone **and** the [`Events`] are dropped. After it stopped, [`Events`]
//! yields the remaining events and then `None`, and requests fail with [`RequestError::Closed`].
//!
//! # Tracing
//!
//! The task runs in a span `esl` with the field `node` ([`ConnectConfig::node`], else the
//! address). It logs connects and reconnects (with the attempt count and the delay), auth
//! failures (error), dead peers and lost connections (warn).

mod run;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::client::{Client, ClientConfig, DisconnectReason, Response, Subscription};
use crate::command::{Command, CommandError};
use crate::event::{Event, EventFormat};
use crate::frame::Limits;
use run::{Done, Request, Runner};

/// Settings of a node connection.
#[derive(Clone)]
pub struct ConnectConfig {
    /// `host:port` of mod_event_socket (port 8021 by default on FreeSWITCH).
    pub addr: String,
    /// The event socket password.
    pub password: String,
    /// A label for logs (the `node` span field); the address when `None`.
    pub node: Option<String>,
    /// Bounds the TCP connect, and separately the ESL handshake (auth + subscription).
    pub connect_timeout: Duration,
    /// How long `api` and the other commands wait for their reply.
    pub request_timeout: Duration,
    /// How long `bgapi` waits for its `BACKGROUND_JOB`.
    pub job_timeout: Duration,
    /// No byte received (no HEARTBEAT either) for this long: the peer is dead, reconnect.
    pub dead_after: Duration,
    /// Smallest reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Event format requested with `event`.
    pub event_format: EventFormat,
    /// Event names to subscribe (after `CUSTOM`, subclasses), e.g.
    /// `["CHANNEL_CREATE", "CUSTOM", "conference::maintenance"]`. HEARTBEAT and BACKGROUND_JOB
    /// are subscribed anyway (and delivered only when listed here).
    pub events: Vec<String>,
    /// Event filters `(header, value)` installed on every connection.
    pub filters: Vec<(String, String)>,
    /// Capacity of the event channel (see "Backpressure" in the module docs). Default 256:
    /// larger queues let events go cold in cache before they are consumed (measured: 4096
    /// cost 20-30 % more CPU per event and twice the memory).
    pub event_capacity: usize,
    /// Frame size limits.
    pub limits: Limits,
}

impl ConnectConfig {
    /// Defaults: connect 5 s, request 10 s, job 120 s, dead after 45 s, backoff 200 ms..30 s,
    /// plain events, none subscribed, 256 buffered events.
    pub fn new(addr: impl Into<String>, password: impl Into<String>) -> Self {
        ConnectConfig {
            addr: addr.into(),
            password: password.into(),
            node: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            job_timeout: Duration::from_secs(120),
            dead_after: Duration::from_secs(45),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            event_format: EventFormat::Plain,
            events: Vec::new(),
            filters: Vec::new(),
            event_capacity: 256,
            limits: Limits::default(),
        }
    }

    /// The label used in logs.
    pub fn label(&self) -> &str {
        self.node.as_deref().unwrap_or(&self.addr)
    }

    /// The settings of the sans-IO state machine.
    pub fn client_config(&self) -> ClientConfig {
        let mut subscription = Subscription::new(self.event_format).with_events(&self.events);
        for (header, value) in &self.filters {
            subscription.add_filter(header.clone(), value.clone());
        }
        ClientConfig {
            password: self.password.clone(),
            subscription,
            request_timeout: self.request_timeout,
            job_timeout: self.job_timeout,
            handshake_timeout: self.connect_timeout,
            dead_after: self.dead_after,
            limits: self.limits,
        }
    }
}

impl Default for ConnectConfig {
    /// FreeSWITCH's defaults: `127.0.0.1:8021`, password `ClueCon`.
    fn default() -> Self {
        ConnectConfig::new("127.0.0.1:8021", "ClueCon")
    }
}

impl fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("addr", &self.addr)
            .field("password", &"<redacted>")
            .field("node", &self.node)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("job_timeout", &self.job_timeout)
            .field("dead_after", &self.dead_after)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("event_format", &self.event_format)
            .field("events", &self.events)
            .field("filters", &self.filters)
            .field("event_capacity", &self.event_capacity)
            .field("limits", &self.limits)
            .finish()
    }
}

/// What [`Events`] yields.
#[derive(Debug)]
pub enum ClientEvent {
    /// Authenticated and subscribed. `reconnect` is true for every connection after the first:
    /// events were missed in between, re-read whatever state you keep. `core_uuid` is the
    /// server's Core-UUID when an event already arrived during the handshake (rare; every
    /// [`Event`] carries it).
    Connected {
        core_uuid: Option<String>,
        reconnect: bool,
    },
    /// An event you subscribed to.
    Event(Event),
    /// The connection was lost; the client reconnects (unless it was told to exit).
    Disconnected { reason: DisconnectReason },
}

/// Why [`EslClient::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens at the address.
    #[error("connection refused by {0}")]
    Refused(String),
    /// TCP connect or handshake took longer than `connect_timeout`.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The password was refused (FreeSWITCH's reply text).
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// The server's ACL refused us (`text/rude-rejection`).
    #[error("rejected by the server: {0}")]
    Rejected(String),
    /// FreeSWITCH refused a subscription command from the config.
    #[error("subscription command `{command}` refused: {reply}")]
    Subscribe { command: String, reply: String },
    /// The connection ended during the handshake.
    #[error("connection lost during the handshake: {0}")]
    Handshake(DisconnectReason),
    /// Resolving or connecting failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The client task stopped before the connection was up.
    #[error("client stopped")]
    Stopped,
}

impl ConnectError {
    fn from_reason(reason: DisconnectReason) -> Self {
        match reason {
            DisconnectReason::AuthFailed(text) => ConnectError::AuthFailed(text),
            DisconnectReason::Rejected(text) => ConnectError::Rejected(text),
            DisconnectReason::HandshakeTimeout(d) => ConnectError::Timeout(d),
            other => ConnectError::Handshake(other),
        }
    }
}

/// Why a request failed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No authenticated connection right now (the client is connecting or backing off).
    #[error("not connected")]
    NotConnected,
    /// No reply within the request (or job) timeout.
    #[error("timed out")]
    Timeout,
    /// The connection ended before the reply.
    #[error("connection lost before the reply")]
    Disconnected,
    /// The command cannot be sent (CR/LF in it, or empty).
    #[error(transparent)]
    InvalidCommand(#[from] CommandError),
    /// The client does not send this command on behalf of callers (`auth`).
    #[error("{0} is handled by the client")]
    Unsupported(&'static str),
    /// FreeSWITCH answered `-ERR ...` (for `api`, only a `command/reply` refusal such as
    /// `-ERR permission denied`; api output starting with `-ERR` is returned as the body).
    #[error("refused: {0}")]
    Rejected(String),
    /// The client task has stopped (after `exit`).
    #[error("client stopped")]
    Closed,
}

/// Margin on top of the state machine's own timeouts before a caller gives up by itself.
const SAFETY_MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Shared {
    connected: AtomicBool,
    request_timeout: Duration,
    job_timeout: Duration,
}

/// A handle on a node connection; clone it freely. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct EslClient {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

/// The event stream of a node connection (a [`futures_util::Stream`] of [`ClientEvent`]).
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<ClientEvent>,
}

impl Events {
    /// The next event; `None` once the client has stopped.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        self.rx.recv().await
    }

    /// An event if one is buffered.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        self.rx.try_recv().ok()
    }
}

impl futures_util::Stream for Events {
    type Item = ClientEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl EslClient {
    /// Connects, authenticates and subscribes, or fails with a typed error (a wrong password is
    /// [`ConnectError::AuthFailed`], never a hang). Once connected, the client reconnects by
    /// itself like [`EslClient::spawn`].
    pub async fn connect(config: ConnectConfig) -> Result<(EslClient, Events), ConnectError> {
        let (first_tx, first_rx) = oneshot::channel();
        let (client, events) = start(config, Some(first_tx));
        match first_rx.await {
            Ok(Ok(())) => Ok((client, events)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectError::Stopped),
        }
    }

    /// Starts the client in the background and returns at once: it connects, and reconnects
    /// with backoff, until [`EslClient::exit`] or until every handle and the events are dropped.
    /// Watch [`ClientEvent::Connected`] to know when it is up. Must be called within a tokio
    /// runtime.
    pub fn spawn(config: ConnectConfig) -> (EslClient, Events) {
        start(config, None)
    }

    /// True while authenticated and subscribed.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Runs `api <command>` and returns the raw `api/response` body. FreeSWITCH reports most
    /// failures inside the body (`-ERR ...`): see [`crate::api_result`].
    pub async fn api(&self, command: &str) -> Result<Bytes, RequestError> {
        let command = Command::Api {
            command: command.to_owned(),
        };
        match self.call(command, self.shared.request_timeout).await? {
            Done::Response(Response::Api(body)) => Ok(body),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `bgapi <command>` and waits for its `BACKGROUND_JOB`, whose body it returns.
    pub async fn bgapi(&self, command: &str) -> Result<Bytes, RequestError> {
        let command = Command::BgApi {
            command: command.to_owned(),
            job_uuid: String::new(),
        };
        match self.call(command, self.shared.job_timeout).await? {
            Done::Job(body) => Ok(body),
            other => Err(unexpected(other)),
        }
    }

    /// `event <format> <names>`: adds to the subscription (kept across reconnects).
    pub async fn subscribe<I, S>(&self, format: EventFormat, names: I) -> Result<(), RequestError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.ok(Command::Event { format, names }).await
    }

    /// `nixevent <names>`: removes from the subscription.
    pub async fn nixevent<I, S>(&self, names: I) -> Result<(), RequestError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names = names.into_iter().map(Into::into).collect();
        self.ok(Command::NixEvent { names }).await
    }

    /// `filter <header> <value>` (kept across reconnects).
    pub async fn filter(&self, header: &str, value: &str) -> Result<(), RequestError> {
        self.ok(Command::Filter {
            header: header.to_owned(),
            value: value.to_owned(),
        })
        .await
    }

    /// `filter delete <header> [<value>]`; without a value, every filter on `header`.
    pub async fn filter_delete(
        &self,
        header: &str,
        value: Option<&str>,
    ) -> Result<(), RequestError> {
        self.ok(Command::FilterDelete {
            header: header.to_owned(),
            value: value.map(str::to_owned),
        })
        .await
    }

    /// Any other command; returns the reply frame as it came.
    pub async fn command(&self, command: Command) -> Result<Response, RequestError> {
        let limit = match command {
            Command::BgApi { .. } => self.shared.job_timeout,
            _ => self.shared.request_timeout,
        };
        match self.call(command, limit).await? {
            Done::Response(response) => Ok(response),
            Done::Job(body) => Ok(Response::Api(body)),
            Done::Exited => Ok(Response::Command(crate::message::Reply {
                headers: [("Reply-Text", "+OK bye")].into_iter().collect(),
            })),
        }
    }

    /// Sends `exit` and stops the client for good (no reconnect). Succeeds also when not
    /// connected.
    pub async fn exit(&self) -> Result<(), RequestError> {
        match self.call(Command::Exit, self.shared.request_timeout).await {
            Ok(_) | Err(RequestError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn ok(&self, command: Command) -> Result<(), RequestError> {
        match self.call(command, self.shared.request_timeout).await? {
            Done::Response(Response::Command(reply)) if reply.is_ok() => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn call(&self, command: Command, limit: Duration) -> Result<Done, RequestError> {
        let (reply, rx) = oneshot::channel();
        let exchange = async {
            self.requests
                .send(Request { command, reply })
                .await
                .map_err(|_| RequestError::Closed)?;
            rx.await.map_err(|_| RequestError::Closed)?
        };
        tokio::time::timeout(limit + SAFETY_MARGIN, exchange)
            .await
            .unwrap_or(Err(RequestError::Timeout))
    }
}

fn unexpected(done: Done) -> RequestError {
    match done {
        Done::Response(Response::Command(reply)) => RequestError::Rejected(reply.text().to_owned()),
        Done::Response(Response::Api(body)) => {
            RequestError::Rejected(String::from_utf8_lossy(&body).trim_end().to_owned())
        }
        Done::Job(_) | Done::Exited => RequestError::Rejected("unexpected reply".to_owned()),
    }
}

fn start(
    config: ConnectConfig,
    first: Option<oneshot::Sender<Result<(), ConnectError>>>,
) -> (EslClient, Events) {
    let (requests_tx, requests_rx) = mpsc::channel(256);
    let (events_tx, events_rx) = mpsc::channel(config.event_capacity.max(1));
    let shared = Arc::new(Shared {
        connected: AtomicBool::new(false),
        request_timeout: config.request_timeout,
        job_timeout: config.job_timeout,
    });
    let span = tracing::info_span!("esl", node = %config.label());
    let client = Client::new(config.client_config());
    let runner = Runner::new(
        config,
        client,
        requests_rx,
        events_tx,
        shared.clone(),
        first,
    );
    tokio::spawn(runner.run().instrument(span));
    (
        EslClient {
            requests: requests_tx,
            shared,
        },
        Events { rx: events_rx },
    )
}
