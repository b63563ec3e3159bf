//! The mod_xml_curl side of a simulated FreeSWITCH: directory lookups and SIP digest checks.
//!
//! # Why this exists
//!
//! Switchyard serves the FreeSWITCH *directory* over HTTP (mod_xml_curl): every authenticated
//! REGISTER or INVITE that reaches a node makes the node POST a form to our server and parse the
//! XML we answer. Since FreeSWITCH cannot run here, fsim reproduces that exchange as faithfully as
//! the captures in `tests/fixtures/freeswitch/xml-curl-*.txt` allow, so Switchyard's directory
//! endpoint is tested against the same bytes a real node sends and the same (sometimes
//! surprising) rules a real node applies to the answer.
//!
//! # What is simulated
//!
//! [`DirectoryClient::sip_auth`] plays both sides of a digest-authenticated SIP request:
//!
//! 1. *sofia* issues a challenge (a fresh UUID nonce, realm = the node's domain);
//! 2. the simulated *user agent* answers it from its password (RFC 2617 MD5, `qop=auth`,
//!    `nc=00000001`, a random cnonce). Two UA flavours are modelled after the captures:
//!    `udp`/`tcp`/`tls` behave like SIPp (digest uri `sip:<domain>:5060`, even for INVITE;
//!    contact host = client IP) and `ws`/`wss` behave like JsSIP (digest uri = request URI,
//!    random `<token>.invalid` contact, no port in the request URI);
//! 3. *mod_xml_curl* POSTs the `sip_auth` form — a new TCP connection per request, the exact header
//!    set and order of libcurl, the field order of `sofia_reg_parse_auth` (requests #3–#7 of the
//!    capture), the first five fields raw and the rest encoded with `switch_url_encode`;
//! 4. the answer is processed like FreeSWITCH does: only HTTP 200 counts, the XML pre-processor
//!    drops every line containing `<?`, `<include>` or `</include>`, `result status="not found"`
//!    means not found, the user is looked up in the domain (by `id` or `number-alias`, skipping
//!    pointers) and domain/group params and variables are merged into it;
//! 5. sofia verifies the digest with the user's `a1-hash` or `password`.
//!
//! FreeSWITCH **lets a user in without checking anything** when the user has neither `password`
//! nor `a1-hash` (unless `allow-empty-password` is false). fsim reproduces that, logs a warning and
//! counts it ([`DirectoryClient::open_auth_count`]) so tests can prove Switchyard never answers
//! such a user.
//!
//! Not reproduced: the static-directory fallback (fsim has no static users, so every fallback
//! fails, as on a production node whose vanilla users were removed), HTTP redirects, https,
//! the user cache (`cacheable`), `auth-acl`, `user-agent-filter`, `$${var}` expansion and
//! `X-PRE-PROCESS` execution (a warning is logged when an answer contains them).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use quick_xml::events::{BytesStart, Event};
use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// mod_xml_curl's default `response-max-bytes` (1 MiB): larger answers are discarded.
pub const RESPONSE_MAX_BYTES: usize = 1024 * 1024;

/// The SIP port of the simulated sofia profile (vanilla `internal`), as SIPp addresses it.
pub const SIP_PORT: u16 = 5060;

/// `Event-Calling-Line-Number` of `sofia_reg_parse_auth` in the captured build (the protocol doc
/// says 3125; the capture, which wins, says 3124).
const SOFIA_REG_PARSE_AUTH_LINE: u32 = 3124;

/// Longest response header block we accept before giving up on the answer.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Deepest element nesting we parse; FreeSWITCH directory documents are ~8 levels deep.
const MAX_XML_DEPTH: usize = 256;

/// How a node reaches its directory server (the mod_xml_curl `directory` binding).
#[derive(Clone)]
pub struct DirectoryConfig {
    /// `gateway-url`; `None` means no binding at all: every authentication fails with
    /// [`AuthFailure::NoDirectory`] (fsim has no static directory).
    pub url: Option<String>,
    /// `gateway-credentials` (`user`, `pass`), sent as HTTP basic auth.
    pub credentials: Option<(String, String)>,
    /// `timeout`: the whole transfer, connection included. `Duration::ZERO` means no limit
    /// (FreeSWITCH's default, which production must never use).
    pub timeout: Duration,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            url: None,
            credentials: None,
            timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for DirectoryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryConfig")
            .field("url", &self.url)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What a node says about itself in the standard event headers of every directory request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// `switchname`: sent as `hostname`, `FreeSWITCH-Hostname` and `FreeSWITCH-Switchname`.
    pub switchname: String,
    /// `Core-UUID` (changes on every restart).
    pub core_uuid: String,
    /// `FreeSWITCH-IPv4`.
    pub ipv4: String,
    /// `FreeSWITCH-IPv6`.
    pub ipv6: String,
    /// The directory domain (= realm of the challenges and `key_value` of the lookup).
    pub domain: String,
    /// The sofia profile name (`sip_profile`), e.g. `internal`.
    pub sip_profile: String,
}

/// The SIP method being authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipMethod {
    /// REGISTER (401 / `Authorization`).
    Register,
    /// INVITE (407 / `Proxy-Authorization`).
    Invite,
}

impl SipMethod {
    /// The method token as it appears on the wire (`sip_auth_method`).
    pub fn as_str(self) -> &'static str {
        match self {
            SipMethod::Register => "REGISTER",
            SipMethod::Invite => "INVITE",
        }
    }
}

