//! One open `GET /v1/events` WebSocket: `hello` and the token check, `welcome` and resumption,
//! then events out and browser requests in until either side closes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chrono::Utc;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::hub::{Delivery, Registration, Replay};
use super::protocol::{
    self, BrowserEvent, CancelReason, ClientFrame, Close, FrameError, RateLimit, SipCredentials,
    Welcome,
};
use super::{BrowserError, TOKEN_PREFIX, token_digest};
use crate::app::App;
use crate::events::Event;

/// The first frame must come within this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Chat messages per second per channel, and the burst allowed.
const MESSAGE_RATE: f64 = 5.0;
const MESSAGE_BURST: f64 = 10.0;
/// How long a channel trusts that its user may write to a conference before looking again.
const AUDIENCE_CHECK_TTL: Duration = Duration::from_secs(5);
/// Refused frames in a row before the channel is closed (`4029`).
const MAX_REFUSALS_IN_A_ROW: u32 = 20;

/// Why the channel ended, for the log and the metric.
#[derive(Debug, Clone, Copy)]
enum End {
    /// We closed it.
    Closed(Close),
    /// The browser closed it or the connection broke.
    Client,
}

/// Serves one upgraded WebSocket until it ends.
pub async fn serve(app: Arc<App>, mut socket: WebSocket) {
    let end = match run(&app, &mut socket).await {
        Ok(end) => end,
        Err(e) => {
            tracing::warn!(error = %e, "browser channel failed");
            End::Closed(Close::InternalError)
        }
    };
    let reason = match end {
        End::Closed(close) => {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: close.code(),
                    reason: Utf8Bytes::from_static(close.reason()),
                })))
                .await;
            close.reason()
        }
        End::Client => "client",
    };
    app.metrics
        .browser_channels_closed
        .get_or_create(&crate::metrics::Metrics::reason(reason))
        .inc();
}

/// The user a valid token belongs to, or the close code for an invalid one.
async fn authenticate(app: &App, token: &str) -> Result<Result<String, Close>, BrowserError> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
        return Ok(Err(Close::TokenInvalid));
    }
    let Some(owner) = app.store.session_token_owner(&token_digest(token)).await? else {
        return Ok(Err(Close::TokenInvalid));
    };
    if owner.expires_at <= Utc::now() {
        return Ok(Err(Close::TokenExpired));
    }
    if !owner.enabled {
        return Ok(Err(Close::UserDisabled));
    }
    Ok(Ok(owner.user_id))
}

/// Reads frames until the first text frame; `None` if the browser went away.
async fn first_text(socket: &mut WebSocket) -> Option<Result<String, Close>> {
    loop {
        match socket.recv().await? {
            Ok(Message::Text(text)) => return Some(Ok(text.to_string())),
            Ok(Message::Binary(_)) => return Some(Err(Close::BadHello)),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
        }
    }
}

async fn run(app: &Arc<App>, socket: &mut WebSocket) -> Result<End, BrowserError> {
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, first_text(socket)).await {
        Err(_) => return Ok(End::Closed(Close::BadHello)),
        Ok(None) => return Ok(End::Client),
        Ok(Some(Err(close))) => return Ok(End::Closed(close)),
        Ok(Some(Ok(text))) => text,
    };
    let Ok(ClientFrame::Hello { token, resume }) = protocol::parse_client_frame(&hello) else {
        return Ok(End::Closed(Close::BadHello));
    };
    let user = match authenticate(app, &token).await? {
        Ok(user) => user,
        Err(close) => {
            tracing::info!(reason = close.reason(), "browser channel refused");
            return Ok(End::Closed(close));
        }
    };
    let Ok(mut registration) = app.browser.hub.register(&user) else {
        tracing::warn!(%user, "browser channel refused: too many open channels");
        return Ok(End::Closed(Close::TooManyConnections));
    };
    let session = format!("{:016x}", rand::random::<u64>());
    let span = tracing::info_span!("browser", %user, %session);
    open(app, socket, user, session, resume, &mut registration)
        .instrument(span)
        .await
}

/// Welcome, replay, then the channel's life.
async fn open(
    app: &Arc<App>,
    socket: &mut WebSocket,
    user: String,
    session: String,
    resume: Option<protocol::Resume>,
    registration: &mut Registration,
) -> Result<End, BrowserError> {
    let config = &app.config.events;
    let mut channel = Channel {
        app: app.clone(),
        user: user.clone(),
        last_seq: 0,
        rate: RateLimit::new(MESSAGE_RATE, MESSAGE_BURST),
        refusals: 0,
        may_write: HashMap::new(),
    };
    let (current, replay) = match resume {
        Some(resume) => app.browser.hub.replay(&user, resume.seq).await?,
        None => (app.browser.hub.current_seq(&user).await?, Replay::Gap),
    };
    let resumed = matches!(replay, Replay::Complete(_));
    let welcome = Welcome {
        kind: "welcome",
        user_id: &user,
        session: &session,
        seq: current,
        resumed,
        heartbeat_secs: config.heartbeat_secs,
        max_message_chars: config.max_message_chars,
    };
    let welcome = serde_json::to_string(&welcome).unwrap_or_default();
    if send_text(socket, welcome).await.is_err() {
        return Ok(End::Client);
    }
    tracing::info!(resumed, seq = current, "browser channel open");
    channel.last_seq = match (&replay, resume) {
        (Replay::Complete(_), Some(resume)) => resume.seq,
        _ => current,
    };
    if let Replay::Complete(events) = replay {
        for (seq, json) in events {
            if let Some(end) = channel.send_event(socket, seq, &json).await? {
                return Ok(end);
            }
        }
    }
    channel.pump(socket, registration).await
}

