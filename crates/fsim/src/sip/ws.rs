//! The SIP-over-WebSocket transport of a node and sofia's UAS behaviour on it.
//!
//! # Why this shape
//!
//! One task per WebSocket connection reads frames, parses them with the sans-IO codec and
//! answers; everything it sends goes through one writer queue so responses, BYEs and
//! retransmission-free answers keep their order. INVITE and REGISTER run in their own tasks
//! because they wait for mod_xml_curl (directory, then dialplan) and a CANCEL or BYE must
//! still be read meanwhile. Responses always go back over the connection the request came
//! on (JsSIP's `.invalid` Via/Contact hosts are never resolved), as sofia does for `ws`.
//!
//! The [`Hub`] maps each channel a connection carries to that connection, so when the node
//! ends a call (conference kick, `uuid_kill`, `hupall`, a locked conference) the connection
//! sends the BYE; closing the WebSocket hangs its calls up, like a browser tab closing.
//!
//! Registrations follow sofia's rules for a WS transport (`Registered(WS-NAT)`, an `fs_path`
//! contact, `sofia::unregister` on `Expires: 0` and when the WebSocket closes, `sofia::expire`
//! when a registration runs out); see [`super::registrar`].
//!
//! Not simulated: WSS (use a TLS proxy, as production does in front of `ws-binding`), SIP
//! retransmissions and timers (WebSocket is reliable), session timers, PRACK/UPDATE/REFER.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as WsRequest, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::auth::{challenge, parse_credentials};
use super::message::{self, Headers, Message, NameAddr, Request, Response, Uri, Via};
use super::registrar::{self, SocketBinding};
use super::sdp;
use crate::bus::lock;
use crate::channel::{AudioCodec, SipLeg};
use crate::dialplan::{self, Route};
use crate::directory::{AuthorizedUser, DigestCredentials, SipRequestFacts};
use crate::node::{
    CallError, FREESWITCH_VERSION, Shared, Stop, random_token, record_registration,
    register_attempt_events, sip_call,
};
use crate::ops::{Registration, WsBinding};

/// sofia's `nonce-ttl` default.
const NONCE_TTL: Duration = Duration::from_secs(60);

/// The `Allow` list of the captured sofia profile.
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY, PUBLISH, SUBSCRIBE";
const SUPPORTED: &str = "timer, path, replaces";
const ALLOW_EVENTS: &str = "talk, hold, conference, presence, as-feature-event, dialog, line-seize, call-info, sla, include-session-description, presence.winfo, message-summary, refer";

fn user_agent() -> String {
    format!("FreeSWITCH-mod_sofia/{FREESWITCH_VERSION}")
}

/// What the node tells a connection.
#[derive(Debug)]
pub(crate) enum Notice {
    /// The node removed this channel: send a BYE if the call was answered.
    ChannelGone(String),
    /// The node restarts: drop the connection.
    Close,
}

/// The live connections of a node, the channels they carry and sofia's nonces.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    inner: Mutex<HubInner>,
}

#[derive(Debug, Default)]
struct HubInner {
    next_conn: u64,
    conns: HashMap<u64, mpsc::UnboundedSender<Notice>>,
    channels: HashMap<String, u64>,
    /// nonce → (issued, highest nc seen).
    nonces: HashMap<String, (Instant, u32)>,
    /// sofia's `reg_nh_hash`: the socket binding of each WS registration, by
    /// `call_id + network_ip + network_port`, with the connection it came over.
    reg_bindings: HashMap<String, (u64, SocketBinding)>,
}

/// sofia's `reg_nh_hash` key (`sofia_reg_handle_register_token`, `sofia_reg_check_socket`).
fn binding_key(call_id: &str, ip: &str, port: u16) -> String {
    format!("{call_id}{ip}{port}")
}

/// Whether a nonce may be used with a given `nc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonceCheck {
    Fresh,
    Stale,
}

impl Hub {
    fn register_conn(&self, tx: mpsc::UnboundedSender<Notice>) -> u64 {
        let mut h = lock(&self.inner);
        h.next_conn += 1;
        let id = h.next_conn;
        h.conns.insert(id, tx);
        id
    }

    fn unregister_conn(&self, id: u64) {
        let mut h = lock(&self.inner);
        h.conns.remove(&id);
        h.channels.retain(|_, c| *c != id);
    }

    /// Binds a registration to its connection, unless its key is bound already (sofia binds
    /// the first REGISTER's handle only).
    fn bind_registration(&self, conn: u64, binding: SocketBinding) {
        let key = binding_key(
            &binding.call_id,
            &binding.network.ip().to_string(),
            binding.network.port(),
        );
        lock(&self.inner)
            .reg_bindings
            .entry(key)
            .or_insert((conn, binding));
    }

    /// `sofia_reg_check_socket`: forgets a binding (unregister, expiry).
    fn release_registration(&self, call_id: &str, ip: &str, port: u16) {
        lock(&self.inner)
            .reg_bindings
            .remove(&binding_key(call_id, ip, port));
    }

    /// Removes and returns the bindings of a closed connection.
    fn take_registrations(&self, conn: u64) -> Vec<SocketBinding> {
        let mut h = lock(&self.inner);
        let keys: Vec<String> = h
            .reg_bindings
            .iter()
            .filter(|(_, (c, _))| *c == conn)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<SocketBinding> = keys
            .iter()
            .filter_map(|k| h.reg_bindings.remove(k).map(|(_, b)| b))
            .collect();
        out.sort_by(|a, b| a.call_id.cmp(&b.call_id));
        out
    }

    fn attach(&self, uuid: &str, conn: u64) {
        lock(&self.inner).channels.insert(uuid.to_owned(), conn);
    }

    fn detach(&self, uuid: &str) {
        lock(&self.inner).channels.remove(uuid);
    }

