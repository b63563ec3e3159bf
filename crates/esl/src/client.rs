//! The ESL client as a sans-IO state machine: no sockets, no clock, no tasks.
//!
//! # Run loop
//!
//! The caller owns the transport and the clock. It feeds what happens into
//! [`Client::handle_input`] and then drains [`Client::poll_output`] until it returns
//! [`Output::Timeout`] (the next instant at which it must call back with [`Input::Timeout`]) or
//! `None` (no transport: nothing will happen until the next [`Input::Connected`]):
//!
//! ```text
//! client.handle_input(Input::Connected(now));            // a TCP connection is up
//! loop {
//!     while let Some(out) = client.poll_output() {
//!         match out {
//!             Output::Transmit(bytes) => write bytes to the socket,
//!             Output::Timeout(at)     => { arm a timer for `at`; break }
//!             Output::Disconnected(_) => close the socket (then poll_output gives None),
//!             other                   => hand replies / events to their owners,
//!         }
//!     }
//!     wait for: socket bytes  -> handle_input(Input::Receive(now, &bytes))
//!               socket EOF    -> handle_input(Input::Disconnected(DisconnectReason::Closed))
//!               the timer     -> handle_input(Input::Timeout(now))
//!               a command     -> client.send(command, token, now)
//! }
//! ```
//!
//! # What it does
//!
//! - **Handshake.** After [`Input::Connected`] it waits for `auth/request`, sends `auth <password>`,
//!   and reports [`Output::Authenticated`] on `+OK accepted` or
//!   `Disconnected(AuthFailed)` on anything else. It then replays the desired
//!   [`Subscription`] (one `event` command, then filters) and reports [`Output::Ready`] once every
//!   replayed command is answered. The whole handshake must finish within
//!   [`ClientConfig::handshake_timeout`].
//! - **Replies are FIFO.** FreeSWITCH answers the commands of one connection strictly in order,
//!   one `command/reply` or `api/response` each; events may come in between. Every command sent
//!   takes a slot in a queue and the next reply frame fills the oldest slot. A request that times
//!   out ([`ClientConfig::request_timeout`]) is answered with [`ReplyError::Timeout`] but keeps
//!   its slot, and its late reply is dropped there, so later replies still reach their owners.
//! - **bgapi.** Each `bgapi` carries a `Job-UUID` we choose (UUID v4). The `+OK Job-UUID` reply
//!   only acknowledges it; the result is the body of the `BACKGROUND_JOB` event with that UUID,
//!   reported as [`Output::JobResult`] (not as an [`Output::Event`]) within
//!   [`ClientConfig::job_timeout`] of sending.
//! - **Subscriptions.** The client always subscribes `HEARTBEAT` and `BACKGROUND_JOB` besides
//!   what the user asked for, keeps those two out of the event stream unless the user asked for
//!   them, and when filters are in use adds `Event-Name` filters for them too (any FreeSWITCH
//!   filter drops every event it does not match, heartbeats included). Subscription commands sent
//!   with [`Client::send`] update the desired [`Subscription`] when FreeSWITCH accepts them; it
//!   survives reconnects and is replayed on each new connection.
//! - **Liveness.** No byte received for [`ClientConfig::dead_after`] (FreeSWITCH sends a
//!   HEARTBEAT every 20 s) ends the connection with [`DisconnectReason::DeadPeer`]. A caller that
//!   stops reading the socket on purpose (backpressure) calls [`Client::touch`] so that time does
//!   not count against the peer.
//! - **Disconnects.** A disconnect notice, an ACL rejection, undecodable bytes, a reply nobody
//!   waits for, a dead peer or a closed socket all end the connection with one
//!   [`Output::Disconnected`]; every pending request and job is answered with
//!   [`ReplyError::Disconnected`] first. The client can then take a new [`Input::Connected`].
//!
//! Reconnect delays are computed by [`Backoff`] (exponential, full jitter).

mod backoff;
mod subscription;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub use backoff::Backoff;
pub use subscription::{ALWAYS_SUBSCRIBED, Subscription};

use crate::command::{Command, CommandError};
use crate::event::{Event, EventError};
use crate::frame::{Frame, FrameDecoder, FrameError, Limits};
use crate::message::{Message, Reply};

