//! mod_xml_curl client + sofia digest verification, against the real-FreeSWITCH captures and
//! against a small HTTP directory server.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use fsim::directory::{
    AuthFailure, DirectoryClient, DirectoryConfig, NodeIdentity, SipAuthRequest, SipMethod,
    a1_hash, digest_response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../tests/fixtures/freeswitch/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Extracts block `n` of a capture file: the header line ends in `(<len> bytes ...)`, and exactly
/// `<len>` bytes follow it.
fn captured_block(file: &str, marker: &str, n: usize) -> Vec<u8> {
    let data = fixture(file);
    let text = String::from_utf8_lossy(&data).into_owned();
    let header = format!("{marker}{n}");
    let start = text
        .find(&format!("{header} "))
        .or_else(|| text.find(&format!("{header}:")))
        .unwrap_or_else(|| panic!("{header} not in {file}"));
    let line_end = start + text[start..].find('\n').unwrap();
    let line = &text[start..line_end];
    let open = line.rfind('(').unwrap();
    let len: usize = line[open + 1..].split(' ').next().unwrap().parse().unwrap();
    data[line_end + 1..line_end + 1 + len].to_vec()
}

fn captured_request(n: usize) -> Vec<u8> {
    captured_block("xml-curl-requests.txt", "===== xml_curl request #", n)
}

fn captured_response(n: usize) -> String {
    String::from_utf8(captured_block(
        "xml-curl-responses.txt",
        "===== response to xml_curl request #",
        n,
    ))
    .unwrap()
}

fn identity() -> NodeIdentity {
    // The captured node.
    NodeIdentity {
        switchname: "vm".into(),
        core_uuid: "60521194-8708-47ec-8892-6f189eab12ad".into(),
        ipv4: "192.0.2.2".into(),
        ipv6: "fd00::2".into(),
        domain: "127.0.0.1".into(),
        sip_profile: "internal".into(),
    }
}

fn register(user: &str, password: &str) -> SipAuthRequest {
    SipAuthRequest {
        method: SipMethod::Register,
        username: user.into(),
        password: password.into(),
        destination: None,
        transport: "udp".into(),
        client_ip: "127.0.0.1".into(),
        client_port: 5071,
        call_id: "1-15938@127.0.0.1".into(),
        user_agent: "sipp-fixture".into(),
    }
}

fn invite(user: &str, password: &str, dest: &str) -> SipAuthRequest {
    SipAuthRequest {
        method: SipMethod::Invite,
        destination: Some(dest.into()),
        ..register(user, password)
    }
}

fn client(url: String) -> DirectoryClient {
    DirectoryClient::new(DirectoryConfig {
        url: Some(url),
        credentials: None,
        timeout: Duration::from_secs(5),
    })
}

// ---------------------------------------------------------------------------------------------
// A raw-socket HTTP server that records requests byte for byte (like the capture's server).

#[derive(Clone)]
struct RawServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<AtomicUsize>,
    /// Bytes a client sent after its first request on the same connection (keep-alive reuse).
    extra_bytes: Arc<AtomicUsize>,
    response: Arc<Mutex<(Vec<u8>, Duration)>>,
}

fn http_200(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl RawServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = RawServer {
            addr: listener.local_addr().unwrap(),
            requests: Arc::default(),
            connections: Arc::default(),
            extra_bytes: Arc::default(),
            response: Arc::new(Mutex::new((http_200(b""), Duration::ZERO))),
        };
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let need = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("Content-Length: "))
                                .map(|v| v.trim().parse().unwrap())
                                .unwrap_or(0);
                            break end + 4 + len;
                        }
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    };
                    while buf.len() < need {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let extra = buf.len() - need;
                    buf.truncate(need);
                    s.requests.lock().unwrap().push(buf);
                    let (response, delay) = s.response.lock().unwrap().clone();
                    tokio::time::sleep(delay).await;
                    let _ = sock.write_all(&response).await;
                    let _ = sock.shutdown().await;
                    // Anything after the request means the client reused the connection.
                    let mut total = extra;
                    while let Ok(n) = sock.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        total += n;
                    }
                    s.extra_bytes.fetch_add(total, Ordering::SeqCst);
                });
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://{}/directory", self.addr)
    }

    fn answer(&self, raw: Vec<u8>) {
        self.response.lock().unwrap().0 = raw;
    }

    fn answer_slowly(&self, raw: Vec<u8>, delay: Duration) {
        *self.response.lock().unwrap() = (raw, delay);
    }

    fn last_request(&self) -> Vec<u8> {
        self.requests.lock().unwrap().last().cloned().unwrap()
    }
}