    /// Called after every node transaction for each channel it removed.
    pub fn channel_gone(&self, uuid: &str) {
        let mut h = lock(&self.inner);
        if let Some(conn) = h.channels.remove(uuid)
            && let Some(tx) = h.conns.get(&conn)
        {
            let _ = tx.send(Notice::ChannelGone(uuid.to_owned()));
        }
    }

    /// Drops every connection (node restart).
    pub fn close_all(&self) {
        let mut h = lock(&self.inner);
        for tx in h.conns.values() {
            let _ = tx.send(Notice::Close);
        }
        h.channels.clear();
        h.nonces.clear();
        h.reg_bindings.clear();
    }

    fn new_nonce(&self) -> String {
        let nonce = uuid::Uuid::new_v4().to_string();
        let mut h = lock(&self.inner);
        let now = Instant::now();
        h.nonces
            .retain(|_, (t, _)| now.duration_since(*t) < NONCE_TTL);
        h.nonces.insert(nonce.clone(), (now, 0));
        nonce
    }

    /// sofia rejects unknown or expired nonces and replayed `nc` values as stale, before any
    /// directory lookup.
    fn check_nonce(&self, nonce: &str, nc: Option<&str>) -> NonceCheck {
        let mut h = lock(&self.inner);
        let Some((issued, last_nc)) = h.nonces.get_mut(nonce) else {
            return NonceCheck::Stale;
        };
        if issued.elapsed() >= NONCE_TTL {
            return NonceCheck::Stale;
        }
        let nc = nc
            .and_then(|v| u32::from_str_radix(v, 16).ok())
            .unwrap_or(0);
        if nc != 0 && nc <= *last_nc {
            return NonceCheck::Stale;
        }
        *last_nc = nc.max(*last_nc + u32::from(nc == 0));
        NonceCheck::Fresh
    }
}

/// Accepts WebSocket connections until the node stops.
pub(crate) async fn accept_loop(
    shared: Weak<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<Stop>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "sip-ws accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(s) = shared.upgrade() else {
            return;
        };
        tokio::spawn(serve(s, stream, peer));
    }
}

/// sofia's handshake (tport ws.c): any path, `Sec-WebSocket-Key` required, Origin not
/// checked, and whatever `Sec-WebSocket-Protocol` the client asks for is echoed as is.
#[allow(clippy::result_large_err)]
fn echo_subprotocol(req: &WsRequest, mut resp: WsResponse) -> Result<WsResponse, ErrorResponse> {
    if let Some(proto) = req.headers().get("Sec-WebSocket-Protocol") {
        let value: HeaderValue = proto.clone();
        resp.headers_mut().insert("Sec-WebSocket-Protocol", value);
    }
    Ok(resp)
}

/// A call on this connection, keyed by Call-ID.
#[derive(Debug)]
struct Dialog {
    state: DialogState,
    uuid: Option<String>,
    /// The last INVITE (initial or re-INVITE).
    invite: Request,
    to_tag: String,
    local_sdp: Option<String>,
    /// Next CSeq of requests we send (BYE).
    local_cseq: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialogState {
    /// INVITE received, not answered yet.
    Proceeding,
    /// 200 OK sent.
    Answered,
    /// ACK received.
    Confirmed,
    /// Cancelled, rejected, hung up or the connection closed.
    Terminated,
}

/// What the tasks of one connection share.
struct Conn {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    out: mpsc::UnboundedSender<WsMessage>,
    dialogs: Mutex<HashMap<String, Dialog>>,
}

impl Conn {
    fn send(&self, msg: Message) {
        let text = String::from_utf8_lossy(&msg.to_bytes()).into_owned();
        let _ = self.out.send(WsMessage::text(text));
    }

    fn respond(
        &self,
        req: &Request,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: &[(&str, String)],
    ) {
        self.send(Message::Response(
            self.response(req, status, reason, to_tag, extra),
        ));
    }

    /// A response to `req`: its Vias (the top one with `received`/`rport` of the socket, as
    /// sofia adds them), From, To (+ tag), Call-ID, CSeq, then `extra`.
    fn response(
        &self,
        req: &Request,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: &[(&str, String)],
    ) -> Response {
        let mut h = Headers::new();
        for (i, via) in req.headers.list("Via").into_iter().enumerate() {
            if i == 0 {
                let kept: Vec<&str> = via
                    .split(';')
                    .filter(|p| {
                        let name = p.split('=').next().unwrap_or_default().trim();
                        !name.eq_ignore_ascii_case("received")
                            && !name.eq_ignore_ascii_case("rport")
                    })
                    .collect();
                h.push(
                    "Via",
                    format!(
                        "{};received={};rport={}",
                        kept.join(";"),
                        self.peer.ip(),
                        self.peer.port()
                    ),
                );
            } else {
                h.push("Via", via);
            }
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            let Some(v) = req.headers.get(name) else {
                continue;
            };
            let v = match (name, to_tag) {
                ("To", Some(tag)) if NameAddr::parse(v).is_some_and(|n| n.tag().is_none()) => {
                    format!("{v};tag={tag}")
                }
                _ => v.to_owned(),
            };
            h.push(name, v);
        }
        for (name, value) in extra {
            h.push(name, value.clone());
        }
        Response {
            status,
            reason: reason.to_owned(),
            headers: h,
            body: Vec::new(),
        }
    }

    fn domain(&self) -> &str {
        &self.shared.cfg.domain
    }

