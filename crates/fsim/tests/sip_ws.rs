//! SIP over WebSocket against a real HTTP directory + dialplan server, with a real WebSocket
//! client: REGISTER and INVITE with digest challenges computed here, the conference join seen
//! in the snapshot and on ESL, BYE both ways, CANCEL, refusals, closing the socket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod esl_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use esl::Event;
use esl_support::Client;
use fsim::sip::message::{Message, NameAddr, Request, Response, parse};
use fsim::{NodeConfig, SimNode};
use futures_util::{SinkExt, StreamExt};
use md5::{Digest, Md5};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const DOMAIN: &str = "127.0.0.1";
const PASSWORD: &str = "s3cret";
const WAIT: Duration = Duration::from_secs(2);

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The a1-hash of user `u` in the test directory.
fn a1(user: &str) -> String {
    md5_hex(&format!("{user}:{DOMAIN}:{PASSWORD}"))
}

fn form_field<'a>(form: &'a str, name: &str) -> Option<&'a str> {
    form.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The directory (users alice and bob, a1-hash) and the dialplan (conf*<room> joins
/// `<room>@default`, conf*busy answers 486, anything else: not found). Records the dialplan
/// forms it receives.
async fn xml_curl_server() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::Router;
    use axum::routing::post;
    let forms = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&forms);
    let app = Router::new()
        .route(
            "/directory",
            post(|body: String| async move {
                let user = form_field(&body, "user").unwrap_or_default().to_owned();
                let doc = if user == "alice" || user == "bob" {
                    format!(
                        "<document type=\"freeswitch/xml\">\n<section name=\"directory\">\n\
                         <domain name=\"{DOMAIN}\"><users><user id=\"{user}\"><params>\n\
                         <param name=\"a1-hash\" value=\"{}\"/>\n\
                         <param name=\"allow-empty-password\" value=\"false\"/>\n\
                         </params><variables>\n\
                         <variable name=\"user_context\" value=\"default\"/>\n\
                         <variable name=\"switchyard_user_id\" value=\"{user}\"/>\n\
                         </variables></user></users></domain>\n</section>\n</document>\n",
                        a1(&user)
                    )
                } else {
                    "<document type=\"freeswitch/xml\">\n<section name=\"result\">\n\
                     <result status=\"not found\"/>\n</section>\n</document>\n"
                        .to_owned()
                };
                ([("content-type", "text/xml")], doc)
            }),
        )
        .route(
            "/dialplan",
            post(move |body: String| {
                seen.lock().unwrap().push(body.clone());
                async move {
                    let dest = form_field(&body, "Hunt-Destination-Number").unwrap_or_default();
                    let action = match dest.strip_prefix("conf*") {
                        Some("busy") => {
                            "<action application=\"respond\" data=\"486 Busy Here\"/>".to_owned()
                        }
                        Some(room) => format!(
                            "<action application=\"answer\"/>\n\
                             <action application=\"conference\" data=\"{room}@default\"/>"
                        ),
                        None => {
                            return "<document type=\"freeswitch/xml\">\n<section name=\"result\">\n\
                                    <result status=\"not found\"/>\n</section>\n</document>\n"
                                .to_owned();
                        }
                    };
                    format!(
                        "<document type=\"freeswitch/xml\">\n<section name=\"dialplan\">\n\
                         <context name=\"default\"><extension name=\"c\">\n\
                         <condition field=\"destination_number\" expression=\"^conf\\*\">\n\
                         {action}\n</condition></extension></context>\n</section>\n</document>\n"
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), forms)
}

async fn node() -> (SimNode, Arc<Mutex<Vec<String>>>) {
    let (base, forms) = xml_curl_server().await;
    let mut cfg = NodeConfig::new("fs1");
    cfg.heartbeat_interval = Duration::from_secs(3600);
    cfg.directory.url = Some(format!("{base}/directory"));
    cfg.dialplan.url = Some(format!("{base}/dialplan"));
    cfg.sip_ws_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.max_sessions = 3;
    (SimNode::start(cfg).await.unwrap(), forms)
}

/// A JsSIP-like user agent on one WebSocket.
struct Ua {
    ws: WebSocketStream<TcpStream>,
    user: String,
    host: String,
    call_id: String,
    cseq: u32,
    nc: u32,
}

async fn connect(addr: SocketAddr, user: &str) -> (Ua, Option<String>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    let proto = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    let ua = Ua {
        ws,
        user: user.to_owned(),
        host: format!(
            "{}.invalid",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ),
        call_id: String::new(),
        cseq: 0,
        nc: 0,
    };
    (ua, proto)
}

fn digest(user: &str, method: &str, uri: &str, nonce: &str, nc: u32) -> String {
    let cnonce = "0a4f113b";
    let nc = format!("{nc:08x}");
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let response = md5_hex(&format!("{}:{nonce}:{nc}:{cnonce}:auth:{ha2}", a1(user)));
    format!(
        "Digest algorithm=MD5, username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", qop=auth, cnonce=\"{cnonce}\", nc={nc}"
    )
}

fn nonce_of(challenge: &str) -> String {
    let start = challenge.find("nonce=\"").unwrap() + 7;
    let end = start + challenge[start..].find('"').unwrap();
    challenge[start..end].to_owned()
}

const OFFER: &str = include_str!("fixtures/chrome-offer.sdp");

impl Ua {
    async fn send(&mut self, text: String) {
        self.ws.send(WsMessage::text(text)).await.unwrap();
    }

    async fn recv(&mut self) -> Message {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a SIP message in time")
                .expect("socket open")
                .unwrap();
            if let WsMessage::Text(t) = frame {
                return parse(t.as_bytes()).unwrap();
            }
        }
    }

    async fn response(&mut self) -> Response {
        match self.recv().await {
            Message::Response(r) => r,
            Message::Request(r) => panic!("expected a response, got {r:?}"),
        }
    }

    async fn request(&mut self) -> Request {
        match self.recv().await {
            Message::Request(r) => r,
            Message::Response(r) => panic!("expected a request, got {r:?}"),
        }
    }

    fn via(&self) -> String {
        format!(
            "SIP/2.0/WSS {};branch=z9hG4bK{}",
            self.host,
            uuid::Uuid::new_v4().simple()
        )
    }

    fn register_text(&mut self, expires: u32, auth: Option<String>) -> String {
        self.cseq += 1;
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 69\r\n\
             To: <sip:{u}@{DOMAIN}>\r\nFrom: \"{u}\" <sip:{u}@{DOMAIN}>;tag=regtag\r\n\
             Call-ID: reg-{u}\r\nCSeq: {} REGISTER\r\n\
             Contact: <sip:k3f9a2@{h};transport=ws>;+sip.ice;reg-id=1;expires={expires}\r\n\
             Expires: {expires}\r\n{auth}Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n\
             Supported: path,gruu,outbound\r\nUser-Agent: JsSIP 3.10.1\r\nContent-Length: 0\r\n\r\n",
            self.via(),
            self.cseq,
            u = self.user,
            h = self.host,
        )
    }

    /// REGISTER, 401, REGISTER with Authorization: the final response.
    async fn register(&mut self, expires: u32) -> Response {
        let text = self.register_text(expires, None);
        self.send(text).await;
        let challenge = self.response().await;
        assert_eq!(challenge.status, 401);
        let www = challenge
            .headers
            .get("WWW-Authenticate")
            .unwrap()
            .to_owned();
        assert!(www.contains(&format!("realm=\"{DOMAIN}\"")), "{www}");
        assert!(
            www.contains("qop=\"auth\"") && www.contains("algorithm=MD5"),
            "{www}"
        );
        self.nc = 1;
        let auth = digest(
            &self.user,
            "REGISTER",
            &format!("sip:{DOMAIN}"),
            &nonce_of(&www),
            1,
        );
        let text = self.register_text(expires, Some(auth));
        self.send(text).await;
        self.response().await
    }

    fn invite_text(&mut self, room: &str, auth: Option<String>) -> String {
        self.cseq += 1;
        let auth = auth
            .map(|a| format!("Proxy-Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "INVITE sip:conf*{room}@{DOMAIN} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 69\r\n\
             To: <sip:conf*{room}@{DOMAIN}>\r\nFrom: \"Alice\" <sip:{u}@{DOMAIN}>;tag=fromtag\r\n\
             Call-ID: {}\r\nCSeq: {} INVITE\r\n{auth}\
             Contact: <sip:k3f9a2@{h};transport=ws;ob>\r\nContent-Type: application/sdp\r\n\
             Session-Expires: 90\r\nUser-Agent: JsSIP 3.10.1\r\nContent-Length: {}\r\n\r\n{OFFER}",
            self.via(),
            self.call_id,
            self.cseq,
            OFFER.len(),
            u = self.user,
            h = self.host,
        )
    }

    fn in_dialog(&mut self, method: &str, to: &str) -> String {
        self.cseq += 1;
        format!(
            "{method} sip:conf@{DOMAIN};transport=ws SIP/2.0\r\nVia: {}\r\nMax-Forwards: 69\r\n\
             To: {to}\r\nFrom: \"Alice\" <sip:{u}@{DOMAIN}>;tag=fromtag\r\nCall-ID: {}\r\n\
             CSeq: {} {method}\r\nContent-Length: 0\r\n\r\n",
            self.via(),
            self.call_id,
            if method == "ACK" {
                self.cseq - 1
            } else {
                self.cseq
            },
            u = self.user,
        )
    }

    /// INVITE, 407, ACK, INVITE with Proxy-Authorization; returns the first response after
    /// the 100 Trying (or the final one when there is no 100).
    async fn call(&mut self, room: &str) -> Response {
        self.call_id = uuid::Uuid::new_v4().to_string();
        let text = self.invite_text(room, None);
        self.send(text).await;
        let challenge = self.response().await;
        assert_eq!(challenge.status, 407);
        let to = challenge.headers.get("To").unwrap().to_owned();
        let ack = self.in_dialog("ACK", &to);
        self.send(ack).await;
        let pa = challenge
            .headers
            .get("Proxy-Authenticate")
            .unwrap()
            .to_owned();
        let uri = format!("sip:conf*{room}@{DOMAIN}");
        let auth = digest(&self.user, "INVITE", &uri, &nonce_of(&pa), 1);
        let text = self.invite_text(room, Some(auth));
        self.send(text).await;
        let first = self.response().await;
        if first.status == 100 {
            self.response().await
        } else {
            first
        }
    }

    async fn closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(WAIT, self.ws.next()).await,
            Ok(None | Some(Err(_) | Ok(WsMessage::Close(_))))
        )
    }
}

