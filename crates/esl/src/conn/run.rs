//! The background task: connect, run the session loop, back off, repeat.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use super::{ClientEvent, ConnectConfig, ConnectError, RequestError, Shared};
use crate::client::{
    Backoff, Client, DisconnectReason, Input, Output, ReplyError, Response, SendError, Token,
};
use crate::command::Command;

/// Bytes read from the socket at a time. Reads pause while events wait for the consumer, so this
/// also bounds how many decoded events can pile up inside the task.
const READ_CHUNK: usize = 64 * 1024;

pub(super) struct Request {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Done, RequestError>>,
}

/// A successful answer.
#[derive(Debug)]
pub(super) enum Done {
    Response(Response),
    Job(Bytes),
    /// `exit` while not connected: the client just stops.
    Exited,
}

struct SessionEnd {
    reason: DisconnectReason,
    /// `ClientEvent::Connected` was emitted for this connection.
    announced: bool,
}

pub(super) struct Runner {
    config: ConnectConfig,
    client: Client,
    backoff: Backoff,
    requests: mpsc::Receiver<Request>,
    requests_open: bool,
    events: mpsc::Sender<ClientEvent>,
    events_open: bool,
    /// Events waiting for room in the channel; the socket is not read while non-empty.
    backlog: VecDeque<ClientEvent>,
    waiting: HashMap<Token, oneshot::Sender<Result<Done, RequestError>>>,
    next_token: u64,
    shared: Arc<Shared>,
    /// `exit` was requested.
    stop: bool,
    /// The `exit` command still waiting for its reply.
    exit_token: Option<Token>,
    connected_once: bool,
    /// `EslClient::connect` waits for the first attempt's outcome here.
    first: Option<oneshot::Sender<Result<(), ConnectError>>>,
}