    fn ws_port(&self) -> u16 {
        self.shared.sip_ws_addr.map_or(0, |a| a.port())
    }
}

fn common_headers() -> Vec<(&'static str, String)> {
    vec![
        ("User-Agent", user_agent()),
        ("Allow", ALLOW.to_owned()),
        ("Supported", SUPPORTED.to_owned()),
    ]
}

/// 481: a request inside a dialog this connection does not know (or that has ended).
fn no_dialog(conn: &Conn, req: &Request) {
    conn.respond(
        req,
        481,
        "Call/Transaction Does Not Exist",
        None,
        &common_headers(),
    );
}

/// The node's Contact for `user` on this WebSocket, as sofia writes it for its `ws` transport.
fn local_contact(conn: &Conn, user: &str) -> String {
    format!(
        "<sip:{user}@{}:{};transport=ws>",
        conn.shared.cfg.sip_ip,
        conn.ws_port()
    )
}

async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let ws = match tokio_tungstenite::accept_hdr_async(stream, echo_subprotocol).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "sip-ws handshake failed");
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<WsMessage>();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, WsMessage::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let (notice_tx, mut notices) = mpsc::unbounded_channel();
    let id = shared.sip_ws.register_conn(notice_tx);
    let mut stop = shared.stop.subscribe();
    let conn = Arc::new(Conn {
        shared,
        id,
        peer,
        out: out_tx,
        dialogs: Mutex::new(HashMap::new()),
    });
    tracing::debug!(%peer, "sip-ws connection");
    // The client (or the network) closed the socket, as opposed to a node restart/stop.
    let mut peer_closed = false;
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(WsMessage::Text(t))) => on_bytes(&conn, t.as_bytes()),
                Some(Ok(WsMessage::Binary(b))) => on_bytes(&conn, &b),
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => {
                    peer_closed = true;
                    break;
                }
                Some(Ok(_)) => {}
            },
            notice = notices.recv() => match notice {
                Some(Notice::ChannelGone(uuid)) => send_bye(&conn, &uuid),
                Some(Notice::Close) | None => break,
            },
            _ = stop.changed() => break,
        }
    }
    conn.shared.sip_ws.unregister_conn(id);
    hang_up_all(&conn);
    let bindings = conn.shared.sip_ws.take_registrations(id);
    if peer_closed {
        close_registrations(&conn.shared, &bindings);
    }
    let _ = conn.out.send(WsMessage::Close(None));
    drop(conn);
    let _ = writer.await;
    tracing::debug!(%peer, "sip-ws connection closed");
}

/// The WebSocket closed: sofia's `nua_i_media_error` handler (see [`super::registrar`])
/// deletes each bound registration and fires PRESENCE_IN + `sofia::unregister`.
fn close_registrations(shared: &Shared, bindings: &[SocketBinding]) {
    for b in bindings {
        shared.transact(|tx| {
            tx.st.registrations.retain(|r| !registrar::bound_to(r, b));
            tx.out
                .extend(registrar::socket_close_events(&tx.ctx, tx.cfg, b));
        });
    }
}

/// sofia's profile worker: every `IREG_SECONDS`, [`expire_registrations`].
pub(crate) async fn registration_expiry_loop(
    shared: Weak<Shared>,
    mut stop: watch::Receiver<Stop>,
) {
    let mut tick = tokio::time::interval(registrar::IREG_SECONDS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(s) = shared.upgrade() else {
            return;
        };
        expire_registrations(&s, SystemTime::now());
    }
}

/// `sofia_reg_check_expire`: deletes the WS registrations whose stored `expires` (+60 s late
/// margin) is past `now`, each with `sofia::expire` and PRESENCE_IN, and drops their socket
/// bindings. Returns how many expired. The UDP registrations of `SimNode::register` never
/// expire (as before).
pub(crate) fn expire_registrations(shared: &Shared, now: SystemTime) -> usize {
    let expired = shared.transact(|tx| {
        let (gone, keep): (Vec<Registration>, Vec<Registration>) =
            std::mem::take(&mut tx.st.registrations)
                .into_iter()
                .partition(|r| registrar::is_expired(r, now));
        tx.st.registrations = keep;
        for r in &gone {
            tx.out.extend(registrar::expire_events(&tx.ctx, tx.cfg, r));
        }
        gone
    });
    for r in &expired {
        shared
            .sip_ws
            .release_registration(&r.call_id, &r.contact_ip, r.contact_port);
    }
    expired.len()
}

/// The connection is gone: its calls end as if the browser had sent BYE.
fn hang_up_all(conn: &Conn) {
    let uuids: Vec<String> = {
        let mut dialogs = lock(&conn.dialogs);
        dialogs
            .values_mut()
            .filter(|d| d.state != DialogState::Terminated)
            .filter_map(|d| {
                d.state = DialogState::Terminated;
                d.uuid.clone()
            })
            .collect()
    };
    for uuid in uuids {
        conn.shared.sip_ws.detach(&uuid);
        let _ = conn.shared.transact(|tx| tx.remote_hangup(&uuid));
    }
}