/// How many CUSTOM events of `subclass` arrived so far.
fn count_subclass(events: &esl_support::Collector, subclass: &str) -> usize {
    events
        .events()
        .into_iter()
        .filter(|e| e.subclass() == Some(subclass))
        .count()
}

async fn esl(node: &SimNode) -> esl_support::Collector {
    let mut c = Client::authed(node.esl_addr()).await;
    c.command(
        "event plain CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE CUSTOM conference::maintenance \
         sofia::register sofia::unregister",
    )
    .await;
    c.collect()
}

fn actions(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e.get("Action").map(str::to_owned))
        .collect()
}

async fn wait_members(node: &SimNode, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let members: usize = node
            .snapshot()
            .conferences
            .iter()
            .map(|c| c.members.len())
            .sum();
        if members == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members {members}, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn register_call_join_and_bye() {
    let (node, forms) = node().await;
    let events = esl(&node).await;
    let (mut ua, proto) = connect(node.sip_ws_addr().unwrap(), "alice").await;
    assert_eq!(proto.as_deref(), Some("sip"), "subprotocol echoed");

    let ok = ua.register(600).await;
    assert_eq!(ok.status, 200);
    let contact = ok.headers.get("Contact").unwrap();
    assert!(
        contact.contains(".invalid;transport=ws>") && contact.ends_with(";expires=600"),
        "{contact}"
    );
    let via = ok.headers.get("Via").unwrap();
    assert!(via.contains(";received=127.0.0.1;rport="), "{via}");
    assert_eq!(node.snapshot().registrations, ["alice@127.0.0.1"]);
    let rport = via
        .split(";rport=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    events
        .wait_for("sofia::register", |ev| {
            ev.iter().any(|e| {
                e.subclass() == Some("sofia::register") && e.get("username") == Some("alice")
            })
        })
        .await;
    // sofia's view of a WS registration (sofia_reg_handle_register_token): NAT status, the
    // client's contact plus fs_nat/fs_path with the real address (the test UA's Via says WSS).
    let register = events
        .events()
        .into_iter()
        .find(|e| e.subclass() == Some("sofia::register"))
        .unwrap();
    let contact = format!(
        "\"\" <sip:k3f9a2@{h};transport=ws;fs_nat=yes;\
         fs_path=sip%3Ak3f9a2%40127.0.0.1%3A{rport}%3Btransport%3Dwss>",
        h = ua.host
    );
    assert_eq!(register.get("status"), Some("Registered(WSS-NAT)"));
    // The plain event encoder passes fs_path's existing %XX escapes through (no double
    // encoding), so an ESL client decodes them once more.
    assert_eq!(
        register.get("contact"),
        Some(
            format!(
                "\"\" <sip:k3f9a2@{h};transport=ws;fs_nat=yes;\
                 fs_path=sip:k3f9a2@127.0.0.1:{rport};transport=wss>",
                h = ua.host
            )
            .as_str()
        )
    );
    assert_eq!(register.get("expires"), Some("600"));
    assert_eq!(register.get("network-ip"), Some("127.0.0.1"));
    assert_eq!(register.get("network-port"), Some(rport.as_str()));
    let regs = node.api("show registrations");
    assert!(
        regs.contains(&format!(
            ",sofia/internal/sip:k3f9a2@{};transport=ws;fs_nat=yes;fs_path=",
            ua.host
        )) && regs.contains(&format!(",127.0.0.1,{rport},udp,fs1,")),
        "{regs}"
    );
    let status = node.api("sofia status profile internal reg");
    assert!(
        status.contains(&format!("Contact:    \t{contact}\n"))
            && status.contains("Status:     \tRegistered(WSS-NAT)(unknown) EXP("),
        "{status}"
    );

    let answer = ua.call("room1").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.headers.get("Content-Type"), Some("application/sdp"));
    assert!(
        answer
            .headers
            .get("Contact")
            .unwrap()
            .ends_with(";transport=ws>")
    );
    let sdp = String::from_utf8(answer.body.clone()).unwrap();
    assert!(
        sdp.contains("a=group:BUNDLE 0 1\r\n") && sdp.contains("a=setup:active"),
        "{sdp}"
    );
    let to = answer.headers.get("To").unwrap().to_owned();
    assert!(NameAddr::parse(&to).unwrap().tag().is_some());
    let ack = ua.in_dialog("ACK", &to);
    ua.send(ack).await;

    wait_members(&node, 1).await;
    let snap = node.snapshot();
    assert_eq!(snap.conferences[0].name, "room1");
    let uuid = snap.conferences[0].members[0].channel_uuid.clone();
    events
        .wait_for("add-member", |ev| {
            actions(ev).contains(&"add-member".to_owned())
        })
        .await;
    let form = forms.lock().unwrap().last().cloned().unwrap();
    assert!(form.starts_with("hostname=fs1&section=dialplan&tag_name=&key_name=&key_value=&Event-Name=REQUEST_PARAMS&"), "{form}");
    assert_eq!(
        form_field(&form, "variable_switchyard_user_id"),
        Some("alice")
    );
    assert_eq!(form_field(&form, "Hunt-Context"), Some("default"));
    assert_eq!(
        form_field(&form, "Caller-Destination-Number"),
        Some("conf*room1")
    );

    // re-INVITE: the same SDP again.
    let reinvite = ua.in_dialog("INVITE", &to).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
            OFFER.len()
        ),
    );
    ua.send(reinvite).await;
    assert_eq!(ua.response().await.status, 100);
    let again = ua.response().await;
    assert_eq!(
        (again.status, again.body.clone()),
        (200, answer.body.clone())
    );
    let ack = ua.in_dialog("ACK", &to);
    ua.send(ack).await;

    // OPTIONS and unknown methods.
    let options = ua.in_dialog("OPTIONS", &to);
    ua.send(options).await;
    assert_eq!(ua.response().await.status, 200);
    let frob = ua.in_dialog("FROB", &to);
    ua.send(frob).await;
    assert_eq!(ua.response().await.status, 405);

    let bye = ua.in_dialog("BYE", &to);
    ua.send(bye).await;
    assert_eq!(ua.response().await.status, 200);
    wait_members(&node, 0).await;
    events
        .wait_for("del-member + hangup", |ev| {
            actions(ev).contains(&"del-member".to_owned())
                && ev.iter().any(|e| {
                    e.event_name() == Some("CHANNEL_HANGUP_COMPLETE")
                        && e.get("Hangup-Cause") == Some("NORMAL_CLEARING")
                })
        })
        .await;
    assert!(node.snapshot().channels.is_empty());

    let hangup = events
        .events()
        .into_iter()
        .find(|e| {
            e.event_name() == Some("CHANNEL_HANGUP_COMPLETE")
                && e.unique_id() == Some(uuid.as_str())
        })
        .unwrap();
    assert_eq!(
        hangup.get("variable_switchyard_user_id"),
        Some("alice"),
        "directory variables reach the channel"
    );
    assert_eq!(hangup.get("variable_switch_r_sdp"), Some(OFFER));
    // The codec the SDP answer chose (opus for Chromium's offer), not SIPp's PCMA.
    let answered = events
        .events()
        .into_iter()
        .find(|e| e.event_name() == Some("CHANNEL_ANSWER") && e.unique_id() == Some(uuid.as_str()))
        .unwrap();
    assert_eq!(answered.get("Channel-Read-Codec-Name"), Some("opus"));
    assert_eq!(answered.get("Channel-Read-Codec-Rate"), Some("48000"));
    assert_eq!(answered.get("Channel-Write-Codec-Name"), Some("opus"));
    for (name, value) in [
        ("variable_rtp_use_codec_name", "opus"),
        ("variable_rtp_use_codec_fmtp", "minptime=10;useinbandfec=1"),
        ("variable_rtp_use_codec_rate", "48000"),
        ("variable_rtp_use_codec_ptime", "20"),
        ("variable_rtp_last_audio_codec_string", "opus@48000h@20i@1c"),
        ("variable_read_codec", "opus"),
        ("variable_original_read_codec", "opus"),
        ("variable_write_codec", "opus"),
        ("variable_write_rate", "48000"),
        ("variable_rtp_use_pt", "111"),
    ] {
        assert_eq!(hangup.get(name), Some(value), "{name}");
    }
    assert_eq!(
        hangup.get("variable_rtp_local_sdp_str"),
        Some(String::from_utf8(answer.body.clone()).unwrap().as_str())
    );
    assert_eq!(
        hangup.get("variable_sip_hangup_disposition"),
        Some("recv_bye")
    );

    // Unregister: sofia::unregister (expires 0) with the directory variables.
    let ok = ua.register(0).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.get("Contact"), None);
    assert!(node.snapshot().registrations.is_empty());
    events
        .wait_for("sofia::unregister", |ev| {
            ev.iter().any(|e| {
                e.subclass() == Some("sofia::unregister")
                    && e.get("expires") == Some("0")
                    && e.get("username") == Some("alice")
                    && e.get("contact")
                        .is_some_and(|c| c.contains(";fs_nat=yes;fs_path="))
                    && e.get("switchyard_user_id") == Some("alice")
            })
        })
        .await;
    // Unregistered: closing the socket now fires nothing more.
    drop(ua);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(count_subclass(&events, "sofia::unregister"), 1);
}