/// Identifies a request; chosen by the caller and handed back with its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// Settings of the state machine.
#[derive(Clone)]
pub struct ClientConfig {
    /// The `auth` password (FreeSWITCH's default is `ClueCon`).
    pub password: String,
    /// The subscription to establish on every connection.
    pub subscription: Subscription,
    /// How long a command may wait for its reply.
    pub request_timeout: Duration,
    /// How long a bgapi may wait for its `BACKGROUND_JOB`, counted from sending.
    pub job_timeout: Duration,
    /// From [`Input::Connected`] to [`Output::Ready`].
    pub handshake_timeout: Duration,
    /// No byte from the peer for this long ends the connection.
    pub dead_after: Duration,
    /// Frame size limits for the decoder.
    pub limits: Limits,
}

impl ClientConfig {
    /// Defaults: request 10 s, job 120 s, handshake 10 s, dead after 45 s (two HEARTBEATs and
    /// some), plain events, no user subscription.
    pub fn new(password: impl Into<String>) -> Self {
        ClientConfig {
            password: password.into(),
            subscription: Subscription::default(),
            request_timeout: Duration::from_secs(10),
            job_timeout: Duration::from_secs(120),
            handshake_timeout: Duration::from_secs(10),
            dead_after: Duration::from_secs(45),
            limits: Limits::default(),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("password", &"<redacted>")
            .field("subscription", &self.subscription)
            .field("request_timeout", &self.request_timeout)
            .field("job_timeout", &self.job_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("dead_after", &self.dead_after)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Something that happened to the transport.
#[derive(Debug)]
pub enum Input<'a> {
    /// A new connection is up; the server will send `auth/request`.
    Connected(Instant),
    /// Bytes read from the connection.
    Receive(Instant, &'a [u8]),
    /// The instant of the last [`Output::Timeout`] (or later) has come.
    Timeout(Instant),
    /// The transport ended ([`DisconnectReason::Closed`] on EOF, [`DisconnectReason::Io`]).
    Disconnected(DisconnectReason),
}

/// What the caller must do or deliver.
#[derive(Debug)]
pub enum Output {
    /// Write these bytes to the connection.
    Transmit(Bytes),
    /// `auth` was accepted; the subscription replay has been sent.
    Authenticated,
    /// The subscription replay was answered. `rejected` lists replayed commands FreeSWITCH refused
    /// (command line, reply text); normally empty.
    Ready { rejected: Vec<(String, String)> },
    /// The reply to [`Client::send`] for `token`.
    Reply {
        token: Token,
        result: Result<Response, ReplyError>,
    },
    /// The result of a bgapi: the `BACKGROUND_JOB` body.
    JobResult {
        token: Token,
        result: Result<Bytes, ReplyError>,
    },
    /// An event the user subscribed to.
    Event(Event),
    /// An event frame whose body could not be parsed; it was skipped, the connection goes on.
    EventError(EventError),
    /// The connection is over (close the socket); pending requests were answered before this.
    Disconnected(DisconnectReason),
    /// Call [`Client::handle_input`] with [`Input::Timeout`] at this instant. Returned when there
    /// is nothing else to do.
    Timeout(Instant),
}

/// A reply frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `api/response`: the raw output (FreeSWITCH signals failure with a leading `-ERR`).
    Api(Bytes),
    /// `command/reply`: see [`Reply::text`] / [`Reply::is_ok`].
    Command(Reply),
}

/// Why a request got no reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// No reply within the timeout (the slot stays taken until the late reply arrives).
    #[error("no reply in time")]
    Timeout,
    /// The connection ended first.
    #[error("connection lost before the reply")]
    Disconnected,
    /// A bgapi was refused (`-ERR ...` instead of `+OK Job-UUID`).
    #[error("rejected: {0}")]
    Rejected(String),
}

/// Why [`Client::send`] refused a command.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No authenticated connection.
    #[error("not connected")]
    NotConnected,
    /// The command cannot be encoded (a line break in it, or an empty argument).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// `auth` is sent by the client itself.
    #[error("auth is handled by the client")]
    Auth,
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectReason {
    /// `auth` was refused (the reply text, normally `-ERR invalid`).
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// The server sent `text/disconnect-notice` (its text).
    #[error("server disconnected: {0}")]
    Notice(String),
    /// The server's ACL refused us (`text/rude-rejection`).
    #[error("rejected by the server: {0}")]
    Rejected(String),
    /// The bytes are not ESL.
    #[error("ESL decode error: {0}")]
    Decode(FrameError),
    /// The server broke the protocol (e.g. a reply to no command).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Nothing received for this long.
    #[error("no data from the server for {0:?}")]
    DeadPeer(Duration),
    /// The handshake did not complete within this time.
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(Duration),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// We sent `exit`.
    #[error("closed after exit")]
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No transport.
    Idle,
    AwaitAuthRequest,
    AwaitAuthReply,
    /// Authenticated: commands are accepted.
    Authenticated,
}

/// How a user command changes the desired subscription once FreeSWITCH accepts it.
#[derive(Debug)]
enum Change {
    None,
    Subscribe(crate::EventFormat, Vec<String>),
    Nix(Vec<String>),
    NoEvents,
    FilterAdd(String, String),
    FilterDelete(String, Option<String>),
    FilterDeleteAll,
}

#[derive(Debug)]
enum Expect {
    Api,
    Command(Change),
    BgApi { job_uuid: String },
}

#[derive(Debug)]
enum SlotKind {
    Auth,
    /// A command the client sent on its own; `replay` ones count towards [`Output::Ready`].
    Internal {
        line: String,
        replay: bool,
    },
    User {
        token: Token,
        expect: Expect,
    },
}

#[derive(Debug)]
struct Slot {
    kind: SlotKind,
    deadline: Option<Instant>,
    /// The requester was already told "timeout"; the reply is dropped when it comes.
    expired: bool,
}

#[derive(Debug)]
struct Job {
    token: Token,
    deadline: Instant,
}

/// The sans-IO ESL client. See the [module docs](self).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    desired: Subscription,
    phase: Phase,
    decoder: FrameDecoder,
    buf: BytesMut,
    slots: VecDeque<Slot>,
    jobs: HashMap<String, Job>,
    out: VecDeque<Output>,
    last_rx: Option<Instant>,
    handshake_deadline: Option<Instant>,
    ready: bool,
    replay_pending: usize,
    replay_rejected: Vec<(String, String)>,
    core_uuid: Option<String>,
    /// The format of the last `event` command sent on this connection (FreeSWITCH switches the
    /// whole connection to it).
    wire_format: crate::EventFormat,
    /// Our `Event-Name` filters for HEARTBEAT / BACKGROUND_JOB are installed on the server.
    liveness_filters: bool,
    /// User `filter` commands sent and not yet answered.
    pending_filter_adds: usize,
    exiting: bool,
}

impl Client {
    /// A client without a connection.
    pub fn new(config: ClientConfig) -> Self {
        let desired = config.subscription.clone();
        Client {
            decoder: FrameDecoder::new(config.limits),
            wire_format: desired.format(),
            desired,
            config,
            phase: Phase::Idle,
            buf: BytesMut::new(),
            slots: VecDeque::new(),
            jobs: HashMap::new(),
            out: VecDeque::new(),
            last_rx: None,
            handshake_deadline: None,
            ready: false,
            replay_pending: 0,
            replay_rejected: Vec::new(),
            core_uuid: None,
            liveness_filters: false,
            pending_filter_adds: 0,
            exiting: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The subscription that will be replayed on the next connection.
    pub fn subscription(&self) -> &Subscription {
        &self.desired
    }

    /// True between `+OK accepted` and the end of the connection (commands are accepted).
    pub fn is_authenticated(&self) -> bool {
        self.phase == Phase::Authenticated
    }

    /// True once the subscription replay of this connection was answered.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Authenticated && self.ready
    }

    /// True while a transport is attached (from [`Input::Connected`] to the disconnect).
    pub fn is_connected(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// `Core-UUID` of the server, from the latest event of this connection (it changes when
    /// FreeSWITCH restarts). `None` until an event arrived.
    pub fn core_uuid(&self) -> Option<&str> {
        self.core_uuid.as_deref()
    }

    /// Commands sent and not yet answered (timed-out ones included: they hold their slot).
    pub fn pending_replies(&self) -> usize {
        self.slots.len()
    }

    /// Treats the peer as alive at `now`. Call it when resuming reads after pausing them for
    /// backpressure: bytes not read meanwhile are not the peer's silence.
    pub fn touch(&mut self, now: Instant) {
        if self.phase != Phase::Idle {
            self.last_rx = Some(self.last_rx.map_or(now, |t| t.max(now)));
        }
    }

    /// Feeds an input.
    pub fn handle_input(&mut self, input: Input<'_>) {
        match input {
            Input::Connected(now) => self.on_connected(now),
            Input::Receive(now, bytes) => self.on_receive(now, bytes),
            Input::Timeout(now) => self.on_timeout(now),
            Input::Disconnected(reason) => self.close(reason),
        }
    }

    /// The next output; when there is nothing else, [`Output::Timeout`] while connected and
    /// `None` without a connection.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(out) = self.out.pop_front() {
            return Some(out);
        }
        self.next_timeout().map(Output::Timeout)
    }