fn on_bytes(conn: &Arc<Conn>, bytes: &[u8]) {
    let msg = match message::parse(bytes) {
        Ok(m) => m,
        Err(message::ParseError::Empty) => return, // CRLF keep-alive
        Err(e) => {
            // sofia drops what it cannot parse.
            tracing::debug!(peer = %conn.peer, error = %e, "sip-ws: unparsable message dropped");
            return;
        }
    };
    let req = match msg {
        Message::Request(r) => r,
        // Responses to our BYEs: nothing to do.
        Message::Response(_) => return,
    };
    if let Err(e) = req.validate() {
        tracing::debug!(peer = %conn.peer, error = %e, "sip-ws: bad request");
        let can_answer = ["Via", "From", "To", "Call-ID", "CSeq"]
            .iter()
            .all(|h| req.headers.get(h).is_some());
        if can_answer && req.method != "ACK" {
            conn.respond(
                &req,
                400,
                "Bad Request",
                None,
                &[("User-Agent", user_agent())],
            );
        }
        return;
    }
    match req.method.as_str() {
        "REGISTER" => {
            let conn = Arc::clone(conn);
            tokio::spawn(async move { on_register(&conn, req).await });
        }
        "INVITE" => {
            let conn = Arc::clone(conn);
            tokio::spawn(async move { on_invite(&conn, req).await });
        }
        "ACK" => on_ack(conn, &req),
        "BYE" => on_bye(conn, &req),
        "CANCEL" => on_cancel(conn, &req),
        "OPTIONS" => {
            let mut extra = common_headers();
            extra.insert(1, ("Accept", "application/sdp".to_owned()));
            extra.push(("Allow-Events", ALLOW_EVENTS.to_owned()));
            conn.respond(&req, 200, "OK", Some(&random_token(13)), &extra);
        }
        "INFO" => {
            let known = lock(&conn.dialogs)
                .get(req.call_id())
                .is_some_and(|d| d.state != DialogState::Terminated);
            if known {
                conn.respond(&req, 200, "OK", None, &common_headers());
            } else {
                no_dialog(conn, &req);
            }
        }
        "MESSAGE" => conn.respond(&req, 200, "OK", Some(&random_token(13)), &common_headers()),
        "UPDATE" | "REFER" | "NOTIFY" | "PUBLISH" | "SUBSCRIBE" => {
            conn.respond(&req, 501, "Not Implemented", None, &common_headers());
        }
        _ => {
            conn.respond(&req, 405, "Method Not Allowed", None, &common_headers());
        }
    }
}

/// The credentials of `header`, or why the request gets a (stale) challenge instead.
fn credentials(conn: &Conn, req: &Request, header: &str) -> Option<(DigestCredentials, bool)> {
    let value = req.headers.get(header)?;
    match parse_credentials(value, &req.method) {
        Ok(c) => match conn.shared.sip_ws.check_nonce(&c.nonce, c.nc.as_deref()) {
            NonceCheck::Fresh => Some((c, false)),
            NonceCheck::Stale => Some((c, true)),
        },
        Err(e) => {
            tracing::debug!(error = %e, "unusable credentials: new challenge");
            None
        }
    }
}

/// What sofia puts into the `sip_auth` form for `req`.
fn request_facts(conn: &Conn, req: &Request) -> SipRequestFacts {
    let name_uri = |h: &str| {
        req.headers
            .get(h)
            .and_then(NameAddr::parse)
            .and_then(|n| n.parsed_uri())
    };
    let (to, from, contact) = (name_uri("To"), name_uri("From"), name_uri("Contact"));
    let ruri = Uri::parse(&req.uri);
    let via = req.headers.list("Via").first().and_then(|v| Via::parse(v));
    SipRequestFacts {
        user_agent: req.headers.get("User-Agent").unwrap_or_default().to_owned(),
        call_id: req.call_id().to_owned(),
        contact_user: contact
            .as_ref()
            .and_then(|u| u.user.clone())
            .unwrap_or_default(),
        contact_host: contact.as_ref().map(|u| u.host.clone()).unwrap_or_default(),
        to_user: to.as_ref().and_then(|u| u.user.clone()).unwrap_or_default(),
        to_host: to.as_ref().map(|u| u.host.clone()).unwrap_or_default(),
        to_port: to.as_ref().and_then(|u| u.port),
        via_protocol: via
            .map(|v| v.transport.to_ascii_lowercase())
            .unwrap_or_default(),
        from_user: from
            .as_ref()
            .and_then(|u| u.user.clone())
            .unwrap_or_default(),
        from_host: from.as_ref().map(|u| u.host.clone()).unwrap_or_default(),
        request_user: ruri.as_ref().and_then(|u| u.user.clone()),
        request_host: ruri.as_ref().map(|u| u.host.clone()).unwrap_or_default(),
        request_port: ruri.as_ref().and_then(|u| u.port),
        x_headers: req
            .headers
            .iter()
            .filter(|(n, v)| n.len() > 2 && n[..2].eq_ignore_ascii_case("X-") && !v.is_empty())
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
        client_ip: conn.peer.ip().to_string(),
        client_port: conn.peer.port(),
    }
}

/// Challenge (401/407) with a fresh nonce; `stale` for an unknown/expired nonce or replay.
fn send_challenge(conn: &Conn, req: &Request, proxy: bool, stale: bool) {
    let nonce = conn.shared.sip_ws.new_nonce();
    let mut extra = common_headers();
    let (status, reason, header) = if proxy {
        extra.insert(1, ("Accept", "application/sdp".to_owned()));
        extra.push(("Allow-Events", ALLOW_EVENTS.to_owned()));
        (407, "Proxy Authentication Required", "Proxy-Authenticate")
    } else {
        (401, "Unauthorized", "WWW-Authenticate")
    };
    extra.push((header, challenge(conn.domain(), &nonce, stale)));
    conn.respond(req, status, reason, Some(&random_token(13)), &extra);
}

async fn authenticate(
    conn: &Conn,
    req: &Request,
    proxy: bool,
) -> Option<(DigestCredentials, AuthorizedUser)> {
    let header = if proxy {
        "Proxy-Authorization"
    } else {
        "Authorization"
    };
    let Some((creds, stale)) = credentials(conn, req, header) else {
        send_challenge(conn, req, proxy, false);
        return None;
    };
    if stale {
        send_challenge(conn, req, proxy, true);
        return None;
    }
    let facts = request_facts(conn, req);
    let identity = conn.shared.identity();
    match conn
        .shared
        .directory
        .authenticate(&identity, &facts, &creds)
        .await
    {
        Ok(user) => Some((creds, user)),
        Err(e) => {
            tracing::info!(user = %creds.username, error = %e, "sip-ws: authentication failed");
            conn.respond(
                req,
                403,
                "Forbidden",
                Some(&random_token(13)),
                &common_headers(),
            );
            None
        }
    }
}