/// Appends up to [`READ_CHUNK`] bytes from the socket to `buf`.
async fn read_into(rd: &mut OwnedReadHalf, buf: &mut BytesMut) -> std::io::Result<usize> {
    buf.reserve(READ_CHUNK);
    rd.read_buf(&mut buf.limit(READ_CHUNK)).await
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Runner {
    pub(super) fn new(
        config: ConnectConfig,
        client: Client,
        requests: mpsc::Receiver<Request>,
        events: mpsc::Sender<ClientEvent>,
        shared: Arc<Shared>,
        first: Option<oneshot::Sender<Result<(), ConnectError>>>,
    ) -> Self {
        Runner {
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            config,
            client,
            requests,
            requests_open: true,
            events,
            events_open: true,
            backlog: VecDeque::new(),
            waiting: HashMap::new(),
            next_token: 0,
            shared,
            stop: false,
            exit_token: None,
            connected_once: false,
            first,
        }
    }

    /// Nobody can use the client any more, or `exit` was answered.
    fn stopping(&self) -> bool {
        (self.stop && self.exit_token.is_none()) || (!self.requests_open && !self.events_open)
    }

    pub(super) async fn run(mut self) {
        let mut attempt: u32 = 0;
        while !self.stopping() {
            debug!(addr = %self.config.addr, attempt, "connecting");
            let connect = tokio::time::timeout(
                self.config.connect_timeout,
                TcpStream::connect(self.config.addr.clone()),
            );
            let outcome = match self.serve_offline(connect).await {
                None => break,
                Some(Err(_)) => Err(ConnectError::Timeout(self.config.connect_timeout)),
                Some(Ok(Err(e))) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Err(ConnectError::Refused(self.config.addr.clone()))
                }
                Some(Ok(Err(e))) => Err(ConnectError::Io(e)),
                Some(Ok(Ok(stream))) => {
                    let end = self.session(stream).await;
                    self.shared.connected.store(false, Ordering::Relaxed);
                    if end.announced {
                        attempt = 0;
                        match &end.reason {
                            DisconnectReason::Exit => info!("ESL connection closed after exit"),
                            DisconnectReason::DeadPeer(d) => {
                                warn!(after = ?d, "ESL peer dead: no data received")
                            }
                            reason => warn!(%reason, "ESL connection lost"),
                        }
                        self.backlog
                            .push_back(ClientEvent::Disconnected { reason: end.reason });
                        Ok(())
                    } else if self.stop {
                        // Stopped during the handshake (exit, or connect() refused the
                        // subscription and already reported why).
                        Ok(())
                    } else {
                        Err(ConnectError::from_reason(end.reason))
                    }
                }
            };
            if let Err(e) = outcome {
                match &e {
                    ConnectError::AuthFailed(reply) => {
                        error!(addr = %self.config.addr, %reply, "ESL authentication failed")
                    }
                    e => warn!(addr = %self.config.addr, error = %e, "ESL connect failed"),
                }
                if let Some(first) = self.first.take() {
                    let _ = first.send(Err(e));
                    break;
                }
            }
            if self.stopping() {
                break;
            }
            let delay = self
                .backoff
                .delay(attempt, |low, high| rand::rng().random_range(low..=high));
            attempt = attempt.saturating_add(1);
            info!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                "ESL reconnecting"
            );
            if self
                .serve_offline(tokio::time::sleep(delay))
                .await
                .is_none()
            {
                break;
            }
        }
        self.finish().await;
    }

    /// Stops taking requests, fails the waiting ones, delivers the remaining events.
    async fn finish(&mut self) {
        self.shared.connected.store(false, Ordering::Relaxed);
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(ConnectError::Stopped));
        }
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(RequestError::Closed));
        }
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            let result = match request.command {
                Command::Exit => Ok(Done::Exited),
                _ => Err(RequestError::Closed),
            };
            let _ = request.reply.send(result);
        }
        while let Some(event) = self.backlog.pop_front() {
            if self.events.send(event).await.is_err() {
                break;
            }
        }
    }

    /// Runs `fut` while answering requests (not connected) and delivering queued events.
    /// `None` when the client should stop.
    async fn serve_offline<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            self.flush_backlog();
            if self.stopping() {
                return None;
            }
            let mut incoming = None;
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                permit = self.events.reserve(), if !self.backlog.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.backlog.pop_front() {
                            permit.send(event);
                        }
                    }
                    Err(_) => self.events_open = false,
                },
                request = self.requests.recv(), if self.requests_open => match request {
                    Some(request) => incoming = Some(request),
                    None => self.requests_open = false,
                },
                _ = self.events.closed(), if self.events_open && !self.requests_open => {
                    self.events_open = false;
                }
            }
            if let Some(request) = incoming {
                self.dispatch(request);
            }
        }
    }

    /// One connection, from TCP up to its end.
    async fn session(&mut self, stream: TcpStream) -> SessionEnd {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let mut wbuf = BytesMut::new();
        let mut announced = false;
        let mut paused = false;
        self.client.handle_input(Input::Connected(now()));
        loop {
            while let Some(output) = self.client.poll_output() {
                match output {
                    Output::Timeout(_) => break,
                    Output::Transmit(bytes) => wbuf.extend_from_slice(&bytes),
                    Output::Authenticated => debug!("ESL authenticated"),
                    Output::Ready { rejected } => announced = self.on_ready(rejected),
                    Output::Reply { token, result } => {
                        self.resolve(token, result.map(Done::Response))
                    }
                    Output::JobResult { token, result } => {
                        self.resolve(token, result.map(Done::Job))
                    }
                    Output::Event(event) => self.backlog.push_back(ClientEvent::Event(event)),
                    Output::EventError(e) => warn!(error = %e, "skipping an undecodable event"),
                    Output::Disconnected(reason) => {
                        // The state machine answered every pending request before this.
                        for (_, reply) in self.waiting.drain() {
                            let _ = reply.send(Err(RequestError::Disconnected));
                        }
                        return SessionEnd { reason, announced };
                    }
                }
            }
            if self.stopping() {
                if !self.client.is_connected() {
                    return SessionEnd {
                        reason: DisconnectReason::Exit,
                        announced,
                    };
                }
                self.client
                    .handle_input(Input::Disconnected(DisconnectReason::Exit));
                continue;
            }
            self.flush_backlog();
            let behind = !self.backlog.is_empty();
            if paused && !behind {
                self.client.touch(now());
            }
            paused = behind;
            let deadline = self.client.next_timeout();
            let sleep_until = deadline.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(86_400),
                tokio::time::Instant::from_std,
            );
            let mut incoming = None;
            tokio::select! {
                biased;
                written = wr.write_buf(&mut wbuf), if !wbuf.is_empty() => match written {
                    Ok(0) => self.client.handle_input(Input::Disconnected(DisconnectReason::Closed)),
                    Ok(_) => {}
                    Err(e) => self
                        .client
                        .handle_input(Input::Disconnected(DisconnectReason::Io(e.to_string()))),
                },
                permit = self.events.reserve(), if paused => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.backlog.pop_front() {
                            permit.send(event);
                        }
                    }
                    Err(_) => self.events_open = false,
                },
                // Straight into the decoder's buffer: frames are cut out of it without a copy.
                read = read_into(&mut rd, self.client.receive_buffer()), if !paused => match read {
                    Ok(0) => self.client.handle_input(Input::Disconnected(DisconnectReason::Closed)),
                    Ok(_) => self.client.decode_received(now()),
                    Err(e) => self
                        .client
                        .handle_input(Input::Disconnected(DisconnectReason::Io(e.to_string()))),
                },
                request = self.requests.recv(), if self.requests_open => match request {
                    Some(request) => incoming = Some(request),
                    None => self.requests_open = false,
                },
                _ = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                    let now = now();
                    if paused {
                        self.client.touch(now);
                    }
                    self.client.handle_input(Input::Timeout(now));
                }
                _ = self.events.closed(), if self.events_open && !self.requests_open => {
                    self.events_open = false;
                }
            }
            if let Some(request) = incoming {
                self.dispatch(request);
            }
        }
    }

    /// The subscription is in place. Returns whether `Connected` was announced.
    fn on_ready(&mut self, rejected: Vec<(String, String)>) -> bool {
        for (command, reply) in &rejected {
            warn!(%command, %reply, "ESL subscription command refused");
        }
        if let Some(first) = self.first.take() {
            if let Some((command, reply)) = rejected.into_iter().next() {
                let _ = first.send(Err(ConnectError::Subscribe { command, reply }));
                self.stop = true;
                return false;
            }
            let _ = first.send(Ok(()));
        }
        let reconnect = self.connected_once;
        self.connected_once = true;
        self.shared.connected.store(true, Ordering::Relaxed);
        info!(reconnect, addr = %self.config.addr, "ESL connected");
        self.backlog.push_back(ClientEvent::Connected {
            core_uuid: self.client.core_uuid().map(str::to_owned),
            reconnect,
        });
        true
    }

    fn dispatch(&mut self, request: Request) {
        let is_exit = matches!(request.command, Command::Exit);
        if is_exit && !self.client.is_authenticated() {
            self.stop = true;
            let _ = request.reply.send(Ok(Done::Exited));
            return;
        }
        let token = Token(self.next_token);
        self.next_token = self.next_token.wrapping_add(1);
        match self.client.send(request.command, token, now()) {
            Ok(()) => {
                if is_exit {
                    self.stop = true;
                    self.exit_token = Some(token);
                }
                self.waiting.insert(token, request.reply);
            }
            Err(e) => {
                let e = match e {
                    SendError::NotConnected => RequestError::NotConnected,
                    SendError::Command(e) => RequestError::InvalidCommand(e),
                    SendError::Auth => RequestError::Unsupported("auth"),
                };
                let _ = request.reply.send(Err(e));
            }
        }
    }

    fn resolve(&mut self, token: Token, result: Result<Done, ReplyError>) {
        if self.exit_token == Some(token) {
            self.exit_token = None;
        }
        if let Some(reply) = self.waiting.remove(&token) {
            let _ = reply.send(result.map_err(|e| match e {
                ReplyError::Timeout => RequestError::Timeout,
                ReplyError::Disconnected => RequestError::Disconnected,
                ReplyError::Rejected(text) => RequestError::Rejected(text),
            }));
        }
    }

    /// Moves queued events into the channel while it has room (drops them if nobody listens).
    fn flush_backlog(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            if !self.events_open {
                continue;
            }
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    break;
                }
                Err(TrySendError::Closed(_)) => self.events_open = false,
            }
        }
    }
}
