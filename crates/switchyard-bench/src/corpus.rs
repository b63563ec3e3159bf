//! The request corpus: mod_xml_curl `sip_auth` REGISTER forms built like request #3 of
//! `tests/fixtures/freeswitch/xml-curl-requests.txt` (same fields, same order, same encoding),
//! with the user, nonce, cnonce, response, call id, client port, dates and event sequence varied.
//!
//! Every known user appears once per pass, plus ~5 % unknown usernames and ~1 % malformed
//! requests (several kinds, all answered "not found"), shuffled with a fixed seed.

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};

/// The SIP domain / digest realm of the bench service.
pub const DOMAIN: &str = "127.0.0.1";
/// Basic-auth user and password of the nodes (`[freeswitch]`).
pub const NODE_USER: &str = "freeswitch";
pub const NODE_PASSWORD: &str = "bench-node-secret-0123456789";
/// The "not found" document Switchyard answers (`freeswitch::xml`).
pub const NOT_FOUND: &str = "<document type=\"freeswitch/xml\">\n  <section name=\"result\">\n    <result status=\"not found\"/>\n  </section>\n</document>\n";

/// A SIP user with a credential the service knows.
#[derive(Debug, Clone)]
pub struct KnownUser {
    /// SIP username (digest username, `<user id>`).
    pub username: String,
    pub a1_hash: String,
}

/// What the answer to a request must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The directory document of `users[i]`, with its a1-hash.
    User(u32),
    /// The "not found" document.
    NotFound,
}

/// One ready-to-send HTTP request.
#[derive(Debug)]
pub struct Request {
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

/// The kinds of requests in a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mix {
    pub known: usize,
    pub unknown: usize,
    pub malformed: usize,
}

/// The fields of one REGISTER that vary.
#[derive(Debug)]
struct Vary {
    user: String,
    seq: u64,
    at: DateTime<Utc>,
    nonce: String,
    cnonce: String,
    response: String,
    call_id: String,
    client_port: u16,
}

/// Percent-encodes like FreeSWITCH's `switch_url_encode` (alphanumerics and `-_.!~*'()` raw).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn hex(rng: &mut StdRng, len: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..len)
        .map(|_| char::from(DIGITS[rng.random_range(0..16)]))
        .collect()
}

fn uuid(rng: &mut StdRng) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 3),
        ["8", "9", "a", "b"][rng.random_range(0..4)],
        hex(rng, 3),
        hex(rng, 12)
    )
}

/// The form body, field for field as request #3 (`user` is already URL-encoded).
fn register_body(v: &Vary) -> String {
    let local = v.at.format("%Y-%m-%d%%20%H%%3A%M%%3A%S");
    let gmt =
        v.at.format("%a,%%20%d%%20%b%%20%Y%%20%H%%3A%M%%3A%S%%20GMT");
    let ts = v.at.timestamp_micros();
    let u = &v.user;
    format!(
        "hostname=vm&section=directory&tag_name=domain&key_name=name&key_value=127.0.0.1\
         &Event-Name=REQUEST_PARAMS&Core-UUID=60521194-8708-47ec-8892-6f189eab12ad\
         &FreeSWITCH-Hostname=vm&FreeSWITCH-Switchname=vm&FreeSWITCH-IPv4=192.0.2.2\
         &FreeSWITCH-IPv6=fd00%3A%3A2&Event-Date-Local={local}&Event-Date-GMT={gmt}\
         &Event-Date-Timestamp={ts}&Event-Calling-File=sofia_reg.c\
         &Event-Calling-Function=sofia_reg_parse_auth&Event-Calling-Line-Number=3124\
         &Event-Sequence={seq}&action=sip_auth&sip_profile=internal&sip_user_agent=sipp-fixture\
         &sip_auth_username={u}&sip_auth_realm=127.0.0.1&sip_auth_nonce={nonce}\
         &sip_auth_uri=sip%3A127.0.0.1%3A5060&sip_contact_user={u}&sip_contact_host=127.0.0.1\
         &sip_to_user={u}&sip_to_host=127.0.0.1&sip_via_protocol=udp&sip_from_user={u}\
         &sip_from_host=127.0.0.1&sip_call_id={call_id}&sip_request_host=127.0.0.1\
         &sip_request_port=5060&sip_auth_qop=auth&sip_auth_cnonce={cnonce}&sip_auth_nc=00000001\
         &sip_auth_response={response}&sip_auth_method=REGISTER&client_port={port}&key=id\
         &user={u}&domain=127.0.0.1&ip=127.0.0.1",
        seq = v.seq,
        nonce = v.nonce,
        call_id = url_encode(&v.call_id),
        cnonce = v.cnonce,
        response = v.response,
        port = v.client_port,
    )
}

/// The malformed variants (all must be answered "not found").
const MALFORMED_KINDS: usize = 7;