async fn on_register(conn: &Conn, req: Request) {
    let Some((creds, auth)) = authenticate(conn, &req, false).await else {
        return;
    };
    // inbound-reg-force-matching-username: the To user must be the authenticated user.
    let to_user = req
        .headers
        .get("To")
        .and_then(NameAddr::parse)
        .and_then(|n| n.parsed_uri())
        .and_then(|u| u.user);
    if !to_user.is_some_and(|u| u.eq_ignore_ascii_case(&creds.username)) {
        conn.respond(
            &req,
            403,
            "Forbidden",
            Some(&random_token(13)),
            &common_headers(),
        );
        return;
    }
    let contact_value = req.headers.get("Contact").unwrap_or_default().to_owned();
    let star = contact_value.trim() == "*";
    let contact = NameAddr::parse(&contact_value).filter(|_| !star);
    // sofia_reg_handle_register_token: the Expires header, else the Contact's parameter.
    let expires = registrar::exptime(req.headers.get("Expires"), contact.as_ref());
    let via_transport = req
        .headers
        .list("Via")
        .first()
        .and_then(|v| Via::parse(v))
        .map_or_else(|| "ws".to_owned(), |v| v.transport.to_ascii_lowercase());
    let wss = via_transport == "wss";
    let to_display = req
        .headers
        .get("To")
        .and_then(NameAddr::parse)
        .and_then(|t| t.display);
    let realm = auth.domain.clone();
    let reg = Registration {
        user: creds.username.clone(),
        realm,
        call_id: req.call_id().to_owned(),
        contact_ip: conn.peer.ip().to_string(),
        contact_port: conn.peer.port(),
        transport: via_transport,
        user_agent: req.headers.get("User-Agent").unwrap_or_default().to_owned(),
        expires_at: SystemTime::now() + Duration::from_secs(expires),
        ws: Some(WsBinding {
            // What sofia writes for `Contact: *` was not determined: no contact header.
            contact: contact
                .as_ref()
                .map(|c| registrar::contact_str(c, to_display.as_deref(), conn.peer, wss))
                .unwrap_or_default(),
            status: registrar::status(wss).to_owned(),
            exptime: if star { 0 } else { expires },
        }),
    };
    if expires == 0 || star {
        unregister(conn, &req, &reg, &auth);
        return;
    }
    let binding = SocketBinding {
        call_id: reg.call_id.clone(),
        user: reg.user.clone(),
        realm: reg.realm.clone(),
        network: conn.peer,
    };
    record_registration(&conn.shared, reg, &auth);
    conn.shared.sip_ws.bind_registration(conn.id, binding);
    // The Contact as registered, with the granted expiry.
    let contact_out = match &contact {
        Some(c) => {
            let params: String = c
                .params
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case("expires"))
                .map(|(n, v)| match v {
                    Some(v) => format!(";{n}={}", param_value_out(v)),
                    None => format!(";{n}"),
                })
                .collect();
            format!("<{}>{params};expires={expires}", c.uri)
        }
        None => String::new(),
    };
    let mut extra = vec![("Contact", contact_out), ("Date", http_date())];
    extra.extend(common_headers());
    conn.respond(&req, 200, "OK", Some(&random_token(13)), &extra);
}

/// An authorized REGISTER with `exptime` 0 (`sofia_reg_handle_register_token`):
/// `register_attempt`, the socket binding dropped (`sofia_reg_check_socket`), PRESENCE_IN
/// `Unregistered`, the user's registrations deleted, 200 OK without Contact, then
/// `sofia::unregister`.
fn unregister(conn: &Conn, req: &Request, reg: &Registration, auth: &AuthorizedUser) {
    conn.shared
        .sip_ws
        .release_registration(&reg.call_id, &reg.contact_ip, reg.contact_port);
    conn.shared.transact(|tx| {
        tx.out.extend(register_attempt_events(&tx.ctx, tx.cfg, reg));
        tx.out
            .push(registrar::unregister_presence(&tx.ctx, tx.cfg, reg));
        tx.st
            .registrations
            .retain(|r| !(r.user == reg.user && r.realm == reg.realm));
    });
    let mut extra = vec![("Date", http_date())];
    extra.extend(common_headers());
    conn.respond(req, 200, "OK", Some(&random_token(13)), &extra);
    conn.shared.fire_with(|ctx, _| {
        vec![registrar::unregister_event(
            ctx,
            &conn.shared.cfg,
            reg,
            auth,
        )]
    });
}

fn http_date() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// The channel's hangup cause for a dialplan `respond` code.
fn cause_for(code: u16) -> &'static str {
    match code {
        404 => "UNALLOCATED_NUMBER",
        403 => "CALL_REJECTED",
        486 => "USER_BUSY",
        503 => "NORMAL_TEMPORARY_FAILURE",
        _ => "CALL_REJECTED",
    }
}

fn reason_for(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        _ => "Declined",
    }
}