/// One digest-authenticated SIP request of a simulated user agent.
#[derive(Debug, Clone)]
pub struct SipAuthRequest {
    /// REGISTER or INVITE.
    pub method: SipMethod,
    /// Digest username (also From/To user).
    pub username: String,
    /// The password the UA answers the challenge with.
    pub password: String,
    /// The dialed number of an INVITE (`sip_request_user`); ignored for REGISTER.
    pub destination: Option<String>,
    /// Via transport, lowercase: `udp` (SIPp-like UA) or `ws` (JsSIP-like UA); `tcp`, `tls` and
    /// `wss` are accepted too.
    pub transport: String,
    /// Source IP of the request (`ip`).
    pub client_ip: String,
    /// Source port of the request (`client_port`).
    pub client_port: u16,
    /// `Call-ID` (`sip_call_id`); omitted when empty.
    pub call_id: String,
    /// `User-Agent` header; FreeSWITCH sends `unknown` when it is empty.
    pub user_agent: String,
}

/// A user the directory let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedUser {
    /// The matched user's `id` attribute (may differ from the username when matched through
    /// `number-alias`).
    pub user_id: String,
    /// The directory domain the user was found in.
    pub domain: String,
    /// The user's `<variables>` merged with its group's and domain's (user values win), in
    /// document order: these become registration/channel variables (`user_context`, ...).
    pub variables: Vec<(String, String)>,
}

/// Why an authentication failed (every variant ends in a SIP 403 on a real node).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The directory answered "not found", or the answer lacks the domain or the user.
    #[error("user not found in the directory")]
    NotFound,
    /// The digest response does not match the user's password / a1-hash.
    #[error("wrong password (digest response mismatch)")]
    WrongPassword,
    /// The user exists but may not authenticate this way.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The directory request failed or its answer was unusable (status, transport, size, XML).
    #[error("directory request failed: {0}")]
    Http(String),
    /// The directory did not answer within the configured timeout.
    #[error("directory request timed out")]
    Timeout,
    /// No mod_xml_curl directory binding is configured.
    #[error("no directory binding configured")]
    NoDirectory,
}

/// The mod_xml_curl directory client of one node. Cheap to clone; clones share the delay, the
/// event sequence and the open-auth counter.
#[derive(Debug, Clone)]
pub struct DirectoryClient {
    inner: Arc<Inner>,
    sequence: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Inner {
    config: DirectoryConfig,
    /// The parsed `url`, or why it cannot be used.
    target: Option<Result<Target, String>>,
    delay_micros: AtomicU64,
    open_auths: AtomicU64,
}

impl DirectoryClient {
    /// Creates the client. An unusable URL is reported by every [`sip_auth`](Self::sip_auth) call
    /// as [`AuthFailure::Http`] (like a node whose binding points nowhere).
    pub fn new(cfg: DirectoryConfig) -> Self {
        let target = cfg.url.as_deref().map(Target::parse);
        if let Some(Err(e)) = &target {
            tracing::warn!(error = %e, "unusable xml_curl gateway-url");
        }
        Self {
            inner: Arc::new(Inner {
                config: cfg,
                target,
                delay_micros: AtomicU64::new(0),
                open_auths: AtomicU64::new(0),
            }),
            sequence: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Shares the node's `Event-Sequence` counter (FreeSWITCH numbers all events of a node from
    /// one counter). Without it the client counts on its own.
    pub fn with_event_sequence(mut self, sequence: Arc<AtomicU64>) -> Self {
        self.sequence = sequence;
        self
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &DirectoryConfig {
        &self.inner.config
    }

    /// Fault injection (slow directory): sleep this long before sending each request. The sleep
    /// counts against the timeout, as a slow server would.
    pub fn set_delay(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.inner.delay_micros.store(micros, Ordering::Relaxed);
    }

    /// The current injected delay.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.inner.delay_micros.load(Ordering::Relaxed))
    }

    /// How many authentications succeeded *without any check* because the directory returned a
    /// user with neither `password` nor `a1-hash` (FreeSWITCH's allow-empty-password default).
    pub fn open_auth_count(&self) -> u64 {
        self.inner.open_auths.load(Ordering::Relaxed)
    }

    /// Simulates a digest-authenticated REGISTER/INVITE arriving at `identity`'s sofia profile:
    /// challenge, UA answer, mod_xml_curl lookup and sofia verification.
    pub async fn sip_auth(
        &self,
        identity: &NodeIdentity,
        req: &SipAuthRequest,
    ) -> Result<AuthorizedUser, AuthFailure> {
        let (facts, digest_uri) = SipRequestFacts::simulated(identity, req);
        let credentials = DigestCredentials::answer(identity, req, &digest_uri);
        self.authenticate(identity, &facts, &credentials).await
    }

    /// Authenticates a real SIP request whose digest `credentials` came from the wire (the
    /// `Authorization` / `Proxy-Authorization` of a REGISTER or INVITE): the `sip_auth` form
    /// of `sofia_reg_parse_auth`, then sofia's verification against the returned user.
    pub async fn authenticate(
        &self,
        identity: &NodeIdentity,
        facts: &SipRequestFacts,
        credentials: &DigestCredentials,
    ) -> Result<AuthorizedUser, AuthFailure> {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let form = sip_auth_form(identity, facts, credentials, sequence, SystemTime::now());
        tracing::debug!(
            user = %credentials.username,
            method = %credentials.method,
            "xml_curl directory lookup (sip_auth)"
        );
        let body = self.post_form(form.as_bytes()).await?;
        let user = lookup_user(&body, &identity.domain, &credentials.username)?;
        match verify(&user, credentials) {
            Verdict::Ok => {}
            Verdict::Open => {
                self.inner.open_auths.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    user = %credentials.username,
                    domain = %identity.domain,
                    "directory user has no password and no a1-hash: FreeSWITCH lets it in \
                     WITHOUT checking the digest (allow-empty-password defaults to true)"
                );
            }
            Verdict::Fail(e) => return Err(e),
        }
        Ok(AuthorizedUser {
            user_id: user.id,
            domain: identity.domain.clone(),
            variables: user.variables,
        })
    }

    /// POSTs a mod_xml_curl form to this binding and returns the answer body (HTTP 200 only).
    pub async fn post_form(&self, form: &[u8]) -> Result<Vec<u8>, AuthFailure> {
        match &self.inner.target {
            None => Err(AuthFailure::NoDirectory),
            Some(Err(e)) => Err(AuthFailure::Http(e.clone())),
            Some(Ok(t)) => self.fetch(t, form).await,
        }
    }

    /// Whether a `gateway-url` is configured.
    pub fn is_bound(&self) -> bool {
        self.inner.target.is_some()
    }

    /// One mod_xml_curl transfer: delay, connect, send, read; bounded by the timeout.
    async fn fetch(&self, target: &Target, body: &[u8]) -> Result<Vec<u8>, AuthFailure> {
        let request = build_http_request(target, self.inner.config.credentials.as_ref(), body);
        let delay = self.delay();
        let transfer = async {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            http_exchange(target, &request).await
        };
        let timeout = self.inner.config.timeout;
        let result = if timeout.is_zero() {
            transfer.await
        } else {
            match tokio::time::timeout(timeout, transfer).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::error!(url = %target.url, ?timeout, "xml_curl: timeout");
                    return Err(AuthFailure::Timeout);
                }
            }
        };
        let (status, body) = result.map_err(|e| {
            tracing::error!(url = %target.url, error = %e, "xml_curl: transfer failed");
            AuthFailure::Http(e)
        })?;
        if status != 200 {
            tracing::error!(url = %target.url, status, "Received HTTP error {status} trying to fetch {}", target.url);
            return Err(AuthFailure::Http(format!("HTTP status {status}")));
        }
        Ok(body)
    }
}