struct Channel {
    app: Arc<App>,
    user: String,
    /// The newest sequence number sent.
    last_seq: u64,
    rate: RateLimit,
    refusals: u32,
    /// Conferences this user was recently found invited to or in: chat bursts skip the lookups.
    may_write: HashMap<String, Instant>,
}

async fn send_text(socket: &mut WebSocket, text: String) -> Result<(), axum::Error> {
    socket.send(Message::Text(Utf8Bytes::from(text))).await
}

impl Channel {
    async fn pump(
        &mut self,
        socket: &mut WebSocket,
        registration: &mut Registration,
    ) -> Result<End, BrowserError> {
        let config = &self.app.config.events;
        let idle_limit = config.idle_limit();
        let mut heartbeat = tokio::time::interval(config.heartbeat());
        heartbeat.tick().await;
        let mut last_heard = Instant::now();
        let shutdown = self.app.shutdown.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(End::Closed(Close::GoingAway)),
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > idle_limit {
                        return Ok(End::Closed(Close::HeartbeatTimeout));
                    }
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        return Ok(End::Client);
                    }
                }
                delivery = registration.rx.recv() => match delivery {
                    // The hub dropped us: our queue was full.
                    None => return Ok(End::Closed(Close::TooSlow)),
                    Some(Delivery::Revoke(close)) => return Ok(End::Closed(close)),
                    Some(Delivery::Event { seq, json }) => {
                        if let Some(end) = self.deliver(socket, seq, &json).await? {
                            return Ok(end);
                        }
                    }
                    Some(Delivery::CatchUp) => {
                        if let Some(end) = self.catch_up(socket).await? {
                            return Ok(end);
                        }
                    }
                },
                received = socket.recv() => {
                    last_heard = Instant::now();
                    match received {
                        None | Some(Ok(Message::Close(_))) => return Ok(End::Client),
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "browser channel read failed");
                            return Ok(End::Closed(Close::TooBig));
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Binary(_))) => {
                            let refused = FrameError::BadMessage("binary frames are not used; send JSON text".to_owned());
                            if let Some(end) = self.refuse(socket, &refused, None).await {
                                return Ok(end);
                            }
                        }
                        Some(Ok(Message::Text(text))) => {
                            if let Some(end) = self.on_text(socket, text.as_str()).await {
                                return Ok(end);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sends event `seq` unless it was sent already; fills a gap from the buffer first.
    async fn deliver(
        &mut self,
        socket: &mut WebSocket,
        seq: u64,
        json: &str,
    ) -> Result<Option<End>, BrowserError> {
        if seq <= self.last_seq {
            return Ok(None);
        }
        if seq > self.last_seq + 1 {
            return self.catch_up(socket).await;
        }
        self.send_event(socket, seq, json).await
    }

    /// Sends whatever the buffer holds beyond what was sent; closes (`too_slow`) if some of it
    /// is gone, so that the client resumes and learns it must resynchronise.
    async fn catch_up(&mut self, socket: &mut WebSocket) -> Result<Option<End>, BrowserError> {
        let (_, replay) = self
            .app
            .browser
            .hub
            .replay(&self.user, self.last_seq)
            .await?;
        let Replay::Complete(events) = replay else {
            tracing::warn!(
                last_seq = self.last_seq,
                "browser channel missed events; closing so it resumes"
            );
            return Ok(Some(End::Closed(Close::TooSlow)));
        };
        for (seq, json) in events {
            if let Some(end) = self.send_event(socket, seq, &json).await? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    async fn send_event(
        &mut self,
        socket: &mut WebSocket,
        seq: u64,
        json: &str,
    ) -> Result<Option<End>, BrowserError> {
        let frame = if protocol::is_invited(json) {
            protocol::with_seq(
                seq,
                &protocol::with_sip(json, &self.sip_credentials().await?),
            )
        } else {
            protocol::with_seq(seq, json)
        };
        self.last_seq = seq;
        if send_text(socket, frame).await.is_err() {
            return Ok(Some(End::Client));
        }
        Ok(None)
    }

    /// Fresh SIP credentials for this channel (each tab is its own SIP user).
    async fn sip_credentials(&self) -> Result<SipCredentials, BrowserError> {
        let app = &self.app;
        let domain = &app.config.sip.domain;
        let issued = crate::credentials::issue(
            &app.store,
            &app.directory_cache,
            domain,
            &self.user,
            Duration::from_secs(app.config.events.sip_credentials_ttl_secs),
        )
        .await?;
        tracing::info!(sip_username = %issued.username, expires_at = %issued.expires_at, "SIP credential issued for an invitation");
        Ok(SipCredentials {
            username: issued.username,
            password: issued.password,
            domain: domain.clone(),
            expires_at: issued.expires_at,
        })
    }

    /// Handles one text frame; `Some` ends the channel.
    async fn on_text(&mut self, socket: &mut WebSocket, text: &str) -> Option<End> {
        let frame = match protocol::parse_client_frame(text) {
            Ok(frame) => frame,
            Err(refused) => {
                let id = protocol::frame_id(text);
                return self.refuse(socket, &refused, id.as_deref()).await;
            }
        };
        let id = match &frame {
            ClientFrame::Ping { id } | ClientFrame::Message { id, .. } => id.clone(),
            _ => None,
        };
        match self.handle(frame).await {
            Ok(Some(reply)) => {
                self.refusals = 0;
                send_text(socket, reply).await.err().map(|_| End::Client)
            }
            Ok(None) => {
                self.refusals = 0;
                None
            }
            Err(refused) => self.refuse(socket, &refused, id.as_deref()).await,
        }
    }

    async fn refuse(
        &mut self,
        socket: &mut WebSocket,
        refused: &FrameError,
        id: Option<&str>,
    ) -> Option<End> {
        self.refusals += 1;
        if self.refusals >= MAX_REFUSALS_IN_A_ROW {
            return Some(End::Closed(Close::RateLimited));
        }
        tracing::debug!(code = refused.code(), detail = %refused, "browser frame refused");
        send_text(socket, protocol::error_frame(refused, id))
            .await
            .err()
            .map(|_| End::Client)
    }

    /// Carries out a browser request; `Ok(Some(frame))` is a direct reply.
    async fn handle(&mut self, frame: ClientFrame) -> Result<Option<String>, FrameError> {
        let app = &self.app;
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "browser request failed");
            FrameError::Unavailable
        };
        match frame {
            ClientFrame::Hello { .. } => Err(FrameError::BadMessage(
                "hello is only the first frame".to_owned(),
            )),
            ClientFrame::Ping { id } => Ok(Some(protocol::pong(id.as_deref()))),
            ClientFrame::Accept { conference } => {
                self.require_invitation(&conference).await?;
                let answered = BrowserEvent::InvitationCancelled {
                    conference,
                    reason: CancelReason::Answered,
                };
                app.browser
                    .publish([self.user.clone()], &answered)
                    .await
                    .map_err(|e| unavailable(&e))?;
                Ok(None)
            }
            ClientFrame::Decline { conference } => {
                self.answer(conference, CancelReason::Declined).await
            }
            ClientFrame::Busy { conference } => self.answer(conference, CancelReason::Busy).await,
            ClientFrame::Message {
                conference,
                text,
                id,
            } => {
                if !self.rate.allow(std::time::Instant::now()) {
                    return Err(FrameError::RateLimited);
                }
                protocol::check_text(&text, app.config.events.max_message_chars)?;
                let checked = self
                    .may_write
                    .get(&conference)
                    .is_some_and(|at| at.elapsed() < AUDIENCE_CHECK_TTL);
                if !checked {
                    let allowed = app
                        .browser
                        .in_audience(app, &conference, &self.user)
                        .await
                        .map_err(|e| unavailable(&e))?;
                    if !allowed {
                        return Err(FrameError::NotInAudience);
                    }
                    self.may_write
                        .retain(|_, at| at.elapsed() < AUDIENCE_CHECK_TTL);
                    self.may_write.insert(conference.clone(), Instant::now());
                }
                let audience = app
                    .browser
                    .audience(app, &conference, None, false)
                    .await
                    .map_err(|e| unavailable(&e))?;
                let message = BrowserEvent::Message {
                    conference,
                    from: self.user.clone(),
                    text,
                    id,
                    message_id: format!("msg_{:024x}", rand::random::<u128>() >> 32),
                };
                app.browser
                    .publish(audience, &message)
                    .await
                    .map_err(|e| unavailable(&e))?;
                Ok(None)
            }
        }
    }

    async fn require_invitation(&self, conference: &str) -> Result<(), FrameError> {
        match self.app.store.invitation(conference, &self.user).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(FrameError::NotInvited),
            Err(e) => {
                tracing::warn!(error = %e, "browser request failed");
                Err(FrameError::Unavailable)
            }
        }
    }

    /// Decline or busy: the invitation goes; the router tells the user's tabs and the audience.
    async fn answer(
        &self,
        conference: String,
        reason: CancelReason,
    ) -> Result<Option<String>, FrameError> {
        let app = &self.app;
        self.require_invitation(&conference).await?;
        // Heard before the row goes, so the decliner's answer still reaches the caller.
        let _ = app.browser.audience(app, &conference, None, false).await;
        let removed = app
            .store
            .uninvite(&conference, &self.user)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "browser request failed");
                FrameError::Unavailable
            })?;
        if removed {
            tracing::info!(%conference, reason = ?reason, "invitation answered from the browser");
            app.bus.publish(Event::InvitationCancelled {
                name: conference,
                user_id: self.user.clone(),
                reason,
            });
        }
        Ok(None)
    }
}