async fn on_invite(conn: &Conn, req: Request) {
    let to = req.headers.get("To").and_then(NameAddr::parse);
    if to.as_ref().and_then(NameAddr::tag).is_some() {
        on_reinvite(conn, &req);
        return;
    }
    let max = conn.shared.cfg.max_sessions;
    if lock(&conn.shared.state).channels.len() >= max as usize {
        conn.respond(
            &req,
            503,
            "Maximum Calls In Progress",
            Some(&random_token(13)),
            &[
                ("User-Agent", user_agent()),
                ("Retry-After", "300".to_owned()),
            ],
        );
        return;
    }
    // The server transaction exists from now on: a CANCEL during the lookups finds it.
    let call_id = req.call_id().to_owned();
    let to_tag = random_token(13);
    lock(&conn.dialogs).insert(
        call_id.clone(),
        Dialog {
            state: DialogState::Proceeding,
            uuid: None,
            invite: req.clone(),
            to_tag: to_tag.clone(),
            local_sdp: None,
            local_cseq: rand::rng().random_range(1000..50_000),
        },
    );
    let authenticated = authenticate(conn, &req, true).await;
    let still_proceeding = {
        let mut dialogs = lock(&conn.dialogs);
        match (&authenticated, dialogs.get_mut(&call_id)) {
            (Some(_), Some(d)) => d.state == DialogState::Proceeding,
            (None, Some(d)) => {
                // Challenged or refused: that response ended the transaction.
                d.state = DialogState::Terminated;
                false
            }
            (_, None) => false,
        }
    };
    let Some((creds, auth)) = authenticated.filter(|_| still_proceeding) else {
        return;
    };
    let offer_text = String::from_utf8_lossy(&req.body).into_owned();
    let offer = match sdp::Offer::parse(&offer_text) {
        Ok(o) => o,
        Err(e) => {
            tracing::info!(error = %e, "sip-ws: INVITE without a usable SDP offer");
            finish_rejected(conn, &req, &call_id, &to_tag, 488, "Not Acceptable Here");
            return;
        }
    };
    conn.respond(&req, 100, "Trying", None, &[("User-Agent", user_agent())]);

    let destination = Uri::parse(&req.uri)
        .and_then(|u| u.user)
        .unwrap_or_default();
    let from = req.headers.get("From").and_then(NameAddr::parse);
    let top_via = req.headers.list("Via").first().and_then(|v| Via::parse(v));
    let (local_media_port, ssrc) = {
        let mut rng = rand::rng();
        (rng.random_range(8192..16384) * 2, rng.random())
    };
    // The answer depends only on the offer and the node's side; computed now so the channel
    // carries the codec it negotiates (sent after routing, as before).
    let local = sdp::LocalMedia::random(
        &conn.shared.cfg.sip_ip,
        local_media_port,
        crate::events::micros(SystemTime::now()) / 1_000_000,
    );
    let answer = sdp::answer(&offer, &local);
    let audio = answer
        .as_ref()
        .ok()
        .and_then(|a| a.audio.as_ref())
        .and_then(|c| AudioCodec::negotiated(&c.pt, &c.encoding, c.fmtp.as_deref(), c.ptime))
        .unwrap_or_else(AudioCodec::pcma);
    let leg = SipLeg {
        user: creds.username.clone(),
        domain: auth.domain.clone(),
        transport: top_via
            .as_ref()
            .map_or_else(|| "ws".to_owned(), |v| v.transport.to_ascii_lowercase()),
        client_ip: conn.peer.ip().to_string(),
        client_port: conn.peer.port(),
        user_agent: req.headers.get("User-Agent").unwrap_or_default().to_owned(),
        display_name: from.as_ref().and_then(|f| f.display.clone()),
        call_id: call_id.clone(),
        from_tag: from
            .as_ref()
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default(),
        to_tag: to_tag.clone(),
        invite_branch: top_via
            .as_ref()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default(),
        ack_branch: top_via
            .as_ref()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default(),
        remote_sdp: offer_text,
        rtp_port: offer.media.first().map_or(0, |m| m.port),
        local_media_port,
        ssrc,
        sdp_session: local.session_id,
        sip_ip: conn.shared.cfg.sip_ip.clone(),
        sip_port: conn.ws_port(),
        profile: conn.shared.cfg.sip_profile.clone(),
        audio,
        local_sdp: answer.as_ref().ok().map(|a| a.sdp.clone()),
    };
    let call = sip_call(leg, &destination, &auth);
    let admitted = conn.shared.transact(|tx| tx.admit_sofia_call(call));
    let uuid = match admitted {
        Ok(uuid) => uuid,
        Err(e) => {
            let (code, reason) = match e {
                CallError::MaxSessions(_) => (503, "Maximum Calls In Progress"),
                _ => (500, "Server Internal Error"),
            };
            finish_rejected(conn, &req, &call_id, &to_tag, code, reason);
            return;
        }
    };
    if let Some(d) = lock(&conn.dialogs).get_mut(&call_id) {
        d.uuid = Some(uuid.clone());
    }
    conn.shared.sip_ws.attach(&uuid, conn.id);

    // CS_ROUTING: the dialplan lookup.
    let request = conn.shared.transact(|tx| {
        tx.st.channels.get(&uuid).map(|ch| {
            let (dest, context) = ch.destination();
            (
                ch.dialplan_request(&tx.ctx),
                dest.to_owned(),
                context.to_owned(),
            )
        })
    });
    let route = match request {
        Some((headers, dest, context)) => {
            let form = dialplan::dialplan_form(&conn.shared.cfg.name, &headers);
            dialplan::lookup(&conn.shared.dialplan_bindings(), &form, &context, &dest).await
        }
        None => Route::NotFound,
    };
    let (name, profile) = match route {
        Route::Conference { name, profile } => (name, profile),
        Route::Respond { code, reason } => {
            let reason = if reason.is_empty() {
                reason_for(code).to_owned()
            } else {
                reason
            };
            reject_routed(conn, &req, &call_id, &uuid, code, &reason, cause_for(code));
            return;
        }
        Route::NotFound => {
            reject_routed(
                conn,
                &req,
                &call_id,
                &uuid,
                404,
                "Not Found",
                "NO_ROUTE_DESTINATION",
            );
            return;
        }
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(error = %e, "sip-ws: no acceptable media");
            reject_routed(
                conn,
                &req,
                &call_id,
                &uuid,
                488,
                "Not Acceptable Here",
                "INCOMPATIBLE_DESTINATION",
            );
            return;
        }
    };
    let contact = local_contact(conn, &destination);
    let mut extra = vec![("Contact", contact)];
    extra.push(("User-Agent", user_agent()));
    extra.push(("Accept", "application/sdp".to_owned()));
    extra.push(("Allow", ALLOW.to_owned()));
    extra.push(("Supported", SUPPORTED.to_owned()));
    extra.push(("Allow-Events", ALLOW_EVENTS.to_owned()));
    extra.push(("Content-Type", "application/sdp".to_owned()));
    extra.push(("Content-Disposition", "session".to_owned()));
    let mut ok = conn.response(&req, 200, "OK", Some(&to_tag), &extra);
    ok.body = answer.sdp.clone().into_bytes();
    let user = creds.username.clone();
    let joined = conn.shared.transact(|tx| {
        // Answering and CANCEL exclude each other: the dialog state decides under the node
        // lock, and the 200 OK is queued before any BYE the join may cause.
        let proceeding = lock(&conn.dialogs)
            .get(&call_id)
            .is_some_and(|d| d.state == DialogState::Proceeding);
        if !proceeding {
            tx.local_hangup(&uuid, "ORIGINATOR_CANCEL");
            return None;
        }
        if !tx.st.channels.contains_key(&uuid) {
            return Some(Err(CallError::NoSuchChannel(uuid.clone())));
        }
        if let Some(d) = lock(&conn.dialogs).get_mut(&call_id) {
            d.state = DialogState::Answered;
            d.local_sdp = Some(answer.sdp.clone());
        }
        conn.send(Message::Response(ok.clone()));
        Some(tx.run_conference(&uuid, &name, &profile, &user))
    });
    match joined {
        None => tracing::debug!(%call_id, "call cancelled before the answer"),
        Some(Ok(call)) => {
            tracing::debug!(uuid = %call.uuid, member = call.member_id, conference = %call.conference, "sip-ws call joined")
        }
        Some(Err(CallError::NoSuchChannel(_))) => {
            // Hung up by the node while routing (hupall, uuid_kill).
            finish_rejected(
                conn,
                &req,
                &call_id,
                &to_tag,
                480,
                "Temporarily Unavailable",
            );
        }
        // A locked conference: answered, then the call ends (the BYE follows the 200 OK).
        Some(Err(e)) => tracing::info!(error = %e, "sip-ws call refused after answer"),
    }
}