// ---------------------------------------------------------------------------------------------
// The simulated SIP request and its digest answer.

/// What sofia takes from a SIP request into the `sip_auth` form (see the module docs for the
/// two simulated UA flavours; the SIP-over-WebSocket endpoint fills it from the real request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipRequestFacts {
    /// `User-Agent` (FreeSWITCH sends `unknown` when empty).
    pub user_agent: String,
    /// `Call-ID` (omitted when empty).
    pub call_id: String,
    pub contact_user: String,
    pub contact_host: String,
    pub to_user: String,
    pub to_host: String,
    pub to_port: Option<u16>,
    /// Via transport, lowercase (`udp`, `ws`, `wss`).
    pub via_protocol: String,
    pub from_user: String,
    pub from_host: String,
    pub request_user: Option<String>,
    pub request_host: String,
    pub request_port: Option<u16>,
    /// Request headers named `X-*` with a non-empty value, as received.
    pub x_headers: Vec<(String, String)>,
    /// Source address of the request (`ip`, `client_port`).
    pub client_ip: String,
    pub client_port: u16,
}

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect()
}

impl SipRequestFacts {
    /// The request a simulated UA sends, and the digest uri it uses.
    fn simulated(identity: &NodeIdentity, req: &SipAuthRequest) -> (Self, String) {
        let domain = identity.domain.clone();
        let transport = if req.transport.is_empty() {
            "udp".to_owned()
        } else {
            req.transport.to_ascii_lowercase()
        };
        let websocket = transport == "ws" || transport == "wss";
        let destination = match req.method {
            SipMethod::Invite => req.destination.clone().filter(|d| !d.is_empty()),
            SipMethod::Register => None,
        };
        let to_user = destination.clone().unwrap_or_else(|| req.username.clone());
        if websocket {
            // JsSIP: request URI without port, digest over the request URI, random contact.
            let digest_uri = match &destination {
                Some(d) => format!("sip:{d}@{domain}"),
                None => format!("sip:{domain}"),
            };
            let facts = Self {
                user_agent: req.user_agent.clone(),
                call_id: req.call_id.clone(),
                client_ip: req.client_ip.clone(),
                client_port: req.client_port,
                x_headers: Vec::new(),
                contact_user: random_token(8),
                contact_host: format!("{}.invalid", random_token(12)),
                to_user,
                to_host: domain.clone(),
                to_port: None,
                via_protocol: transport,
                from_user: req.username.clone(),
                from_host: domain.clone(),
                request_user: destination,
                request_host: domain,
                request_port: None,
            };
            (facts, digest_uri)
        } else {
            // SIPp: request URI `sip:[user@]host:5060`, digest uri `sip:host:5060` (even for
            // INVITE), the INVITE's To carries the port too.
            let facts = Self {
                user_agent: req.user_agent.clone(),
                call_id: req.call_id.clone(),
                client_ip: req.client_ip.clone(),
                client_port: req.client_port,
                x_headers: Vec::new(),
                contact_user: req.username.clone(),
                contact_host: req.client_ip.clone(),
                to_port: destination.as_ref().map(|_| SIP_PORT),
                to_user,
                to_host: domain.clone(),
                via_protocol: transport,
                from_user: req.username.clone(),
                from_host: domain.clone(),
                request_user: destination,
                request_host: domain,
                request_port: Some(SIP_PORT),
            };
            (facts, format!("sip:{}:{SIP_PORT}", identity.domain))
        }
    }
}