    /// The instant at which [`Input::Timeout`] is due, if any.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Idle {
            return None;
        }
        let mut next = self.last_rx.map(|t| t + self.config.dead_after);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        if !self.ready {
            consider(self.handshake_deadline);
        }
        for slot in self.slots.iter().filter(|s| !s.expired) {
            consider(slot.deadline);
        }
        for job in self.jobs.values() {
            consider(Some(job.deadline));
        }
        next
    }

    /// Queues a command. Its reply comes back as [`Output::Reply`] with `token`; a
    /// [`Command::BgApi`] gets an acknowledgement internally and its result as
    /// [`Output::JobResult`] (an empty `job_uuid` is replaced by a fresh UUID v4).
    ///
    /// `event`, `nixevent`, `noevents` and `filter` commands also update the desired
    /// [`Subscription`] once accepted. After `nixevent`/`noevents` the client re-subscribes
    /// HEARTBEAT and BACKGROUND_JOB on its own.
    pub fn send(&mut self, command: Command, token: Token, now: Instant) -> Result<(), SendError> {
        let command = match command {
            Command::BgApi { command, job_uuid } if job_uuid.is_empty() => Command::BgApi {
                command,
                job_uuid: uuid::Uuid::new_v4().to_string(),
            },
            other => other,
        };
        let bytes = command.to_bytes()?;
        if matches!(command, Command::Auth { .. }) {
            return Err(SendError::Auth);
        }
        if self.phase != Phase::Authenticated {
            return Err(SendError::NotConnected);
        }
        let deadline = Some(now + self.config.request_timeout);
        let expect = match command {
            Command::Api { .. } => Expect::Api,
            Command::BgApi { job_uuid, .. } => {
                self.jobs.insert(
                    job_uuid.clone(),
                    Job {
                        token,
                        deadline: now + self.config.job_timeout,
                    },
                );
                Expect::BgApi { job_uuid }
            }
            Command::Event { format, names } => {
                self.wire_format = format;
                Expect::Command(Change::Subscribe(format, names))
            }
            Command::NixEvent { names } => Expect::Command(Change::Nix(names)),
            Command::NoEvents => Expect::Command(Change::NoEvents),
            Command::Filter { header, value } => {
                // Install the liveness filters *before* the user's first one, so no heartbeat
                // or job result is dropped in between.
                self.pending_filter_adds += 1;
                self.reconcile_liveness_filters();
                Expect::Command(Change::FilterAdd(header, value))
            }
            Command::FilterDelete { header, value } => {
                let hits_ours = header.eq_ignore_ascii_case("Event-Name")
                    && value.as_deref().is_none_or(|v| {
                        ALWAYS_SUBSCRIBED.iter().any(|a| v.eq_ignore_ascii_case(a))
                    });
                if hits_ours {
                    self.liveness_filters = false;
                }
                Expect::Command(Change::FilterDelete(header, value))
            }
            Command::FilterDeleteAll => {
                self.liveness_filters = false;
                Expect::Command(Change::FilterDeleteAll)
            }
            Command::Exit => {
                self.exiting = true;
                Expect::Command(Change::None)
            }
            Command::Auth { .. } => return Err(SendError::Auth),
        };
        let resubscribe = matches!(expect, Expect::Command(Change::Nix(_) | Change::NoEvents));
        self.out.push_back(Output::Transmit(bytes));
        self.slots.push_back(Slot {
            kind: SlotKind::User { token, expect },
            deadline,
            expired: false,
        });
        if resubscribe {
            let names = ALWAYS_SUBSCRIBED.iter().map(|s| (*s).to_owned()).collect();
            self.send_internal(
                Command::Event {
                    format: self.wire_format,
                    names,
                },
                false,
            );
        }
        Ok(())
    }

    /// Sends `bgapi <command>` with a fresh Job-UUID, which it returns.
    pub fn bgapi(
        &mut self,
        command: &str,
        token: Token,
        now: Instant,
    ) -> Result<String, SendError> {
        let job_uuid = uuid::Uuid::new_v4().to_string();
        self.send(
            Command::BgApi {
                command: command.to_owned(),
                job_uuid: job_uuid.clone(),
            },
            token,
            now,
        )?;
        Ok(job_uuid)
    }

    fn on_connected(&mut self, now: Instant) {
        if self.phase != Phase::Idle {
            self.close(DisconnectReason::Closed);
        }
        self.decoder = FrameDecoder::new(self.config.limits);
        self.buf.clear();
        self.phase = Phase::AwaitAuthRequest;
        self.last_rx = Some(now);
        self.handshake_deadline = Some(now + self.config.handshake_timeout);
        self.ready = false;
        self.replay_pending = 0;
        self.replay_rejected.clear();
        self.core_uuid = None;
        self.wire_format = self.desired.format();
        self.liveness_filters = false;
        self.pending_filter_adds = 0;
        self.exiting = false;
    }

    fn on_receive(&mut self, now: Instant, bytes: &[u8]) {
        if self.phase == Phase::Idle {
            return;
        }
        self.buf.extend_from_slice(bytes);
        self.decode_received(now);
    }

    /// For `conn`: the decode buffer, so that socket reads land in it without a copy. Append
    /// only, then call [`Client::decode_received`].
    #[cfg(feature = "tokio")]
    pub(crate) fn receive_buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Like [`Input::Receive`] for bytes already appended to the decode buffer.
    pub(crate) fn decode_received(&mut self, now: Instant) {
        if self.phase == Phase::Idle {
            self.buf.clear();
            return;
        }
        self.touch(now);
        while self.phase != Phase::Idle {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => self.on_frame(frame),
                Ok(None) => break,
                Err(e) => self.close(DisconnectReason::Decode(e)),
            }
        }
    }

    fn on_frame(&mut self, frame: Frame) {
        let message = match Message::try_from(frame) {
            Ok(message) => message,
            Err(e) => {
                self.out.push_back(Output::EventError(e));
                return;
            }
        };
        match message {
            Message::AuthRequest => {
                if self.phase == Phase::AwaitAuthRequest {
                    let auth = Command::Auth {
                        password: self.config.password.clone(),
                    };
                    match auth.to_bytes() {
                        Ok(bytes) => {
                            self.out.push_back(Output::Transmit(bytes));
                            self.slots.push_back(Slot {
                                kind: SlotKind::Auth,
                                deadline: None,
                                expired: false,
                            });
                            self.phase = Phase::AwaitAuthReply;
                        }
                        Err(e) => self.close(DisconnectReason::AuthFailed(e.to_string())),
                    }
                }
            }
            Message::CommandReply(reply) => self.on_reply(Response::Command(reply)),
            Message::ApiResponse(body) => self.on_reply(Response::Api(body)),
            Message::Event(event) => self.on_event(event),
            Message::Disconnect(notice) => {
                let text = String::from_utf8_lossy(&notice.text).trim_end().to_owned();
                self.close(DisconnectReason::Notice(text));
            }
            Message::RudeRejection(text) => {
                let text = String::from_utf8_lossy(&text).trim_end().to_owned();
                self.close(DisconnectReason::Rejected(text));
            }
            Message::Log(_) | Message::Other(_) => {}
        }
    }

    fn on_reply(&mut self, response: Response) {
        let Some(slot) = self.slots.pop_front() else {
            self.close(DisconnectReason::Protocol(
                "a reply arrived while no command was waiting".into(),
            ));
            return;
        };
        match slot.kind {
            SlotKind::Auth => match response {
                Response::Command(reply) if reply.is_ok() => {
                    self.phase = Phase::Authenticated;
                    self.out.push_back(Output::Authenticated);
                    self.replay();
                }
                Response::Command(reply) => {
                    self.close(DisconnectReason::AuthFailed(reply.text().to_owned()));
                }
                Response::Api(_) => {
                    self.close(DisconnectReason::Protocol("api/response to auth".into()));
                }
            },
            SlotKind::Internal { line, replay } => {
                if replay {
                    if let Some(text) = refusal(&response) {
                        self.replay_rejected.push((line, text));
                    }
                    self.replay_pending = self.replay_pending.saturating_sub(1);
                    self.maybe_ready();
                }
            }
            SlotKind::User { token, expect } => {
                self.on_user_reply(token, expect, slot.expired, response);
            }
        }
    }

    fn on_user_reply(&mut self, token: Token, expect: Expect, expired: bool, response: Response) {
        match expect {
            Expect::Api => {
                if !expired {
                    self.out.push_back(Output::Reply {
                        token,
                        result: Ok(response),
                    });
                }
            }
            Expect::Command(change) => {
                let filter_change = matches!(
                    change,
                    Change::FilterAdd(..) | Change::FilterDelete(..) | Change::FilterDeleteAll
                );
                if matches!(change, Change::FilterAdd(..)) {
                    self.pending_filter_adds = self.pending_filter_adds.saturating_sub(1);
                }
                if refusal(&response).is_none() {
                    // Applied even when the requester gave up: the server state changed anyway.
                    self.apply(change);
                }
                if filter_change {
                    self.reconcile_liveness_filters();
                }
                if !expired {
                    self.out.push_back(Output::Reply {
                        token,
                        result: Ok(response),
                    });
                }
            }
            Expect::BgApi { job_uuid } => match response {
                Response::Command(reply) if reply.is_ok() => {
                    // FreeSWITCH echoes our Job-UUID; should it pick another, follow it.
                    if let Some(theirs) = reply.job_uuid().filter(|t| *t != job_uuid)
                        && let Some(job) = self.jobs.remove(&job_uuid)
                    {
                        self.jobs.insert(theirs.to_owned(), job);
                    }
                }
                other => {
                    let text = refusal(&other).unwrap_or_else(|| "unexpected api/response".into());
                    if let Some(job) = self.jobs.remove(&job_uuid) {
                        self.out.push_back(Output::JobResult {
                            token: job.token,
                            result: Err(ReplyError::Rejected(text)),
                        });
                    }
                }
            },
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::None => {}
            Change::Subscribe(format, names) => {
                self.desired.set_format(format);
                self.desired.add_events(names);
            }
            Change::Nix(names) => self.desired.remove_events(names),
            Change::NoEvents => self.desired.clear_events(),
            Change::FilterAdd(header, value) => self.desired.add_filter(header, value),
            Change::FilterDelete(header, value) => {
                self.desired.remove_filter(&header, value.as_deref())
            }
            Change::FilterDeleteAll => self.desired.clear_filters(),
        }
    }

    fn on_event(&mut self, event: Event) {
        if self.phase != Phase::Authenticated {
            return;
        }
        if let Some(core) = event
            .core_uuid()
            .filter(|c| self.core_uuid.as_deref() != Some(*c))
        {
            self.core_uuid = Some(core.to_owned());
        }
        let is_job = event
            .event_name()
            .is_some_and(|n| n.eq_ignore_ascii_case("BACKGROUND_JOB"));
        let job = if is_job {
            event.job_uuid().and_then(|uuid| self.jobs.remove(uuid))
        } else {
            None
        };
        if let Some(job) = job {
            let body = event.body().cloned().unwrap_or_default();
            self.out.push_back(Output::JobResult {
                token: job.token,
                result: Ok(body),
            });
            return;
        }
        if self.desired.delivers(&event) {
            self.out.push_back(Output::Event(event));
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Idle {
            return;
        }
        if !self.ready && self.handshake_deadline.is_some_and(|d| now >= d) {
            self.close(DisconnectReason::HandshakeTimeout(
                self.config.handshake_timeout,
            ));
            return;
        }
        if self
            .last_rx
            .is_some_and(|t| now >= t + self.config.dead_after)
        {
            self.close(DisconnectReason::DeadPeer(self.config.dead_after));
            return;
        }
        for slot in self.slots.iter_mut() {
            if slot.expired || slot.deadline.is_none_or(|d| now < d) {
                continue;
            }
            slot.expired = true;
            if let SlotKind::User { token, expect } = &slot.kind {
                match expect {
                    Expect::BgApi { job_uuid } => {
                        if let Some(job) = self.jobs.remove(job_uuid) {
                            self.out.push_back(Output::JobResult {
                                token: job.token,
                                result: Err(ReplyError::Timeout),
                            });
                        }
                    }
                    _ => self.out.push_back(Output::Reply {
                        token: *token,
                        result: Err(ReplyError::Timeout),
                    }),
                }
            }
        }
        let expired: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, job)| now >= job.deadline)
            .map(|(uuid, _)| uuid.clone())
            .collect();
        for uuid in expired {
            if let Some(job) = self.jobs.remove(&uuid) {
                self.out.push_back(Output::JobResult {
                    token: job.token,
                    result: Err(ReplyError::Timeout),
                });
            }
        }
    }

    /// Ends the connection: answers everything pending, then reports the reason.
    fn close(&mut self, reason: DisconnectReason) {
        if self.phase == Phase::Idle {
            return;
        }
        self.phase = Phase::Idle;
        let reason = match reason {
            DisconnectReason::Notice(_) | DisconnectReason::Closed if self.exiting => {
                DisconnectReason::Exit
            }
            other => other,
        };
        for slot in std::mem::take(&mut self.slots) {
            let SlotKind::User { token, expect } = slot.kind else {
                continue;
            };
            match expect {
                Expect::BgApi { job_uuid } => {
                    if let Some(job) = self.jobs.remove(&job_uuid) {
                        self.out.push_back(Output::JobResult {
                            token: job.token,
                            result: Err(ReplyError::Disconnected),
                        });
                    }
                }
                _ if slot.expired => {}
                _ => self.out.push_back(Output::Reply {
                    token,
                    result: Err(ReplyError::Disconnected),
                }),
            }
        }
        let mut jobs: Vec<Job> = self.jobs.drain().map(|(_, job)| job).collect();
        jobs.sort_by_key(|job| job.token);
        for job in jobs {
            self.out.push_back(Output::JobResult {
                token: job.token,
                result: Err(ReplyError::Disconnected),
            });
        }
        self.buf = BytesMut::new();
        self.decoder = FrameDecoder::new(self.config.limits);
        self.last_rx = None;
        self.handshake_deadline = None;
        self.ready = false;
        self.out.push_back(Output::Disconnected(reason));
    }

    /// Sends the desired subscription on a fresh connection.
    fn replay(&mut self) {
        let mut commands = vec![self.desired.event_command()];
        if !self.desired.filters().is_empty() {
            commands.extend(liveness_filter_commands(true));
            self.liveness_filters = true;
            for (header, value) in self.desired.filters() {
                commands.push(Command::Filter {
                    header: header.clone(),
                    value: value.clone(),
                });
            }
        }
        for command in commands {
            self.send_internal(command, true);
        }
        self.maybe_ready();
    }

    fn maybe_ready(&mut self) {
        if !self.ready && self.replay_pending == 0 && self.phase == Phase::Authenticated {
            self.ready = true;
            self.out.push_back(Output::Ready {
                rejected: std::mem::take(&mut self.replay_rejected),
            });
        }
    }

    /// Adds or removes our `Event-Name` filters so that they exist exactly when user filters do.
    fn reconcile_liveness_filters(&mut self) {
        let needed = !self.desired.filters().is_empty() || self.pending_filter_adds > 0;
        if needed != self.liveness_filters {
            self.liveness_filters = needed;
            for command in liveness_filter_commands(needed) {
                self.send_internal(command, false);
            }
        }
    }

    fn send_internal(&mut self, command: Command, replay: bool) {
        let line = command_line(&command);
        match command.to_bytes() {
            Ok(bytes) => {
                self.out.push_back(Output::Transmit(bytes));
                self.slots.push_back(Slot {
                    kind: SlotKind::Internal { line, replay },
                    deadline: None,
                    expired: false,
                });
                if replay {
                    self.replay_pending += 1;
                }
            }
            Err(e) => {
                if replay {
                    self.replay_rejected.push((line, e.to_string()));
                }
            }
        }
    }
}

fn liveness_filter_commands(add: bool) -> Vec<Command> {
    ALWAYS_SUBSCRIBED
        .iter()
        .map(|name| {
            if add {
                Command::Filter {
                    header: "Event-Name".into(),
                    value: (*name).into(),
                }
            } else {
                Command::FilterDelete {
                    header: "Event-Name".into(),
                    value: Some((*name).into()),
                }
            }
        })
        .collect()
}

/// The reply text when FreeSWITCH refused a command (a command/reply not starting with `+OK`).
fn refusal(response: &Response) -> Option<String> {
    match response {
        Response::Command(reply) if !reply.is_ok() => Some(reply.text().to_owned()),
        _ => None,
    }
}

/// The first line of a command, for logs (lossy when it cannot be encoded).
fn command_line(command: &Command) -> String {
    match command.to_bytes() {
        Ok(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        Err(_) => format!("{} <unencodable>", command.verb()),
    }
}

#[cfg(test)]
mod tests;