/// Final non-2xx response for an INVITE whose channel never existed.
fn finish_rejected(
    conn: &Conn,
    req: &Request,
    call_id: &str,
    to_tag: &str,
    code: u16,
    reason: &str,
) {
    let was_proceeding = lock(&conn.dialogs).get_mut(call_id).is_some_and(|d| {
        let p = d.state == DialogState::Proceeding;
        d.state = DialogState::Terminated;
        p
    });
    if was_proceeding {
        conn.respond(req, code, reason, Some(to_tag), &common_headers());
    }
}

/// The dialplan refused a routed call: the channel hangs up with `cause`, the INVITE gets
/// `code`.
fn reject_routed(
    conn: &Conn,
    req: &Request,
    call_id: &str,
    uuid: &str,
    code: u16,
    reason: &str,
    cause: &'static str,
) {
    conn.shared.sip_ws.detach(uuid);
    let to_tag = lock(&conn.dialogs)
        .get(call_id)
        .map(|d| d.to_tag.clone())
        .unwrap_or_default();
    conn.shared.transact(|tx| {
        tx.local_hangup(uuid, cause);
    });
    finish_rejected(conn, req, call_id, &to_tag, code, reason);
}

/// A re-INVITE in an answered dialog gets the same SDP again.
fn on_reinvite(conn: &Conn, req: &Request) {
    let answer = {
        let mut dialogs = lock(&conn.dialogs);
        match dialogs.get_mut(req.call_id()) {
            Some(d) if matches!(d.state, DialogState::Answered | DialogState::Confirmed) => {
                d.invite = req.clone();
                d.local_sdp.clone().map(|sdp| (sdp, d.to_tag.clone()))
            }
            _ => None,
        }
    };
    let Some((sdp, to_tag)) = answer else {
        no_dialog(conn, req);
        return;
    };
    conn.respond(req, 100, "Trying", None, &[("User-Agent", user_agent())]);
    let user = Uri::parse(&req.uri)
        .and_then(|u| u.user)
        .unwrap_or_default();
    let contact = local_contact(conn, &user);
    let mut extra = vec![("Contact", contact)];
    extra.extend(common_headers());
    extra.push(("Content-Type", "application/sdp".to_owned()));
    let mut ok = conn.response(req, 200, "OK", Some(&to_tag), &extra);
    ok.body = sdp.into_bytes();
    conn.send(Message::Response(ok));
}

fn on_ack(conn: &Conn, req: &Request) {
    if let Some(d) = lock(&conn.dialogs).get_mut(req.call_id())
        && d.state == DialogState::Answered
    {
        d.state = DialogState::Confirmed;
    }
}

fn on_bye(conn: &Conn, req: &Request) {
    let uuid = {
        let mut dialogs = lock(&conn.dialogs);
        match dialogs.get_mut(req.call_id()) {
            Some(d) if matches!(d.state, DialogState::Answered | DialogState::Confirmed) => {
                d.state = DialogState::Terminated;
                Some(d.uuid.clone())
            }
            _ => None,
        }
    };
    let Some(uuid) = uuid else {
        no_dialog(conn, req);
        return;
    };
    if let Some(uuid) = uuid {
        conn.shared.sip_ws.detach(&uuid);
        let _ = conn.shared.transact(|tx| tx.remote_hangup(&uuid));
    }
    conn.respond(req, 200, "OK", None, &common_headers());
}