/// The digest parameters of an `Authorization` / `Proxy-Authorization` header, plus the
/// method of the request that carried them (RFC 2617 §3.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    /// `qop`, `nc` and `cnonce` are used only when all three are present (as sofia does).
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    /// The request method (`REGISTER`, `INVITE`, ...): HA2 = MD5(`method:uri`).
    pub method: String,
}

impl DigestCredentials {
    /// The simulated UA answers sofia's challenge (`realm` = domain, `nonce` = fresh UUID)
    /// with its password.
    fn answer(identity: &NodeIdentity, req: &SipAuthRequest, digest_uri: &str) -> Self {
        let realm = identity.domain.clone();
        let nonce = uuid::Uuid::new_v4().to_string();
        let cnonce = format!("{:08x}", rand::rng().random::<u32>());
        let nc = "00000001".to_owned();
        let qop = "auth".to_owned();
        let ha1 = a1_hash(&req.username, &realm, &req.password);
        let response = digest_response(
            &ha1,
            &nonce,
            Some((&nc, &cnonce, &qop)),
            req.method.as_str(),
            digest_uri,
        );
        Self {
            username: req.username.clone(),
            realm,
            nonce,
            uri: digest_uri.to_owned(),
            response,
            qop: Some(qop),
            nc: Some(nc),
            cnonce: Some(cnonce),
            method: req.method.as_str().to_owned(),
        }
    }

    /// `(nc, cnonce, qop)` when all three are present.
    fn qop_triple(&self) -> Option<(&str, &str, &str)> {
        match (&self.nc, &self.cnonce, &self.qop) {
            (Some(nc), Some(cnonce), Some(qop)) => Some((nc, cnonce, qop)),
            _ => None,
        }
    }
}

/// Lowercase hex MD5 of `input`.
pub fn md5_hex(input: &str) -> String {
    let digest = Md5::digest(input.as_bytes());
    let mut out = String::with_capacity(32);
    for b in digest {
        out.push(char::from(HEX_LOWER[usize::from(b >> 4)]));
        out.push(char::from(HEX_LOWER[usize::from(b & 0xf)]));
    }
    out
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// HA1 = MD5(`user:realm:password`), the value of a directory `a1-hash` param.
pub fn a1_hash(user: &str, realm: &str, password: &str) -> String {
    md5_hex(&format!("{user}:{realm}:{password}"))
}

/// The RFC 2617 digest response as sofia computes it: with `(nc, cnonce, qop)` it is
/// MD5(`HA1:nonce:nc:cnonce:qop:HA2`), without MD5(`HA1:nonce:HA2`); HA2 = MD5(`METHOD:uri`).
pub fn digest_response(
    ha1: &str,
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce, qop)) => md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")),
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The form.

/// Builds the `sip_auth` form body with the field order of `sofia_reg_parse_auth`.
fn sip_auth_form(
    identity: &NodeIdentity,
    msg: &SipRequestFacts,
    digest: &DigestCredentials,
    sequence: u64,
    now: SystemTime,
) -> String {
    let mut form = Form::new(
        &identity.switchname,
        "directory",
        "domain",
        "name",
        &identity.domain,
    );
    form.event_prelude(
        identity,
        "REQUEST_PARAMS",
        now,
        (
            "sofia_reg.c",
            "sofia_reg_parse_auth",
            SOFIA_REG_PARSE_AUTH_LINE,
        ),
        sequence,
    );
    form.field("action", "sip_auth");
    form.field("sip_profile", &identity.sip_profile);
    let ua = if msg.user_agent.is_empty() {
        "unknown"
    } else {
        &msg.user_agent
    };
    form.field("sip_user_agent", ua);
    form.field("sip_auth_username", &digest.username);
    form.field("sip_auth_realm", &digest.realm);
    form.field("sip_auth_nonce", &digest.nonce);
    form.field("sip_auth_uri", &digest.uri);
    form.optional("sip_contact_user", &msg.contact_user);
    form.optional("sip_contact_host", &msg.contact_host);
    form.optional("sip_to_user", &msg.to_user);
    form.optional("sip_to_host", &msg.to_host);
    if let Some(port) = msg.to_port {
        form.field("sip_to_port", &port.to_string());
    }
    form.optional("sip_via_protocol", &msg.via_protocol);
    form.optional("sip_from_user", &msg.from_user);
    form.optional("sip_from_host", &msg.from_host);
    form.optional("sip_call_id", &msg.call_id);
    if let Some(user) = &msg.request_user {
        form.optional("sip_request_user", user);
    }
    form.optional("sip_request_host", &msg.request_host);
    if let Some(port) = msg.request_port {
        form.field("sip_request_port", &port.to_string());
    }
    for (name, value) in &msg.x_headers {
        form.optional(name, value);
    }
    if let Some((nc, cnonce, qop)) = digest.qop_triple() {
        form.field("sip_auth_qop", qop);
        form.field("sip_auth_cnonce", cnonce);
        form.field("sip_auth_nc", nc);
    }
    form.field("sip_auth_response", &digest.response);
    form.field("sip_auth_method", &digest.method);
    form.field("client_port", &msg.client_port.to_string());
    form.field("key", "id");
    let user = if digest.username.is_empty() {
        "nobody"
    } else {
        &digest.username
    };
    form.field("user", user);
    form.field("domain", &identity.domain);
    form.field("ip", &msg.client_ip);
    form.finish()
}

/// A mod_xml_curl form: five raw fields, then `&Name=<switch_url_encode(value)>`.
pub(crate) struct Form {
    out: String,
}