/// Splits a raw request into its header lines and form fields.
fn split_request(raw: &[u8]) -> (Vec<String>, Vec<(String, String)>) {
    let text = std::str::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let headers = head.split("\r\n").map(str::to_owned).collect();
    let fields = body
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (headers, fields)
}

/// Values that legitimately differ between the capture and a simulated run.
const VARYING: &[&str] = &[
    "sip_auth_nonce",
    "sip_auth_cnonce",
    "sip_auth_response",
    "Event-Date-Local",
    "Event-Date-GMT",
    "Event-Date-Timestamp",
    "Event-Sequence",
];

fn normalise(raw: &[u8], extra_varying: &[&str]) -> (Vec<String>, Vec<(String, String)>) {
    let (headers, fields) = split_request(raw);
    let headers = headers
        .into_iter()
        .map(|h| {
            if h.starts_with("Host: ") {
                "Host: <host>".to_owned()
            } else if h.starts_with("Content-Length: ") {
                "Content-Length: <len>".to_owned()
            } else {
                h
            }
        })
        .collect();
    let fields = fields
        .into_iter()
        .map(|(k, v)| {
            if VARYING.contains(&k.as_str()) || extra_varying.contains(&k.as_str()) {
                (k, "<varies>".to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    (headers, fields)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {name}"))
}

/// Runs `req` against a raw server answering capture response #n, then compares the request
/// with capture request #n.
async fn compare_with_capture(n: usize, req: SipAuthRequest, password: &str, extra: &[&str]) {
    let server = RawServer::start().await;
    server.answer(http_200(captured_response(n).as_bytes()));
    let c = client(server.url());
    let user = c.sip_auth(&identity(), &req).await;
    let user = user.unwrap_or_else(|e| panic!("request #{n}: {e}"));
    assert_eq!(user.user_id, req.username);
    assert_eq!(user.domain, "127.0.0.1");
    assert_eq!(
        user.variables,
        vec![
            ("user_context".to_owned(), "default".to_owned()),
            (
                "effective_caller_id_name".to_owned(),
                format!("Extension {}", req.username)
            ),
            (
                "effective_caller_id_number".to_owned(),
                req.username.clone()
            ),
        ]
    );
    let ours = server.last_request();
    let theirs = captured_request(n);

    // Byte-level sanity of our request: Content-Length is the body's length, CRLF headers.
    let text = String::from_utf8(ours.clone()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
    assert!(head.starts_with("POST /directory HTTP/1.1\r\nHost: 127.0.0.1:"));
    assert!(!body.contains('+') && !body.contains(' '));

    let (our_headers, our_fields) = normalise(&ours, extra);
    let (their_headers, their_fields) = normalise(&theirs, extra);
    assert_eq!(our_headers, their_headers, "request #{n}: headers");
    let our_names: Vec<&str> = our_fields.iter().map(|(k, _)| k.as_str()).collect();
    let their_names: Vec<&str> = their_fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(our_names, their_names, "request #{n}: field order");
    assert_eq!(our_fields, their_fields, "request #{n}: field values");

    // The varying values have the captured shape.
    let (_, fields) = split_request(&ours);
    let nonce = field(&fields, "sip_auth_nonce");
    assert!(uuid::Uuid::parse_str(nonce).is_ok(), "{nonce}");
    let cnonce = field(&fields, "sip_auth_cnonce");
    let response = field(&fields, "sip_auth_response");
    assert_eq!(response.len(), 32);
    assert!(field(&fields, "Event-Date-Local").contains("%20"));
    assert!(field(&fields, "Event-Date-GMT").ends_with("%20GMT"));
    assert!(field(&fields, "Event-Date-GMT").contains(",%20"));
    assert_eq!(field(&fields, "Event-Date-Timestamp").len(), 16);
    // And the UA's response is the real digest of its password.
    let uri = field(&fields, "sip_auth_uri").replace("%3A", ":");
    let method = field(&fields, "sip_auth_method");
    let expected = digest_response(
        &a1_hash(&req.username, "127.0.0.1", password),
        nonce,
        Some(("00000001", cnonce, "auth")),
        method,
        &uri,
    );
    assert_eq!(response, expected);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn register_udp_matches_capture_3_and_4() {
    compare_with_capture(3, register("1001", "secret1001"), "secret1001", &[]).await;
    let mut req = register("1002", "secret1002");
    req.client_port = 5072;
    req.call_id = "1-15940@127.0.0.1".into();
    compare_with_capture(4, req, "secret1002", &[]).await;
}

#[tokio::test]
async fn invite_udp_matches_capture_5_and_6() {
    let mut req = invite("1001", "secret1001", "3000");
    req.client_port = 5081;
    req.call_id = "1-15942@127.0.0.1".into();
    compare_with_capture(5, req, "secret1001", &[]).await;
    let mut req = invite("1002", "secret1002", "3000");
    req.client_port = 5082;
    req.call_id = "1-15948@127.0.0.1".into();
    compare_with_capture(6, req, "secret1002", &[]).await;
}

#[tokio::test]
async fn register_ws_matches_capture_7() {
    let req = SipAuthRequest {
        transport: "ws".into(),
        client_port: 52824,
        call_id: "ws-reg-call-1".into(),
        user_agent: "python-ws-fixture".into(),
        ..register("1002", "secret1002")
    };
    // The contact is a random token (`ws1002@df7jal23ls0d.invalid` in the capture's UA).
    compare_with_capture(
        7,
        req,
        "secret1002",
        &["sip_contact_user", "sip_contact_host"],
    )
    .await;
}

#[tokio::test]
async fn each_request_uses_a_new_connection() {
    let server = RawServer::start().await;
    server.answer(http_200(captured_response(3).as_bytes()));
    let c = client(server.url());
    for _ in 0..3 {
        c.sip_auth(&identity(), &register("1001", "secret1001"))
            .await
            .unwrap();
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
    // Give the server tasks a moment to see the client's close.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.extra_bytes.load(Ordering::SeqCst), 0);
    // Event-Sequence increases.
    let seqs: Vec<u64> = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            field(&split_request(r).1, "Event-Sequence")
                .parse()
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
}

#[tokio::test]
async fn basic_auth_header_follows_host_like_libcurl() {
    let server = RawServer::start().await;
    server.answer(http_200(captured_response(3).as_bytes()));
    let c = DirectoryClient::new(DirectoryConfig {
        url: Some(server.url()),
        credentials: Some(("fs".into(), "s3cr:et".into())),
        timeout: Duration::from_secs(5),
    });
    c.sip_auth(&identity(), &register("1001", "secret1001"))
        .await
        .unwrap();
    let (headers, _) = split_request(&server.last_request());
    // base64("fs:s3cr:et")
    assert_eq!(headers[1].split(':').next(), Some("Host"));
    assert_eq!(headers[2], "Authorization: Basic ZnM6czNjcjpldA==");
    assert_eq!(headers[3], "User-Agent: freeswitch-xml/1.0");
    assert!(!headers.iter().any(|h| h.starts_with("Expect")));
    // Debug output never shows the password.
    let dbg = format!("{:?}", c.config());
    assert!(!dbg.contains("s3cr"), "{dbg}");
}

// ---------------------------------------------------------------------------------------------
// An axum directory server.

type Answer = Arc<dyn Fn(&HashMap<String, String>) -> (StatusCode, String) + Send + Sync>;

#[derive(Clone)]
struct DirState {
    answer: Answer,
    auth_headers: Arc<Mutex<Vec<Option<String>>>>,
    forms: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

async fn directory_handler(
    State(st): State<DirState>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let form: HashMap<String, String> = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = String::from_utf8(esl::urlencode::decode(v.as_bytes())).unwrap();
            (k.to_owned(), v)
        })
        .collect();
    st.auth_headers.lock().unwrap().push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    );
    let out = (st.answer)(&form);
    st.forms.lock().unwrap().push(form);
    out
}

async fn axum_directory(
    answer: impl Fn(&HashMap<String, String>) -> (StatusCode, String) + Send + Sync + 'static,
) -> (String, DirState) {
    let st = DirState {
        answer: Arc::new(answer),
        auth_headers: Arc::default(),
        forms: Arc::default(),
    };
    let app = Router::new()
        .route("/freeswitch/directory", post(directory_handler))
        .with_state(st.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/freeswitch/directory"), st)
}

const NOT_FOUND: &str = r#"<document type="freeswitch/xml">
  <section name="result">
    <result status="not found"/>
  </section>
</document>
"#;

/// A directory document for `127.0.0.1` holding the given `<user>` elements.
fn doc(users: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<document type="freeswitch/xml">
  <section name="directory">
    <domain name="127.0.0.1">
      <params>
        <param name="dial-string" value="{{^^:sip_invite_domain=${{dialed_domain}}}}"/>
      </params>
      <variables>
        <variable name="domain_var" value="d"/>
        <variable name="user_context" value="from-domain"/>
      </variables>
      <groups><group name="default">
      <variables><variable name="group_var" value="g"/><variable name="toll_allow" value="group"/></variables>
      <users>
{users}
      </users></group></groups>
    </domain>
  </section>
</document>
"#
    )
}

fn user_with_params(id: &str, params: &str) -> String {
    format!(
        r#"      <user id="{id}">
        <params>
{params}
        </params>
        <variables>
          <variable name="user_context" value="default"/>
          <variable name="toll_allow" value="local"/>
        </variables>
      </user>"#
    )
}

fn a1_user(id: &str, password: &str) -> String {
    user_with_params(
        id,
        &format!(
            r#"<param name="a1-hash" value="{}"/><param name="allow-empty-password" value="false"/>"#,
            a1_hash(id, "127.0.0.1", password)
        ),
    )
}

fn password_user(id: &str, password: &str) -> String {
    user_with_params(
        id,
        &format!(r#"<param name="password" value="{password}"/>"#),
    )
}

/// A server that knows 1000 (a1-hash "alpha") and 2000 (password "beta").
async fn standard_directory() -> (String, DirState) {
    axum_directory(|form| {
        let body = match form.get("user").map(String::as_str) {
            Some("1000") => doc(&a1_user("1000", "alpha")),
            Some("2000") => doc(&password_user("2000", "beta")),
            _ => NOT_FOUND.to_owned(),
        };
        (StatusCode::OK, body)
    })
    .await
}

#[tokio::test]
async fn good_password_is_accepted_with_a1_hash_and_with_password() {
    let (url, st) = standard_directory().await;
    let c = client(url);
    let u = c
        .sip_auth(&identity(), &register("1000", "alpha"))
        .await
        .unwrap();
    assert_eq!(u.user_id, "1000");
    // User values win, then group, then domain; in that order.
    assert_eq!(
        u.variables,
        [
            ("user_context", "default"),
            ("toll_allow", "local"),
            ("group_var", "g"),
            ("domain_var", "d"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let u = c
        .sip_auth(&identity(), &invite("2000", "beta", "3000"))
        .await
        .unwrap();
    assert_eq!(u.user_id, "2000");
    let forms = st.forms.lock().unwrap();
    assert_eq!(forms[0]["action"], "sip_auth");
    assert_eq!(forms[0]["sip_auth_method"], "REGISTER");
    assert_eq!(forms[1]["sip_auth_method"], "INVITE");
    assert_eq!(forms[1]["sip_request_user"], "3000");
    assert_eq!(forms[1]["key_value"], "127.0.0.1");
    assert!(st.auth_headers.lock().unwrap().iter().all(Option::is_none));
    assert_eq!(c.open_auth_count(), 0);
}

#[tokio::test]
async fn wrong_password_fails() {
    let (url, _) = standard_directory().await;
    let c = client(url);
    for req in [
        register("1000", "wrong"),
        register("2000", "wrong"),
        invite("1000", "alpha ", "3000"),
        register("1000", ""),
    ] {
        assert_eq!(
            c.sip_auth(&identity(), &req).await,
            Err(AuthFailure::WrongPassword),
            "{req:?}"
        );
    }
}

#[tokio::test]
async fn not_found_answer_fails() {
    let (url, _) = standard_directory().await;
    let c = client(url);
    assert_eq!(
        c.sip_auth(&identity(), &register("9999", "x")).await,
        Err(AuthFailure::NotFound)
    );
}

#[tokio::test]
async fn missing_user_or_domain_fails() {
    let (url, _) = axum_directory(|form| {
        let body = match form.get("user").map(String::as_str) {
            // Our domain, someone else.
            Some("1000") => doc(&a1_user("1001", "alpha")),
            // Another domain.
            Some("2000") => doc(&a1_user("2000", "beta")).replace("127.0.0.1", "example.com"),
            // No directory section at all.
            _ => "<document><section name=\"dialplan\"/></document>\n".to_owned(),
        };
        (StatusCode::OK, body)
    })
    .await;
    let c = client(url);
    for u in ["1000", "2000", "3000"] {
        assert_eq!(
            c.sip_auth(&identity(), &register(u, "alpha")).await,
            Err(AuthFailure::NotFound),
            "{u}"
        );
    }
}

#[tokio::test]
async fn non_200_fails_even_with_a_good_document() {
    for status in [
        StatusCode::NOT_FOUND,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::CREATED,
        StatusCode::UNAUTHORIZED,
    ] {
        let (url, _) = axum_directory(move |_| (status, doc(&a1_user("1000", "alpha")))).await;
        let r = client(url)
            .sip_auth(&identity(), &register("1000", "alpha"))
            .await;
        assert!(
            matches!(&r, Err(AuthFailure::Http(m)) if m.contains(status.as_str())),
            "{status}: {r:?}"
        );
    }
}

#[tokio::test]
async fn xml_declaration_on_the_content_line_loses_the_document() {
    let one_line = doc(&a1_user("1000", "alpha")).replace('\n', "");
    assert!(one_line.starts_with("<?xml"));
    let (url, _) = axum_directory(move |_| (StatusCode::OK, one_line.clone())).await;
    let r = client(url)
        .sip_auth(&identity(), &register("1000", "alpha"))
        .await;
    assert!(matches!(r, Err(AuthFailure::Http(_))), "{r:?}");

    // On its own line the declaration is harmless; `<include>` lines are dropped too.
    let ok = doc(&a1_user("1000", "alpha"))
        .replace("<groups>", "<include>\n<groups>")
        .replace("</groups>", "</groups>\n</include>");
    let (url, _) = axum_directory(move |_| (StatusCode::OK, ok.clone())).await;
    client(url)
        .sip_auth(&identity(), &register("1000", "alpha"))
        .await
        .unwrap();

    // ...but a user on a line with `<?` silently disappears.
    let lost = doc(&format!(
        "<?ignored?>{}",
        a1_user("1000", "alpha").replace('\n', "")
    ));
    let (url, _) = axum_directory(move |_| (StatusCode::OK, lost.clone())).await;
    assert_eq!(
        client(url)
            .sip_auth(&identity(), &register("1000", "alpha"))
            .await,
        Err(AuthFailure::NotFound)
    );
}

#[tokio::test]
async fn timeout_is_honoured() {
    let server = RawServer::start().await;
    server.answer_slowly(
        http_200(doc(&a1_user("1000", "alpha")).as_bytes()),
        Duration::from_secs(3),
    );
    let c = DirectoryClient::new(DirectoryConfig {
        url: Some(server.url()),
        credentials: None,
        timeout: Duration::from_millis(300),
    });
    let t0 = Instant::now();
    let r = c.sip_auth(&identity(), &register("1000", "alpha")).await;
    assert_eq!(r, Err(AuthFailure::Timeout));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The server did get the request (a real slow server).
    assert_eq!(server.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn injected_delay_slows_down_and_counts_against_the_timeout() {
    let (url, st) = standard_directory().await;
    let c = DirectoryClient::new(DirectoryConfig {
        url: Some(url),
        credentials: None,
        timeout: Duration::from_millis(500),
    });
    c.set_delay(Duration::from_millis(200));
    let t0 = Instant::now();
    c.sip_auth(&identity(), &register("1000", "alpha"))
        .await
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(200));
    // Clones share the delay.
    c.clone().set_delay(Duration::from_millis(800));
    assert_eq!(c.delay(), Duration::from_millis(800));
    assert_eq!(
        c.sip_auth(&identity(), &register("1000", "alpha")).await,
        Err(AuthFailure::Timeout)
    );
    // The slow request never reached the server.
    assert_eq!(st.forms.lock().unwrap().len(), 1);
    c.set_delay(Duration::ZERO);
    c.sip_auth(&identity(), &register("1000", "alpha"))
        .await
        .unwrap();
}

#[tokio::test]
async fn basic_auth_credentials_are_sent() {
    let (url, st) = standard_directory().await;
    let c = DirectoryClient::new(DirectoryConfig {
        url: Some(url),
        credentials: Some(("freeswitch".into(), "xml-curl-pass".into())),
        timeout: Duration::from_secs(5),
    });
    c.sip_auth(&identity(), &register("1000", "alpha"))
        .await
        .unwrap();
    assert_eq!(
        st.auth_headers.lock().unwrap()[0].as_deref(),
        // base64("freeswitch:xml-curl-pass")
        Some("Basic ZnJlZXN3aXRjaDp4bWwtY3VybC1wYXNz")
    );
}

#[tokio::test]
async fn user_lookup_rules() {
    let (url, _) = axum_directory(|form| {
        let user = form.get("user").cloned().unwrap_or_default();
        let body = match user.as_str() {
            // Matched by number-alias, id differs.
            "alias" => doc(
                &a1_user("1000", "alpha").replace(
                    "<user id=\"1000\">",
                    "<user id=\"1000\" number-alias=\"alias\">",
                ),
            ),
            // A pointer is skipped, the real user is under domain/users.
            "ptr" => r#"<document type="freeswitch/xml"><section name="directory"><domain name="127.0.0.1">
<groups><group name="g"><users><user id="ptr" type="pointer"/></users></group></groups>
<users><user id="ptr"><params><param name="password" value="pw"/></params>
<variables><variable name="where" value="domain-users"/></variables></user></users>
</domain></section></document>
"#
            .to_owned(),
            // Only a pointer: not found.
            "onlyptr" => r#"<document type="freeswitch/xml"><section name="directory"><domain name="127.0.0.1">
<groups><group name="g"><users><user id="onlyptr" type="pointer"/></users></group></groups>
</domain></section></document>
"#
            .to_owned(),
            // A user directly under the domain, upper-case id and domain.
            _ => r#"<document type="freeswitch/xml"><section name="directory"><DOMAIN/><domain name="127.0.0.1">
<user id="DIRECT"><params><param name="Password" value="pw"/></params></user>
</domain></section></document>
"#
            .to_owned(),
        };
        (StatusCode::OK, body)
    })
    .await;
    let c = client(url);
    let u = c
        .sip_auth(&identity(), &register("alias", "alpha"))
        .await
        .unwrap_err();
    // The UA's digest uses the username "alias", the a1-hash was computed for "1000".
    assert_eq!(u, AuthFailure::WrongPassword);
    let u = c
        .sip_auth(&identity(), &register("ptr", "pw"))
        .await
        .unwrap();
    assert_eq!(
        u.variables,
        vec![("where".to_owned(), "domain-users".to_owned())]
    );
    assert_eq!(
        c.sip_auth(&identity(), &register("onlyptr", "pw")).await,
        Err(AuthFailure::NotFound)
    );
    let u = c
        .sip_auth(&identity(), &register("direct", "pw"))
        .await
        .unwrap();
    assert_eq!(u.user_id, "DIRECT");
}

#[tokio::test]
async fn number_alias_with_password_param() {
    let (url, _) = axum_directory(|_| {
        (
            StatusCode::OK,
            doc(&password_user("1000", "alpha").replace(
                "<user id=\"1000\">",
                "<user id=\"1000\" number-alias=\"555\">",
            )),
        )
    })
    .await;
    let u = client(url)
        .sip_auth(&identity(), &register("555", "alpha"))
        .await
        .unwrap();
    assert_eq!(u.user_id, "1000");
}

#[tokio::test]
async fn forbid_register_and_empty_password_rules() {
    let (url, _) = axum_directory(|form| {
        let user = form.get("user").cloned().unwrap_or_default();
        let body = match user.as_str() {
            "forbid" => doc(&user_with_params(
                "forbid",
                r#"<param name="password" value="pw"/><param name="sip-forbid-register" value="true"/>"#,
            )),
            "strict" => doc(&user_with_params(
                "strict",
                r#"<param name="allow-empty-password" value="false"/>"#,
            )),
            "emptypw" => doc(&user_with_params(
                "emptypw",
                r#"<param name="password" value=""/>"#,
            )),
            _ => doc(&user_with_params(&user, "")),
        };
        (StatusCode::OK, body)
    })
    .await;
    let c = client(url);
    assert!(matches!(
        c.sip_auth(&identity(), &register("forbid", "pw")).await,
        Err(AuthFailure::Forbidden(_))
    ));
    // sip-forbid-register does not apply to INVITE.
    c.sip_auth(&identity(), &invite("forbid", "pw", "3000"))
        .await
        .unwrap();
    assert!(matches!(
        c.sip_auth(&identity(), &register("strict", "anything"))
            .await,
        Err(AuthFailure::Forbidden(_))
    ));
    assert_eq!(c.open_auth_count(), 0);
}

/// FreeSWITCH's quirk: a user without password and a1-hash gets in with ANY password. fsim lets
/// it in too, but counts it so a test of Switchyard's directory can prove it never happens.
#[tokio::test]
async fn open_auth_quirk_is_reproduced_and_detected() {
    let (url, _) = axum_directory(|form| {
        let user = form.get("user").cloned().unwrap_or_default();
        let body = match user.as_str() {
            "noparams" => doc(r#"<user id="noparams"/>"#),
            "emptypw" => doc(&user_with_params(
                "emptypw",
                r#"<param name="password" value=""/>"#,
            )),
            _ => doc(&user_with_params(
                &user,
                r#"<param name="vm-password" value="1"/>"#,
            )),
        };
        (StatusCode::OK, body)
    })
    .await;
    let c = client(url);
    for (i, user) in ["noparams", "emptypw", "other"].into_iter().enumerate() {
        let u = c
            .sip_auth(&identity(), &register(user, "whatever-the-ua-says"))
            .await
            .unwrap();
        assert_eq!(u.user_id, user);
        assert_eq!(c.open_auth_count(), i as u64 + 1);
    }
}

#[tokio::test]
async fn no_url_and_bad_urls() {
    let c = DirectoryClient::new(DirectoryConfig::default());
    assert_eq!(
        c.sip_auth(&identity(), &register("1000", "alpha")).await,
        Err(AuthFailure::NoDirectory)
    );
    for url in [
        "https://127.0.0.1/x",
        "127.0.0.1:80/x",
        "http://h:notaport/",
    ] {
        let r = client(url.to_owned())
            .sip_auth(&identity(), &register("1000", "alpha"))
            .await;
        assert!(matches!(r, Err(AuthFailure::Http(_))), "{url}: {r:?}");
    }
    // Connection refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let r = client(format!("http://{addr}/"))
        .sip_auth(&identity(), &register("1000", "alpha"))
        .await;
    assert!(matches!(r, Err(AuthFailure::Http(_))), "{r:?}");
}

#[tokio::test]
async fn response_framings() {
    let server = RawServer::start().await;
    let c = client(server.url());
    let body = doc(&a1_user("1000", "alpha"));
    // Chunked, with a 100 Continue first.
    let mut chunked =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for part in body.as_bytes().chunks(100) {
        chunked.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    server.answer(chunked);
    c.sip_auth(&identity(), &register("1000", "alpha"))
        .await
        .unwrap();
    // Delimited by the end of the connection (HTTP/1.0 style).
    let mut close = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
    close.extend_from_slice(body.as_bytes());
    server.answer(close);
    c.sip_auth(&identity(), &register("1000", "alpha"))
        .await
        .unwrap();
    // Broken answers: every one fails cleanly.
    for raw in [
        b"".to_vec(),
        b"garbage\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nshort".to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXX".to_vec(),
        b"HTTP/1.1 2000 OK\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"HTTP/1.1 200".to_vec(),
    ] {
        server.answer(raw.clone());
        let r = c.sip_auth(&identity(), &register("1000", "alpha")).await;
        assert!(
            matches!(r, Err(AuthFailure::Http(_))),
            "{:?}: {r:?}",
            String::from_utf8_lossy(&raw)
        );
    }
}

/// A tiny deterministic PRNG so the garbage is reproducible.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test]
async fn garbage_bodies_never_panic() {
    let server = RawServer::start().await;
    let c = client(server.url());
    let good = doc(&a1_user("1000", "alpha"));
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    // Random bytes.
    for _ in 0..60 {
        let len = (rng.next() % 2000) as usize;
        bodies.push((0..len).map(|_| rng.next() as u8).collect());
    }
    // Every 7th prefix of a good answer (truncated XML).
    for cut in (0..good.len()).step_by(7) {
        bodies.push(good.as_bytes()[..cut].to_vec());
    }
    // Random byte flips of a good answer.
    for _ in 0..60 {
        let mut b = good.clone().into_bytes();
        for _ in 0..(rng.next() % 8 + 1) {
            let i = (rng.next() as usize) % b.len();
            b[i] = rng.next() as u8;
        }
        bodies.push(b);
    }
    // Pathological XML.
    bodies.push("<a>".repeat(100_000).into_bytes());
    bodies.push(b"<document><section name=\"directory\"><domain name=\"127.0.0.1\"><user id=\"1000\" id=\"x\" a='&bogus;'/></domain></section></document>".to_vec());
    bodies.push(b"</document>".to_vec());
    bodies.push(b"<document><section name=\"result\"><result status=\"not found\"/>".to_vec());
    // Huge: just under the limit with padding (accepted), and over it (rejected).
    let padding = " ".repeat(1024 * 1024 - good.len() - 100);
    let big_ok = good.replace("<document", &format!("{padding}<document"));
    bodies.push(big_ok.into_bytes());
    bodies.push(vec![b'<'; 3 * 1024 * 1024]);

    let mut outcomes = HashMap::new();
    for body in &bodies {
        server.answer(http_200(body));
        let r = c.sip_auth(&identity(), &register("1000", "alpha")).await;
        let key = match &r {
            Ok(_) => "ok".to_owned(),
            Err(AuthFailure::Http(_)) => "http".to_owned(),
            Err(e) => format!("{e:?}"),
        };
        *outcomes.entry(key).or_insert(0) += 1;
    }
    // The near-limit answer was accepted; the 3 MiB one was not.
    assert!(
        outcomes.get("ok").copied().unwrap_or(0) >= 2,
        "{outcomes:?}"
    );
    server.answer(http_200(&vec![b' '; 3 * 1024 * 1024]));
    let r = c.sip_auth(&identity(), &register("1000", "alpha")).await;
    assert!(
        matches!(&r, Err(AuthFailure::Http(m)) if m.contains("response-max-bytes")),
        "{r:?}"
    );
}
