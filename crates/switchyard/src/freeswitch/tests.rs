//! Snapshots of every document we send, the injection cases, and the lookup rules.

use super::directory::{Lookup, classify};
use super::form::Form;
use super::xml::{DirectoryUser, Document};
use crate::config::SipConfig;

const PRELUDE: &str = "hostname=vm&section=directory&tag_name=domain&key_name=name&key_value=127.0.0.1&Event-Name=REQUEST_PARAMS&Core-UUID=60521194-8708-47ec-8892-6f189eab12ad";

pub(super) fn render(doc: &Document<'_>) -> String {
    match doc.render() {
        Ok(text) => text,
        Err(e) => panic!("render failed: {e}"),
    }
}

fn user_doc<'a>(username: &'a str, name: &'a str) -> Document<'a> {
    Document::User {
        domain: "127.0.0.1",
        user: DirectoryUser {
            username,
            a1_hash: "1c13f0eb55501935b8c882b618f78401",
            variables: vec![
                ("user_context", "default"),
                ("effective_caller_id_name", name),
                ("effective_caller_id_number", "alice"),
                ("switchyard_user_id", "alice"),
            ],
        },
    }
}

/// What FreeSWITCH's pre-processor would do with the text: the document must survive it.
pub(super) fn assert_preprocessor_safe(text: &str) {
    for line in text.lines() {
        assert!(!line.contains("<?"), "line would be dropped: {line}");
        assert!(!line.contains("<include>") && !line.contains("</include>"));
        assert!(!line.contains("$${"), "global variable expansion: {line}");
        assert!(!line.contains("<X-PRE-PROCESS"), "{line}");
        assert!(!line.contains("<!--#"), "{line}");
    }
    assert!(
        !text.contains("name=\"password\""),
        "never a plaintext password param"
    );
}

/// Every element and attribute, in document order: the structure an XML parser sees.
fn structure(text: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)) => {
                let mut line = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                for a in e.attributes() {
                    let a = a.unwrap_or_else(|err| panic!("bad attribute: {err}"));
                    let value = a
                        .unescape_value()
                        .unwrap_or_else(|err| panic!("bad value: {err}"));
                    line.push_str(&format!(
                        " {}={value:?}",
                        String::from_utf8_lossy(a.key.as_ref())
                    ));
                }
                out.push(line);
            }
            Ok(quick_xml::events::Event::Eof) => return out,
            Ok(_) => {}
            Err(e) => panic!("unparsable: {e}"),
        }
    }
}

#[test]
fn not_found_document() {
    let text = render(&Document::NotFound);
    assert_preprocessor_safe(&text);
    insta::assert_snapshot!(text);
}

#[test]
fn domain_document() {
    let text = render(&Document::Domain {
        domain: "127.0.0.1",
    });
    assert_preprocessor_safe(&text);
    insta::assert_snapshot!(text);
}

#[test]
fn user_document() {
    let text = render(&user_doc("sy0123456789abcdefghijkl", "Alice"));
    assert_preprocessor_safe(&text);
    insta::assert_snapshot!(text);
}

#[test]
fn injection_through_values_cannot_change_the_structure() {
    let evil = "a\"/><user id=\"admin";
    let name = "x\"/></variables><params><param name=\"password\" value=\"\"/>\n<?xml $${exec(id)} <X-PRE-PROCESS cmd=\"exec\" data=\"id\"/>\r\u{1}";
    let text = render(&user_doc(evil, name));
    assert_preprocessor_safe(&text);
    let expected = structure(&render(&user_doc("placeholder", "placeholder")));
    let got = structure(&text);
    assert_eq!(got.len(), expected.len(), "{text}");
    let users: Vec<&String> = got.iter().filter(|e| e.starts_with("user ")).collect();
    assert_eq!(users, [&format!("user id={evil:?}")], "{text}");
    assert!(got.contains(&format!(
        "variable name=\"effective_caller_id_name\" value={:?}",
        name.replace('\u{1}', "\u{fffd}")
    )));
    insta::assert_snapshot!(text);
}