impl Form {
    pub(crate) fn new(
        hostname: &str,
        section: &str,
        tag: &str,
        key_name: &str,
        key_value: &str,
    ) -> Self {
        // mod_xml_curl inserts these five without encoding them.
        Self {
            out: format!(
                "hostname={hostname}&section={section}&tag_name={tag}&key_name={key_name}&key_value={key_value}"
            ),
        }
    }

    pub(crate) fn field(&mut self, name: &str, value: &str) {
        self.out.push('&');
        self.out.push_str(name);
        self.out.push('=');
        self.out.push_str(&esl::urlencode::encode(value));
    }

    fn optional(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            self.field(name, value);
        }
    }

    /// The standard headers every FreeSWITCH event starts with.
    fn event_prelude(
        &mut self,
        identity: &NodeIdentity,
        event_name: &str,
        now: SystemTime,
        (file, function, line): (&str, &str, u32),
        sequence: u64,
    ) {
        let micros = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let utc: chrono::DateTime<chrono::Utc> = now.into();
        let local: chrono::DateTime<chrono::Local> = now.into();
        self.field("Event-Name", event_name);
        self.field("Core-UUID", &identity.core_uuid);
        self.field("FreeSWITCH-Hostname", &identity.switchname);
        self.field("FreeSWITCH-Switchname", &identity.switchname);
        self.field("FreeSWITCH-IPv4", &identity.ipv4);
        self.field("FreeSWITCH-IPv6", &identity.ipv6);
        self.field(
            "Event-Date-Local",
            &local.format("%Y-%m-%d %H:%M:%S").to_string(),
        );
        self.field(
            "Event-Date-GMT",
            &utc.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
        self.field("Event-Date-Timestamp", &micros.to_string());
        self.field("Event-Calling-File", file);
        self.field("Event-Calling-Function", function);
        self.field("Event-Calling-Line-Number", &line.to_string());
        self.field("Event-Sequence", &sequence.to_string());
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP, the libcurl way.

/// A parsed `http://` gateway URL.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    /// `host:port` to connect to (IPv6 in brackets).
    connect: String,
    /// The `Host` header value (port omitted when 80, like libcurl).
    host_header: String,
    /// Path and query of the request line.
    path: String,
    /// `user:pass@` of the URL, used when no credentials are configured.
    userinfo: Option<(String, String)>,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "unsupported scheme {scheme:?} in {url:?} (fsim speaks http only)"
                ));
            }
            None => return Err(format!("not an absolute http URL: {url:?}")),
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = path.split('#').next().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((info, hp)) => {
                let (u, p) = info.split_once(':').unwrap_or((info, ""));
                (Some((u.to_owned(), p.to_owned())), hp)
            }
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("bad IPv6 host in {url:?}"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("bad authority in {url:?}")),
            };
            (format!("[{h}]"), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(format!("no host in {url:?}"));
        }
        let port: u16 = match port {
            None | Some("") => 80,
            Some(p) => p
                .parse()
                .map_err(|_| format!("bad port {p:?} in {url:?}"))?,
        };
        let host_header = if port == 80 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        Ok(Self {
            url: url.to_owned(),
            connect: format!("{host}:{port}"),
            host_header,
            path,
            userinfo,
        })
    }
}

/// The request bytes libcurl sends for mod_xml_curl's POST (header order as captured; with
/// credentials libcurl puts `Authorization` right after `Host`; the empty `Expect:` that
/// mod_xml_curl adds suppresses the header entirely).
fn build_http_request(
    target: &Target,
    credentials: Option<&(String, String)>,
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\n",
        target.path, target.host_header
    );
    if let Some((user, pass)) = credentials.or(target.userinfo.as_ref()) {
        head.push_str("Authorization: Basic ");
        head.push_str(&base64(format!("{user}:{pass}").as_bytes()));
        head.push_str("\r\n");
    }
    head.push_str("User-Agent: freeswitch-xml/1.0\r\nAccept: */*\r\n");
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    head.push_str("Content-Type: application/x-www-form-urlencoded\r\n\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sends `request` on a fresh connection and reads one response: `(status, body)`.
async fn http_exchange(target: &Target, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut stream = TcpStream::connect(&target.connect)
        .await
        .map_err(|e| format!("connect to {}: {e}", target.connect))?;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let response = read_response(&mut stream).await;
    // libcurl's easy handle is cleaned up after each lookup: the connection is never reused.
    let _ = stream.shutdown().await;
    response
}

/// Reads an HTTP/1.x response: interim 1xx responses are skipped; the body is delimited by
/// `Content-Length`, chunked encoding or end of stream, and limited to [`RESPONSE_MAX_BYTES`].
async fn read_response(stream: &mut TcpStream) -> Result<(u16, Vec<u8>), String> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        let (head_len, status, framing) = loop {
            if let Some(end) = find_head_end(&buf) {
                let head = parse_head(&buf[..end])?;
                break (end, head.0, head.1);
            }
            if buf.len() > MAX_RESPONSE_HEAD {
                return Err("response header too large".to_owned());
            }
            if !read_more(stream, &mut buf).await? {
                return Err(if buf.is_empty() {
                    "empty reply from server".to_owned()
                } else {
                    "connection closed inside the response header".to_owned()
                });
            }
        };
        buf.drain(..head_len);
        if (100..200).contains(&status) {
            continue;
        }
        let body = match framing {
            Framing::Length(len) => {
                if len > RESPONSE_MAX_BYTES {
                    return Err(format!(
                        "response of {len} bytes exceeds response-max-bytes"
                    ));
                }
                while buf.len() < len {
                    if !read_more(stream, &mut buf).await? {
                        return Err("connection closed inside the response body".to_owned());
                    }
                }
                buf.truncate(len);
                buf
            }
            Framing::Chunked => read_chunked(stream, buf).await?,
            Framing::Close => {
                while read_more(stream, &mut buf).await? {
                    if buf.len() > RESPONSE_MAX_BYTES {
                        return Err("response exceeds response-max-bytes".to_owned());
                    }
                }
                buf
            }
        };
        return Ok((status, body));
    }
}