fn malform(kind: usize, body: String, user: &str) -> Vec<u8> {
    match kind {
        // A bad percent escape.
        0 => body
            .replacen("sip_auth_nonce=", "sip_auth_nonce=%zz", 1)
            .into_bytes(),
        // `user` differs from the digest username.
        1 => body
            .replacen(&format!("&user={user}&"), "&user=someone-else&", 1)
            .into_bytes(),
        // Another domain.
        2 => body
            .replacen("&domain=127.0.0.1", "&domain=evil.example", 1)
            .into_bytes(),
        // A repeated field.
        3 => format!("{body}&user={user}").into_bytes(),
        // Not UTF-8 once decoded.
        4 => body
            .replacen("sip_user_agent=sipp-fixture", "sip_user_agent=%FF%FE", 1)
            .into_bytes(),
        // Cut off in the middle (no user, no domain).
        5 => body.as_bytes()[..body.len() / 3].to_vec(),
        // XML injection through the user id (outside the charset).
        _ => body
            .replace(user, &url_encode("a\"/><user id=\"admin"))
            .into_bytes(),
    }
}

/// `Authorization` header value of the nodes.
pub fn node_authorization() -> String {
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{NODE_USER}:{NODE_PASSWORD}"));
    format!("Basic {token}")
}

/// Wraps a body into the HTTP request mod_xml_curl sends (libcurl's header order).
pub fn http_request(host: &str, authorization: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST /freeswitch/directory HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n\
         User-Agent: freeswitch-xml/1.0\r\nAccept: */*\r\nContent-Length: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// How many unknown and malformed requests go with `known` users (5 % and 1 % of the total).
pub fn mix_for(known: usize) -> Mix {
    let total = (known as f64 / 0.94).round() as usize;
    Mix {
        known,
        unknown: (total as f64 * 0.05).round() as usize,
        malformed: (total as f64 * 0.01).round().max(1.0) as usize,
    }
}

/// The form bodies of one pass over `users`, shuffled with `seed`.
pub fn bodies(users: &[KnownUser], seed: u64) -> (Vec<(Vec<u8>, Expect)>, Mix) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mix = mix_for(users.len());
    let start: DateTime<Utc> =
        DateTime::from_timestamp(1_795_315_530, 36_759_000).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let mut kinds: Vec<Option<Expect>> =
        Vec::with_capacity(mix.known + mix.unknown + mix.malformed);
    kinds.extend((0..users.len()).map(|i| Some(Expect::User(i as u32))));
    kinds.extend((0..mix.unknown).map(|_| Some(Expect::NotFound)));
    kinds.extend((0..mix.malformed).map(|_| None));
    kinds.shuffle(&mut rng);

    let mut out = Vec::with_capacity(kinds.len());
    let mut malformed = 0;
    for (i, kind) in kinds.into_iter().enumerate() {
        let user = match kind {
            Some(Expect::User(u)) => users[u as usize].username.clone(),
            // Same shape as issued usernames, never issued (issued ones have no `zz` prefix).
            _ => format!("syzz{}", hex(&mut rng, 20)),
        };
        let vary = Vary {
            user,
            seq: 454 + i as u64 * 5,
            at: start + Duration::milliseconds(i as i64 * 3),
            nonce: uuid(&mut rng),
            cnonce: hex(&mut rng, 8),
            response: hex(&mut rng, 32),
            call_id: format!("{}-{}@127.0.0.1", rng.random_range(1..100), 15938 + i),
            client_port: rng.random_range(5060..65000),
        };
        let body = register_body(&vary);
        match kind {
            Some(expect) => out.push((body.into_bytes(), expect)),
            None => {
                out.push((
                    malform(malformed % MALFORMED_KINDS, body, &vary.user),
                    Expect::NotFound,
                ));
                malformed += 1;
            }
        }
    }
    (out, mix)
}

/// Ready-to-send requests for one server.
pub fn requests(bodies: &[(Vec<u8>, Expect)], host: &str) -> Vec<Request> {
    let authorization = node_authorization();
    bodies
        .iter()
        .map(|(body, expect)| Request {
            bytes: http_request(host, &authorization, body),
            expect: *expect,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_matches_the_capture() {
        let v = Vary {
            user: "1001".to_owned(),
            seq: 454,
            at: DateTime::from_timestamp(1_795_315_530, 36_759_000)
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            nonce: "927f26d8-be73-439c-9045-0eead5d1749d".to_owned(),
            cnonce: "6b8b4567".to_owned(),
            response: "25a0a97bd849f0724eea14745bc8da2b".to_owned(),
            call_id: "1-15938@127.0.0.1".to_owned(),
            client_port: 5071,
        };
        let captured = include_str!("../../../tests/fixtures/freeswitch/xml-curl-requests.txt");
        let line = captured
            .lines()
            .find(|l| l.contains("sip_auth_username=1001") && l.contains("REGISTER"));
        assert_eq!(Some(register_body(&v).as_str()), line);
    }

    #[test]
    fn mix_and_malformed() {
        let users: Vec<KnownUser> = (0..200)
            .map(|i| KnownUser {
                username: format!("sybench{i:017}"),
                a1_hash: "00".repeat(16),
            })
            .collect();
        let (bodies, mix) = bodies(&users, 7);
        assert_eq!(bodies.len(), mix.known + mix.unknown + mix.malformed);
        assert_eq!(mix.unknown, 11);
        assert_eq!(mix.malformed, 2);
        assert_eq!(
            bodies
                .iter()
                .filter(|(_, e)| matches!(e, Expect::User(_)))
                .count(),
            200
        );
    }
}