/// Found by the `xml_curl_form` fuzz target: U+FFFE and U+FFFF are not controls, yet XML 1.0
/// cannot carry them (not even as references), and a display name may hold them.
#[test]
fn noncharacters_are_replaced() {
    let text = render(&user_doc("alice", "a\u{fffe}b\u{ffff}c"));
    assert!(!text.contains(['\u{fffe}', '\u{ffff}']), "{text}");
    assert!(
        structure(&text).contains(
            &"variable name=\"effective_caller_id_name\" value=\"a\u{fffd}b\u{fffd}c\"".to_owned()
        ),
        "{text}"
    );
}

fn sip() -> SipConfig {
    SipConfig::default()
}

fn lookup(body: &str) -> Lookup {
    match Form::parse(body.as_bytes()) {
        Ok(form) => classify(&form, &sip()),
        Err(e) => panic!("{body}: {e}"),
    }
}

#[test]
fn user_lookups() {
    let user = |u: &str| Lookup::User {
        username: u.to_owned(),
    };
    for action in [
        "sip_auth",
        "user_call",
        "message-count",
        "reverse-auth-lookup",
    ] {
        assert_eq!(
            lookup(&format!(
                "{PRELUDE}&action={action}&key=id&user=Sy1&domain=127.0.0.1"
            )),
            user("sy1"),
            "{action}"
        );
    }
    assert_eq!(
        lookup(&format!("{PRELUDE}&key=id&user=sy1&domain=127.0.0.1")),
        user("sy1"),
        "plain lookup"
    );
    assert_eq!(
        lookup(&format!("{PRELUDE}&user=sy1")),
        user("sy1"),
        "domain from key_value"
    );
}

#[test]
fn everything_else_is_not_found() {
    let not_found = |body: &str| {
        assert!(
            matches!(lookup(body), Lookup::NotFound(_)),
            "{body}: {:?}",
            lookup(body)
        );
    };
    not_found(&format!("{PRELUDE}&action=event_socket_auth&user=sy1"));
    not_found(&format!("{PRELUDE}&action=group_call&group_name=x"));
    not_found(&format!("{PRELUDE}&action=jsonrpc-authenticate&user=sy1"));
    not_found(&format!(
        "{PRELUDE}&action=sip_auth&key=number-alias&user=sy1"
    ));
    not_found(&format!("{PRELUDE}&action=sip_auth"));
    not_found(&format!(
        "{PRELUDE}&action=sip_auth&user=a%22%2F%3E%3Cuser%20id%3D%22admin"
    ));
    not_found(&format!(
        "{PRELUDE}&action=sip_auth&user=sy1&domain=other.example"
    ));
    not_found(&format!("{PRELUDE}&action=sip_auth&user=sy1&user=sy2"));
    not_found(&format!(
        "{PRELUDE}&action=sip_auth&user=sy1&sip_auth_username=sy2"
    ));
    not_found(&format!("{PRELUDE}&purpose=unknown"));
    not_found("hostname=vm&section=dialplan&tag_name=&key_name=&key_value=&Caller-Context=default");
    not_found(
        "hostname=vm&section=directory&tag_name=domain&key_name=name&key_value=%24%24%7Bdomain%7D&user=sy1",
    );
    not_found(
        "hostname=vm&section=directory&tag_name=domain&key_name=name&key_value=other.example&purpose=gateways",
    );
}

#[test]
fn startup_lookups_get_the_domain() {
    // Requests #1 and #2 of the capture.
    assert_eq!(
        lookup(
            "hostname=vm&section=directory&tag_name=&key_name=&key_value=&Event-Name=REQUEST_PARAMS&purpose=gateways&profile=internal"
        ),
        Lookup::Domain
    );
    assert_eq!(
        lookup(
            "hostname=vm&section=directory&tag_name=domain&key_name=name&key_value=127.0.0.1&Event-Name=GENERAL&domain=127.0.0.1&purpose=network-list"
        ),
        Lookup::Domain
    );
}

mod dialplan {
    use super::super::dialplan::{DialplanLookup, classify, exact_regex};
    use super::super::form::Form;
    use super::super::xml::{DialplanAction, Document};
    use super::{assert_preprocessor_safe, render};