/// Appends what the socket has; `false` at end of stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<bool, String> {
    let mut chunk = [0u8; 8192];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn parse_head(head: &[u8]) -> Result<(u16, Framing), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        return Err(format!(
            "not an HTTP response: {:?}",
            truncate(status_line, 80)
        ));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| format!("bad status line {:?}", truncate(status_line, 80)))?;
    let mut framing = Framing::Close;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("content-length")
            && !matches!(framing, Framing::Chunked)
        {
            let len = value
                .parse()
                .map_err(|_| format!("bad Content-Length {:?}", truncate(value, 40)))?;
            framing = Framing::Length(len);
        }
    }
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    Ok((status, framing))
}

async fn read_chunked(stream: &mut TcpStream, mut buf: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                break i;
            }
            if buf.len() > MAX_RESPONSE_HEAD {
                return Err("bad chunk header".to_owned());
            }
            if !read_more(stream, &mut buf).await? {
                return Err("connection closed inside a chunk header".to_owned());
            }
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size_text = line
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let size = usize::from_str_radix(&size_text, 16)
            .map_err(|_| format!("bad chunk size {:?}", truncate(&size_text, 20)))?;
        buf.drain(..=line_end);
        if size == 0 {
            return Ok(body);
        }
        if body.len().saturating_add(size) > RESPONSE_MAX_BYTES {
            return Err("response exceeds response-max-bytes".to_owned());
        }
        // The chunk, then its CRLF.
        while buf.len() < size + 2 {
            if !read_more(stream, &mut buf).await? {
                return Err("connection closed inside a chunk".to_owned());
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size);
        if buf.starts_with(b"\r\n") {
            buf.drain(..2);
        } else if buf.starts_with(b"\n") {
            buf.drain(..1);
        } else {
            return Err("missing CRLF after chunk".to_owned());
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// ---------------------------------------------------------------------------------------------
// Processing the answer.

/// FreeSWITCH's XML pre-processor, as far as a directory answer is concerned: every line
/// containing `<?`, `<include>` or `</include>` is dropped entirely (so an XML declaration on the
/// same line as content takes that content with it).
pub fn preprocess(document: &str) -> String {
    let mut out = String::with_capacity(document.len());
    for line in document.split_inclusive('\n') {
        if dropped_by_preprocessor(line) {
            continue;
        }
        if line.contains("$${") || line.contains("<X-PRE-PROCESS") || line.contains("<!--#") {
            tracing::warn!(
                line = %truncate(line.trim_end(), 200),
                "directory answer contains a pre-processor directive: FreeSWITCH would expand or \
                 execute it (fsim does not)"
            );
        }
        out.push_str(line);
    }
    out
}

/// Whether the pre-processor drops `line` whole (also used for configuration files, `fsconf`).
pub(crate) fn dropped_by_preprocessor(line: &str) -> bool {
    line.contains("<?") || line.contains("<include>") || line.contains("</include>")
}

/// A directory user after merging, as sofia sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DirectoryUser {
    id: String,
    params: Vec<(String, String)>,
    variables: Vec<(String, String)>,
}

impl DirectoryUser {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Processes a directory answer like FreeSWITCH: pre-process, parse, "not found" document,
/// directory section, domain, user (merged with group and domain).
fn lookup_user(body: &[u8], domain: &str, username: &str) -> Result<DirectoryUser, AuthFailure> {
    let text = String::from_utf8_lossy(body);
    let cooked = preprocess(&text);
    let root = parse_xml(&cooked).map_err(|e| {
        tracing::error!(error = %e, "xml_curl: error parsing the directory answer");
        AuthFailure::Http(format!("unparsable directory document: {e}"))
    })?;
    let sections = || root.children_named("section");
    let not_found = sections()
        .filter(|s| s.attr("name") == Some("result"))
        .flat_map(|s| s.children_named("result"))
        .any(|r| r.attr("status") == Some("not found"));
    if not_found {
        return Err(AuthFailure::NotFound);
    }
    let Some(directory) = sections().find(|s| {
        s.attr("name")
            .is_some_and(|n| n.eq_ignore_ascii_case("directory"))
    }) else {
        tracing::warn!("directory answer has no <section name=\"directory\">");
        return Err(AuthFailure::NotFound);
    };
    let Some(dom) = directory.children_named("domain").find(|d| {
        d.attr("name")
            .is_some_and(|n| n.eq_ignore_ascii_case(domain))
    }) else {
        tracing::warn!(%domain, "directory answer lacks the domain");
        return Err(AuthFailure::NotFound);
    };
    let Some((user, group)) = find_user(dom, username) else {
        tracing::warn!("Can't find user [{username}@{domain}]");
        return Err(AuthFailure::NotFound);
    };
    let mut params = Vec::new();
    let mut variables = Vec::new();
    for scope in [Some(user), group, Some(dom)].into_iter().flatten() {
        merge(&mut params, scope, "params", "param");
        merge(&mut variables, scope, "variables", "variable");
    }
    Ok(DirectoryUser {
        id: user.attr("id").unwrap_or(username).to_owned(),
        params,
        variables,
    })
}

/// Appends `scope`'s `<container><item name= value=>` pairs whose name is not present yet.
fn merge(into: &mut Vec<(String, String)>, scope: &Element, container: &str, item: &str) {
    for c in scope.children_named(container) {
        for p in c.children_named(item) {
            let (Some(name), Some(value)) = (p.attr("name"), p.attr("value")) else {
                continue;
            };
            if !into.iter().any(|(n, _)| n == name) {
                into.push((name.to_owned(), value.to_owned()));
            }
        }
    }
}

/// `switch_xml_locate_user_in_domain`: `domain/users/user` (or `domain/user` when there is no
/// `<users>`), then `domain/groups/group/users/user`. Pointers are skipped.
fn find_user<'a>(
    domain: &'a Element,
    username: &str,
) -> Option<(&'a Element, Option<&'a Element>)> {
    let direct: Vec<&Element> = if domain.children_named("users").next().is_some() {
        domain.children_named("users").collect()
    } else {
        vec![domain]
    };
    if let Some(user) = direct.into_iter().find_map(|c| find_user_in(c, username)) {
        return Some((user, None));
    }
    for groups in domain.children_named("groups") {
        for group in groups.children_named("group") {
            for users in group.children_named("users") {
                if let Some(user) = find_user_in(users, username) {
                    return Some((user, Some(group)));
                }
            }
        }
    }
    None
}

fn find_user_in<'a>(container: &'a Element, username: &str) -> Option<&'a Element> {
    let candidates = || {
        container
            .children_named("user")
            .filter(|u| u.attr("type") != Some("pointer"))
    };
    let matches = |attr: &str, u: &&Element| {
        u.attr(attr)
            .is_some_and(|v| v.eq_ignore_ascii_case(username))
    };
    candidates()
        .find(|u| matches("id", u))
        .or_else(|| candidates().find(|u| matches("number-alias", u)))
}