#[tokio::test]
async fn closing_the_socket_unregisters() {
    let (node, _) = node().await;
    let events = esl(&node).await;
    let (mut ua, _) = connect(node.sip_ws_addr().unwrap(), "alice").await;
    assert_eq!(ua.register(600).await.status, 200);
    // A refresh on the same socket keeps one binding.
    assert_eq!(ua.register(600).await.status, 200);
    assert_eq!(node.snapshot().registrations, ["alice@127.0.0.1"]);
    drop(ua);
    events
        .wait_for("sofia::unregister on socket close", |ev| {
            ev.iter().any(|e| {
                e.subclass() == Some("sofia::unregister")
                    && e.get("reason") == Some("socket-disconnection")
                    && e.get("from-user") == Some("alice")
                    && e.get("call-id") == Some("reg-alice")
            })
        })
        .await;
    assert!(node.snapshot().registrations.is_empty());
    assert!(
        node.api("show registrations").ends_with("\n0 total.\n"),
        "{}",
        node.api("show registrations")
    );
    assert_eq!(count_subclass(&events, "sofia::unregister"), 1);
}

#[tokio::test]
async fn refusals() {
    let (node, _) = node().await;
    let addr = node.sip_ws_addr().unwrap();
    // Wrong password: 403 after the directory lookup.
    let (mut ua, _) = connect(addr, "alice").await;
    let text = ua.register_text(600, None);
    ua.send(text).await;
    let www = ua
        .response()
        .await
        .headers
        .get("WWW-Authenticate")
        .unwrap()
        .to_owned();
    let nonce = nonce_of(&www);
    let wrong = digest("alice", "REGISTER", &format!("sip:{DOMAIN}"), &nonce, 1)
        .replace("response=\"", "response=\"0");
    let text = ua.register_text(600, Some(wrong));
    ua.send(text).await;
    assert_eq!(ua.response().await.status, 403);
    // The next nc with the right password is fine; replaying it is stale (a new challenge).
    let good = digest("alice", "REGISTER", &format!("sip:{DOMAIN}"), &nonce, 2);
    let text = ua.register_text(600, Some(good.clone()));
    ua.send(text).await;
    assert_eq!(ua.response().await.status, 200);
    let text = ua.register_text(600, Some(good));
    ua.send(text).await;
    let stale = ua.response().await;
    assert_eq!(stale.status, 401);
    assert!(
        stale
            .headers
            .get("WWW-Authenticate")
            .unwrap()
            .contains("stale=true")
    );
    // Unknown user: 403.
    let (mut eve, _) = connect(addr, "eve").await;
    assert_eq!(eve.register(600).await.status, 403);

    // Dialplan says 486, or nothing matches: that final response, no channel left.
    assert_eq!(ua.call("busy").await.status, 486);
    let (mut bob, _) = connect(addr, "bob").await;
    bob.call_id = uuid::Uuid::new_v4().to_string();
    let text = bob.invite_text("x", None).replace("conf*x", "9999");
    bob.send(text).await;
    let ch = bob.response().await;
    let pa = ch.headers.get("Proxy-Authenticate").unwrap().to_owned();
    let auth = digest(
        "bob",
        "INVITE",
        &format!("sip:9999@{DOMAIN}"),
        &nonce_of(&pa),
        1,
    );
    let text = bob.invite_text("x", Some(auth)).replace("conf*x", "9999");
    bob.send(text).await;
    assert_eq!(bob.response().await.status, 100);
    assert_eq!(bob.response().await.status, 404);
    assert!(node.snapshot().channels.is_empty());

    // Garbage is dropped, a request without mandatory headers too; the socket stays usable.
    ua.send("GARBAGE\r\n\r\n".to_owned()).await;
    ua.send("OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n".to_owned())
        .await;
    let options = ua.in_dialog("OPTIONS", &format!("<sip:{DOMAIN}>"));
    ua.send(options).await;
    assert_eq!(ua.response().await.status, 200);

    // max-sessions (3): the fourth call gets 503.
    let mut uas = Vec::new();
    for _ in 0..3 {
        let (mut u, _) = connect(addr, "bob").await;
        assert_eq!(u.call("full").await.status, 200);
        uas.push(u);
    }
    let (mut u, _) = connect(addr, "bob").await;
    u.call_id = uuid::Uuid::new_v4().to_string();
    let text = u.invite_text("full", None);
    u.send(text).await;
    assert_eq!(u.response().await.status, 503);

    // A locked conference: answered, then BYE (the join refusal of call_with).
    node.api("conference full lock");
    let (mut late, _) = connect(addr, "bob").await;
    drop(uas.pop()); // closing a socket hangs its call up, freeing a session
    wait_members(&node, 2).await;
    assert_eq!(late.call("full").await.status, 200);
    let bye = late.request().await;
    assert_eq!(bye.method, "BYE");
}