    const PRELUDE: &str =
        "hostname=vm&section=dialplan&tag_name=&key_name=&key_value=&Event-Name=REQUEST_PARAMS";

    fn lookup(body: &str) -> DialplanLookup {
        match Form::parse(body.as_bytes()) {
            Ok(form) => classify(&form),
            Err(e) => panic!("{body}: {e}"),
        }
    }

    #[test]
    fn join_document() {
        let text = render(&Document::Extension {
            context: "default",
            destination: "conf*room-1.a",
            action: DialplanAction::Conference("room-1.a@video".to_owned()),
        });
        assert_preprocessor_safe(&text);
        insta::assert_snapshot!(text);
    }

    #[test]
    fn reject_document() {
        let text = render(&Document::Extension {
            context: "default",
            destination: "conf*room1",
            action: DialplanAction::Respond("486 Busy Here"),
        });
        assert_preprocessor_safe(&text);
        insta::assert_snapshot!(text);
    }

    #[test]
    fn conference_destinations() {
        assert_eq!(
            lookup(&format!(
                "{PRELUDE}&Caller-Context=default&Caller-Destination-Number=conf*room1&Hunt-Context=public&Hunt-Destination-Number=conf*room2&variable_switchyard_user_id=alice"
            )),
            DialplanLookup::Conference {
                context: "public".to_owned(),
                destination: "conf*room2".to_owned(),
                name: "room2".to_owned(),
                caller: Some("alice".to_owned()),
            },
            "Hunt-* wins (transfers change it)"
        );
        assert_eq!(
            lookup(&format!(
                "{PRELUDE}&Caller-Context=default&Caller-Destination-Number=conf*room1"
            )),
            DialplanLookup::Conference {
                context: "default".to_owned(),
                destination: "conf*room1".to_owned(),
                name: "room1".to_owned(),
                caller: None,
            },
            "no authenticated caller"
        );
        for body in [
            format!("{PRELUDE}&Caller-Context=default&Caller-Destination-Number=3000"),
            format!("{PRELUDE}&Caller-Context=default&Caller-Destination-Number=conf*a@b"),
            format!("{PRELUDE}&Caller-Context=default&Caller-Destination-Number=conf*%24%24%7Bx%7D"),
            format!("{PRELUDE}&Caller-Context=a%22b&Caller-Destination-Number=conf*room1"),
            format!("{PRELUDE}&Caller-Destination-Number=conf*room1"),
            format!("{PRELUDE}&Caller-Context=default&Caller-Destination-Number=conf*room1&Caller-Destination-Number=conf*room2"),
            "hostname=vm&section=directory&tag_name=&key_name=&key_value=&Caller-Context=default&Caller-Destination-Number=conf*room1".to_owned(),
        ] {
            assert!(
                matches!(lookup(&body), DialplanLookup::NotFound(_)),
                "{body}"
            );
        }
    }

    #[test]
    fn exact_regexes() {
        assert_eq!(exact_regex("conf*room-1.a"), "^conf\\*room\\-1\\.a$");
    }
}

/// Fail closed: a stored hash that FreeSWITCH could not compare (empty, wrong length,
/// uppercase) is answered like an unknown user, never as a user without a credential.
#[test]
fn a_malformed_stored_hash_is_not_found() {
    let sip = sip();
    let now = chrono::Utc::now();
    let entry = |a1_hash: &str| crate::store::DirectoryEntry {
        username: "sy1".to_owned(),
        realm: sip.domain.clone(),
        a1_hash: a1_hash.to_owned(),
        expires_at: None,
        user_id: "alice".to_owned(),
        display_name: "Alice".to_owned(),
        enabled: true,
    };
    let good = entry("0123456789abcdef0123456789abcdef");
    assert!(matches!(
        super::directory::user_document(&sip, Some(&good), now),
        Document::User { .. }
    ));
    for bad in [
        "",
        "0123",
        "0123456789ABCDEF0123456789ABCDEF",
        "0123456789abcdef0123456789abcdeg",
    ] {
        let bad = entry(bad);
        assert!(
            matches!(
                super::directory::user_document(&sip, Some(&bad), now),
                Document::NotFound
            ),
            "{:?}",
            bad.a1_hash
        );
    }
}