/// FreeSWITCH's `switch_true`.
fn switch_true(v: &str) -> bool {
    let v = v.trim();
    ["yes", "on", "true", "t", "enabled", "active", "allow"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
        || v.parse::<i64>().is_ok_and(|n| n != 0)
}

enum Verdict {
    Ok,
    /// Let in without checking (no password, no a1-hash).
    Open,
    Fail(AuthFailure),
}

/// `sofia_reg_parse_auth`'s verdict for the merged user.
fn verify(user: &DirectoryUser, digest: &DigestCredentials) -> Verdict {
    if digest.method.eq_ignore_ascii_case("REGISTER")
        && user.param("sip-forbid-register").is_some_and(switch_true)
    {
        return Verdict::Fail(AuthFailure::Forbidden("sip-forbid-register".to_owned()));
    }
    let password = user.param("password").unwrap_or_default();
    let a1 = user.param("a1-hash").unwrap_or_default();
    if password.is_empty() && a1.is_empty() {
        let allow_empty = user.param("allow-empty-password").is_none_or(switch_true);
        return if allow_empty {
            Verdict::Open
        } else {
            Verdict::Fail(AuthFailure::Forbidden(
                "no password and allow-empty-password=false".to_owned(),
            ))
        };
    }
    // a1-hash wins over password and is used verbatim (it must be lowercase hex).
    let ha1 = if a1.is_empty() {
        a1_hash(&digest.username, &digest.realm, password)
    } else {
        a1.to_owned()
    };
    let expected = digest_response(
        &ha1,
        &digest.nonce,
        digest.qop_triple(),
        &digest.method,
        &digest.uri,
    );
    if expected.eq_ignore_ascii_case(&digest.response) {
        Verdict::Ok
    } else {
        Verdict::Fail(AuthFailure::WrongPassword)
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal element tree (text is irrelevant to the directory).

#[derive(Debug, Default)]
pub(crate) struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
}

impl Element {
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn children_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn element_from(start: &BytesStart<'_>) -> Element {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let attrs = start
        .attributes()
        .with_checks(false)
        .filter_map(Result::ok)
        .map(|a| {
            let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            // Unknown entities are kept as written (ezxml does the same).
            let value = a
                .unescape_value()
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).into_owned());
            (key, value)
        })
        .collect();
    Element {
        name,
        attrs,
        children: Vec::new(),
    }
}

/// Parses the root element; an empty document, unbalanced tags or excessive nesting are errors.
pub(crate) fn parse_xml(text: &str) -> Result<Element, String> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_XML_DEPTH {
                    return Err("elements nested too deeply".to_owned());
                }
                stack.push(element_from(&start));
            }
            Event::Empty(start) => {
                let el = element_from(&start);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::End(_) => {
                let Some(el) = stack.pop() else {
                    return Err("unexpected closing tag".to_owned());
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => return Ok(el),
                }
            }
            Event::Eof => {
                return Err(if stack.is_empty() {
                    "root tag missing".to_owned()
                } else {
                    "unclosed tag at end of document".to_owned()
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn identity() -> NodeIdentity {
        NodeIdentity {
            switchname: "vm".into(),
            core_uuid: "60521194-8708-47ec-8892-6f189eab12ad".into(),
            ipv4: "192.0.2.2".into(),
            ipv6: "fd00::2".into(),
            domain: "127.0.0.1".into(),
            sip_profile: "internal".into(),
        }
    }

    #[test]
    fn digest_matches_the_captured_register() {
        // Request #3: REGISTER 1001, a1-hash from response #3.
        let a1 = a1_hash("1001", "127.0.0.1", "secret1001");
        assert_eq!(a1, "1c13f0eb55501935b8c882b618f78401");
        let r = digest_response(
            &a1,
            "927f26d8-be73-439c-9045-0eead5d1749d",
            Some(("00000001", "6b8b4567", "auth")),
            "REGISTER",
            "sip:127.0.0.1:5060",
        );
        assert_eq!(r, "25a0a97bd849f0724eea14745bc8da2b");
    }

    #[test]
    fn digest_matches_the_captured_invite_and_ws_register() {
        let a1 = a1_hash("1001", "127.0.0.1", "secret1001");
        let r = digest_response(
            &a1,
            "c96375b4-1125-46fe-bb04-b4899df9c427",
            Some(("00000001", "6b8b4567", "auth")),
            "INVITE",
            "sip:127.0.0.1:5060",
        );
        assert_eq!(r, "1b59186b57bb8810e7fddf0b4a937603");
        let a1 = a1_hash("1002", "127.0.0.1", "secret1002");
        assert_eq!(a1, "e116e2c4db021925824bcf5b39c0a9a9");
        let r = digest_response(
            &a1,
            "506c2eb8-63f1-4389-b9bf-0203d14598c9",
            Some(("00000001", "deadbeef", "auth")),
            "REGISTER",
            "sip:127.0.0.1",
        );
        assert_eq!(r, "144a3bd28735ac4e1d6aef1a7b4ded8d");
    }

    #[test]
    fn captured_digest_verifies_against_captured_answer() {
        let doc = include_str!("../../../tests/fixtures/freeswitch/xml-curl-responses.txt");
        let start = doc.find("===== response to xml_curl request #3").unwrap();
        let body_start = start + doc[start..].find('\n').unwrap() + 1;
        let end = body_start + doc[body_start..].find("===== end of response #3").unwrap();
        let user = lookup_user(&doc.as_bytes()[body_start..end], "127.0.0.1", "1001").unwrap();
        let mut digest = DigestCredentials {
            username: "1001".into(),
            realm: "127.0.0.1".into(),
            nonce: "927f26d8-be73-439c-9045-0eead5d1749d".into(),
            uri: "sip:127.0.0.1:5060".into(),
            qop: Some("auth".into()),
            cnonce: Some("6b8b4567".into()),
            nc: Some("00000001".into()),
            response: "25A0A97BD849F0724EEA14745BC8DA2B".into(),
            method: "REGISTER".into(),
        };
        assert!(matches!(verify(&user, &digest), Verdict::Ok));
        // The same response for another method, or a changed nc, does not verify.
        digest.method = "INVITE".into();
        assert!(matches!(
            verify(&user, &digest),
            Verdict::Fail(AuthFailure::WrongPassword)
        ));
        digest.method = "REGISTER".into();
        digest.nc = Some("00000002".into());
        assert!(matches!(
            verify(&user, &digest),
            Verdict::Fail(AuthFailure::WrongPassword)
        ));
        assert_eq!(user.id, "1001");
        assert_eq!(user.variables[0], ("user_context".into(), "default".into()));
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn target_parsing() {
        let t = Target::parse("http://127.0.0.1:8089/directory").unwrap();
        assert_eq!(
            (t.connect.as_str(), t.host_header.as_str(), t.path.as_str()),
            ("127.0.0.1:8089", "127.0.0.1:8089", "/directory")
        );
        let t = Target::parse("http://example.com?x=1").unwrap();
        assert_eq!(
            (t.connect.as_str(), t.host_header.as_str(), t.path.as_str()),
            ("example.com:80", "example.com", "/?x=1")
        );
        let t = Target::parse("http://u:p@[::1]:81/a/b?c#frag").unwrap();
        assert_eq!(
            (t.connect.as_str(), t.host_header.as_str(), t.path.as_str()),
            ("[::1]:81", "[::1]:81", "/a/b?c")
        );
        assert_eq!(t.userinfo, Some(("u".into(), "p".into())));
        assert!(Target::parse("https://x/").is_err());
        assert!(Target::parse("x/").is_err());
        assert!(Target::parse("http://:80/").is_err());
        assert!(Target::parse("http://h:99999/").is_err());
    }

    #[test]
    fn form_prelude_format() {
        let req = SipAuthRequest {
            method: SipMethod::Register,
            username: "1001".into(),
            password: "x".into(),
            destination: None,
            transport: "udp".into(),
            client_ip: "127.0.0.1".into(),
            client_port: 5071,
            call_id: "1-15938@127.0.0.1".into(),
            user_agent: "sipp-fixture".into(),
        };
        let id = identity();
        let (msg, uri) = SipRequestFacts::simulated(&id, &req);
        let digest = DigestCredentials::answer(&id, &req, &uri);
        let now = UNIX_EPOCH + Duration::from_micros(1_795_315_530_036_759);
        let form = sip_auth_form(&id, &msg, &digest, 454, now);
        assert!(form.contains(
            "&Event-Date-GMT=Sun,%2022%20Nov%202026%2002%3A45%3A30%20GMT&Event-Date-Timestamp=1795315530036759&"
        ));
        assert!(form.contains("&FreeSWITCH-IPv6=fd00%3A%3A2&"));
        assert!(form.contains("&sip_call_id=1-15938%40127.0.0.1&"));
    }

    #[test]
    fn switch_true_semantics() {
        for t in [
            "true", "TRUE", "yes", "on", "1", "t", "allow", "enabled", "active", "-3",
        ] {
            assert!(switch_true(t), "{t}");
        }
        for f in ["false", "no", "0", "", "off", "nope"] {
            assert!(!switch_true(f), "{f}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let doc = "<a>".repeat(100_000);
        assert!(parse_xml(&doc).is_err());
    }
}