fn on_cancel(conn: &Conn, req: &Request) {
    let cancelled = {
        let mut dialogs = lock(&conn.dialogs);
        match dialogs.get_mut(req.call_id()) {
            Some(d) => {
                let was = d.state == DialogState::Proceeding;
                if was {
                    d.state = DialogState::Terminated;
                }
                Some(was.then(|| (d.invite.clone(), d.to_tag.clone(), d.uuid.clone())))
            }
            None => None,
        }
    };
    let Some(cancelled) = cancelled else {
        no_dialog(conn, req);
        return;
    };
    match cancelled {
        Some((invite, to_tag, uuid)) => {
            conn.respond(req, 200, "OK", Some(&to_tag), &common_headers());
            conn.respond(
                &invite,
                487,
                "Request Terminated",
                Some(&to_tag),
                &common_headers(),
            );
            if let Some(uuid) = uuid {
                conn.shared.sip_ws.detach(&uuid);
                conn.shared.transact(|tx| {
                    tx.local_hangup(&uuid, "ORIGINATOR_CANCEL");
                });
            }
        }
        None => conn.respond(req, 200, "OK", None, &common_headers()),
    }
}

/// The node ended the channel: BYE to the browser if the call was answered.
fn send_bye(conn: &Conn, uuid: &str) {
    let bye = {
        let mut dialogs = lock(&conn.dialogs);
        let Some(d) = dialogs
            .values_mut()
            .find(|d| d.uuid.as_deref() == Some(uuid))
        else {
            return;
        };
        if !matches!(d.state, DialogState::Answered | DialogState::Confirmed) {
            return;
        }
        d.state = DialogState::Terminated;
        d.local_cseq += 1;
        build_bye(conn, d)
    };
    conn.send(Message::Request(bye));
}

fn build_bye(conn: &Conn, d: &Dialog) -> Request {
    let inv = &d.invite;
    let target = inv
        .headers
        .get("Contact")
        .and_then(NameAddr::parse)
        .map(|c| c.uri)
        .unwrap_or_else(|| inv.uri.clone());
    let mut h = Headers::new();
    h.push(
        "Via",
        format!(
            "SIP/2.0/WS {}:{};branch=z9hG4bK{}",
            conn.shared.cfg.sip_ip,
            conn.ws_port(),
            random_token(16)
        ),
    );
    h.push("Max-Forwards", "70");
    // Our side is the INVITE's To (with our tag); theirs its From.
    let to = inv.headers.get("To").unwrap_or_default();
    let from = match NameAddr::parse(to) {
        Some(n) if n.tag().is_none() => format!("{to};tag={}", d.to_tag),
        _ => to.to_owned(),
    };
    h.push("From", from);
    h.push("To", inv.headers.get("From").unwrap_or_default());
    h.push("Call-ID", inv.call_id());
    h.push("CSeq", format!("{} BYE", d.local_cseq));
    h.push("User-Agent", user_agent());
    h.push("Allow", ALLOW);
    h.push("Supported", SUPPORTED);
    h.push("Reason", "Q.850;cause=16;text=\"NORMAL_CLEARING\"");
    Request {
        method: "BYE".to_owned(),
        uri: target,
        headers: h,
        body: Vec::new(),
    }
}

/// A parameter value as it goes back on the wire: bare when it is a SIP token (RFC 3261
/// `token`), else a quoted string (JsSIP's `+sip.instance="<urn:uuid:…>"` must stay quoted, or
/// JsSIP cannot parse the 200 to its REGISTER).
fn param_value_out(value: &str) -> String {
    let token = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c));
    if token {
        value.to_owned()
    } else {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod param_tests {
    use super::param_value_out;

    #[test]
    fn non_token_values_are_quoted_again() {
        assert_eq!(param_value_out("ws"), "ws");
        assert_eq!(
            param_value_out("<urn:uuid:0c8d1c5e-0000-4000-8000-000000000000>"),
            "\"<urn:uuid:0c8d1c5e-0000-4000-8000-000000000000>\""
        );
        assert_eq!(param_value_out("a\"b"), "\"a\\\"b\"");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{NodeConfig, SimNode};

    fn registration(user: &str, ws: bool, expires_at: SystemTime) -> Registration {
        Registration {
            user: user.into(),
            realm: "127.0.0.1".into(),
            call_id: format!("reg-{user}"),
            contact_ip: "127.0.0.1".into(),
            contact_port: 40000,
            transport: if ws { "ws" } else { "udp" }.into(),
            user_agent: "JsSIP 3.10.1".into(),
            expires_at,
            ws: ws.then(|| WsBinding {
                contact: "\"\" <sip:k@h.invalid;transport=ws;fs_nat=yes;fs_path=x>".into(),
                status: "Registered(WS-NAT)".into(),
                exptime: 30,
            }),
        }
    }

    #[tokio::test]
    async fn expiry_removes_ws_registrations_after_the_late_margin_only() {
        let node = SimNode::start(NodeConfig::new("fs1")).await.unwrap();
        let shared = node.shared_for_tests();
        let t0 = SystemTime::now();
        shared.transact(|tx| {
            tx.st.registrations.push(registration("ws", true, t0));
            tx.st.registrations.push(registration("udp", false, t0));
        });
        shared.sip_ws.bind_registration(
            7,
            SocketBinding {
                call_id: "reg-ws".into(),
                user: "ws".into(),
                realm: "127.0.0.1".into(),
                network: "127.0.0.1:40000".parse().unwrap(),
            },
        );
        // Stored `expires` = REGISTER + exptime + 60 s: not yet at +59 s.
        assert_eq!(
            expire_registrations(shared, t0 + Duration::from_secs(59)),
            0
        );
        assert_eq!(
            expire_registrations(shared, t0 + Duration::from_secs(60)),
            1
        );
        let left: Vec<String> = lock(&shared.state)
            .registrations
            .iter()
            .map(|r| r.user.clone())
            .collect();
        assert_eq!(left, ["udp"], "SimNode::register's UDP rows never expire");
        // sofia_reg_del_callback → sofia_reg_check_socket: no socket-close event later.
        assert!(shared.sip_ws.take_registrations(7).is_empty());
    }
}