#[tokio::test]
async fn node_side_hangup_sends_bye_and_closing_hangs_up() {
    let (node, _) = node().await;
    let events = esl(&node).await;
    let addr = node.sip_ws_addr().unwrap();
    let (mut a, _) = connect(addr, "alice").await;
    let (mut b, _) = connect(addr, "bob").await;
    for ua in [&mut a, &mut b] {
        let ok = ua.call("room2").await;
        assert_eq!(ok.status, 200);
        let to = ok.headers.get("To").unwrap().to_owned();
        let ack = ua.in_dialog("ACK", &to);
        ua.send(ack).await;
    }
    wait_members(&node, 2).await;
    // Switchyard kicks alice's member: the browser gets a BYE on its socket.
    let out = node.api("conference room2 kick 1");
    assert_eq!(out.trim(), "+OK kicked 1");
    let bye = a.request().await;
    assert_eq!(bye.method, "BYE");
    assert_eq!(bye.headers.get("Call-ID"), Some(a.call_id.as_str()));
    assert!(
        bye.uri.contains(".invalid"),
        "BYE goes to the UA's Contact: {}",
        bye.uri
    );
    assert!(
        NameAddr::parse(bye.headers.get("To").unwrap())
            .unwrap()
            .tag()
            == Some("fromtag")
    );
    wait_members(&node, 1).await;

    // Bob's tab closes: his call hangs up, the conference goes.
    drop(b);
    wait_members(&node, 0).await;
    events
        .wait_for("conference-destroy", |ev| {
            actions(ev).contains(&"conference-destroy".to_owned())
        })
        .await;
    assert!(node.snapshot().channels.is_empty());
    // A restart drops the WebSocket connections like FreeSWITCH going away.
    node.restart().await;
    assert!(a.closed().await);
}

#[tokio::test]
async fn cancel_before_answer_gets_487() {
    let (node, _) = node().await;
    // A slow directory keeps the INVITE proceeding long enough to cancel it.
    let (mut ua, _) = connect(node.sip_ws_addr().unwrap(), "alice").await;
    ua.call_id = uuid::Uuid::new_v4().to_string();
    let text = ua.invite_text("room3", None);
    ua.send(text).await;
    let ch = ua.response().await;
    let to = ch.headers.get("To").unwrap().to_owned();
    let ack = ua.in_dialog("ACK", &to);
    ua.send(ack).await;
    let pa = ch.headers.get("Proxy-Authenticate").unwrap().to_owned();
    let auth = digest(
        "alice",
        "INVITE",
        &format!("sip:conf*room3@{DOMAIN}"),
        &nonce_of(&pa),
        1,
    );
    let invite = ua.invite_text("room3", Some(auth));
    node.set_directory_delay(Duration::from_millis(300));
    ua.send(invite.clone()).await;
    // Let the directory lookup start, then CANCEL (same CSeq number, method CANCEL).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cancel = ua
        .in_dialog("CANCEL", &format!("<sip:conf*room3@{DOMAIN}>"))
        .replace(
            &format!("CSeq: {} CANCEL", ua.cseq),
            &format!("CSeq: {} CANCEL", ua.cseq - 1),
        );
    ua.send(cancel).await;
    let cseq = ua.cseq - 1;
    let cancel_ok = ua.response().await;
    assert_eq!(cancel_ok.status, 200);
    assert_eq!(
        cancel_ok.headers.get("CSeq"),
        Some(format!("{cseq} CANCEL").as_str())
    );
    let terminated = ua.response().await;
    assert_eq!(terminated.status, 487);
    assert_eq!(
        terminated.headers.get("CSeq"),
        Some(format!("{cseq} INVITE").as_str())
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(node.snapshot().channels.is_empty());
    assert!(node.snapshot().conferences.is_empty());
}
