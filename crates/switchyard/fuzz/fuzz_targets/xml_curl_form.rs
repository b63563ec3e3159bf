//! mod_xml_curl form bodies → directory / dialplan answers, everything short of the store.
//!
//! Any bytes go to `Form::parse`, which must agree with a reference parser written from the
//! module docs (same fields in the same order, prelude raw, the rest percent-decoded), and a
//! parsed form must survive being written back the way FreeSWITCH writes it. The form is then
//! classified as a directory and as a dialplan request, and every document the service could
//! send for it is rendered, once per store outcome (usable / disabled / expired / other-realm /
//! absent credential; join / full / forbidden / unknown conference, no caller), and checked:
//! well-formed XML 1.0, only our elements and attributes, no `<?`, `$${`, pre-processor
//! directives or comments, every user with a non-empty `a1-hash` and never a `password`.
//! Finally raw field values (any text, no charset check) are rendered into every attribute
//! slot: the document keeps the structure it has with harmless values, every value reads back
//! as given, and no `<`, `"`, `$` or line break from the input appears unescaped.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use quick_xml::events::Event;
use switchyard::config::SipConfig;
use switchyard::freeswitch::dialplan::{self, CONFERENCE_PREFIX, DialplanLookup};
use switchyard::freeswitch::directory::{self, Lookup};
use switchyard::freeswitch::form::{Form, FormError, MAX_FIELDS, PRELUDE};
use switchyard::freeswitch::xml::{DIAL_STRING, DialplanAction, DirectoryUser, Document};
use switchyard::ids::valid_user_id;
use switchyard::store::{Admission, DirectoryEntry};

fuzz_target!(|data: &[u8]| {
    let parsed = Form::parse(data);
    let reference = reference_parse(data);
    let form = match (parsed, reference) {
        (Ok(form), Some(expected)) => {
            check_fields(&form, &expected);
            form
        }
        (Err(_), None) => {
            // What every malformed request is answered.
            check_document(&render(&Document::NotFound));
            return;
        }
        (parsed, reference) => {
            panic!("parser and reference disagree: {parsed:?} vs {reference:?}")
        }
    };
    let sip = SipConfig::default();
    directory_answers(&form, &sip);
    dialplan_answers(&form);
    hostile_values(&form);
});

// ---------------------------------------------------------------------------------------------
// The form.

/// The module docs of `form.rs`, implemented independently.
fn reference_parse(data: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(data).ok()?;
    let pairs: Vec<&str> = text.split('&').collect();
    if pairs.len() < PRELUDE.len() || pairs.len() > MAX_FIELDS {
        return None;
    }
    let mut out = Vec::with_capacity(pairs.len());
    for (i, pair) in pairs.into_iter().enumerate() {
        let eq = pair.find('=')?;
        let (name, value) = (&pair[..eq], &pair[eq + 1..]);
        if i < PRELUDE.len() {
            if name != PRELUDE[i] {
                return None;
            }
            out.push((name.to_owned(), value.to_owned()));
        } else {
            if name.is_empty() {
                return None;
            }
            out.push((name.to_owned(), reference_decode(value)?));
        }
    }
    Some(out)
}

fn reference_decode(value: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail.get(..2)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// `switch_url_encode`-style: everything but unreserved characters as `%XX`.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check_fields(form: &Form, expected: &[(String, String)]) {
    let got: Vec<(&str, &str)> = form.fields().collect();
    let want: Vec<(&str, &str)> = expected
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, want, "fields differ from the reference");
    assert_eq!(form.len(), expected.len());
    assert!(!form.is_empty());
    for (name, value) in expected {
        let count = expected.iter().filter(|(n, _)| n == name).count();
        match form.get(name) {
            Ok(Some(v)) => assert!(count == 1 && v == value, "get({name:?}) = {v:?}"),
            Err(FormError::Duplicate { name: n }) => {
                assert!(count > 1 && n == *name, "duplicate {n:?} for {name:?}")
            }
            other => panic!("get({name:?}) = {other:?} for a field it parsed"),
        }
    }
    // Written back as FreeSWITCH writes it (prelude raw, the rest encoded): the same fields.
    let body = expected
        .iter()
        .enumerate()
        .map(|(i, (n, v))| {
            if i < PRELUDE.len() {
                format!("{n}={v}")
            } else {
                format!("{n}={}", encode(v))
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    match Form::parse(body.as_bytes()) {
        Ok(again) => assert!(again.fields().eq(form.fields()), "round trip: {body:?}"),
        Err(e) => panic!("re-encoded form does not parse ({e}): {body:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The answers, store outcomes simulated.

/// Something arbitrary from the request for the store-side text (a display name, a profile).
fn last_value(form: &Form) -> &str {
    form.fields().last().map_or("", |(_, v)| v)
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_315_530, 0).expect("a valid timestamp")
}

fn directory_answers(form: &Form, sip: &SipConfig) {
    match directory::classify(form, sip) {
        Lookup::User { username } => {
            assert!(valid_user_id(&username), "lookup of {username:?}");
            assert_eq!(username, username.to_ascii_lowercase());
            assert_eq!(form.get("section"), Ok(Some("directory")));
            let entry = |enabled: bool, expires_in: Option<i64>, realm: &str| DirectoryEntry {
                username: username.clone(),
                realm: realm.to_owned(),
                a1_hash: "1c13f0eb55501935b8c882b618f78401".to_owned(),
                expires_at: expires_in.map(|s| now() + chrono::Duration::seconds(s)),
                user_id: username.clone(),
                display_name: last_value(form).to_owned(),
                enabled,
            };
            let usable = [
                entry(true, None, &sip.domain),
                entry(true, Some(60), "127.0.0.1"),
            ];
            let refused = [
                entry(false, None, &sip.domain),
                entry(true, Some(0), &sip.domain),
                entry(true, Some(-60), &sip.domain),
                entry(true, None, "example.com"),
            ];
            for e in &usable {
                let doc = directory::user_document(sip, Some(e), now());
                let text = render(&doc);
                let elements = check_document(&text);
                let user = elements
                    .iter()
                    .find(|(name, _)| name == "user")
                    .expect("a user element");
                assert_eq!(user.1, vec![("id".to_owned(), username.clone())]);
                assert!(
                    elements.iter().any(|(name, attrs)| name == "param"
                        && attrs.first().is_some_and(|(_, v)| v == "a1-hash")
                        && attrs.get(1).is_some_and(|(_, v)| !v.is_empty())),
                    "a user without an a1-hash: {text}"
                );
            }
            for e in refused.iter().map(Some).chain([None]) {
                let doc = directory::user_document(sip, e, now());
                assert_eq!(doc, Document::NotFound, "{e:?}");
            }
        }
        Lookup::Domain => {
            assert_eq!(form.get("section"), Ok(Some("directory")));
            check_document(&render(&Document::Domain {
                domain: &sip.domain,
            }));
        }
        Lookup::NotFound(_) => {}
    }
}

fn dialplan_answers(form: &Form) {
    let DialplanLookup::Conference {
        context,
        destination,
        name,
        caller,
    } = dialplan::classify(form)
    else {
        return;
    };
    assert_eq!(form.get("section"), Ok(Some("dialplan")));
    assert!(valid_user_id(&context), "context {context:?}");
    assert!(valid_user_id(&name), "conference {name:?}");
    assert_eq!(destination, format!("{CONFERENCE_PREFIX}{name}"));
    assert!(caller.as_deref().is_none_or(valid_user_id), "{caller:?}");

    let profile = last_value(form);
    let mut actions = vec![DialplanAction::Respond("403 Forbidden")]; // no caller
    for admission in [
        Admission::Join {
            profile: profile.to_owned(),
        },
        Admission::Join {
            profile: "default".to_owned(),
        },
        Admission::Full,
        Admission::Forbidden,
        Admission::Unknown,
    ] {
        let action = dialplan::admission_action(&name, admission.clone());
        match (&admission, &action) {
            (Admission::Join { profile }, DialplanAction::Conference(data)) => {
                assert!(valid_user_id(profile), "joins profile {profile:?}");
                assert_eq!(*data, format!("{name}@{profile}"));
            }
            (Admission::Join { .. }, DialplanAction::Respond(status)) => {
                assert_eq!(*status, "404 Not Found")
            }
            (_, DialplanAction::Respond(_)) => {}
            (a, DialplanAction::Conference(_)) => panic!("{a:?} joins the conference"),
        }
        actions.push(action);
    }
    for action in actions {
        let doc = Document::Extension {
            context: &context,
            destination: &destination,
            action,
        };
        let elements = check_document(&render(&doc));
        let condition = elements
            .iter()
            .find(|(n, _)| n == "condition")
            .expect("a condition");
        let expression = &condition.1[1].1;
        assert_eq!(*expression, dialplan::exact_regex(&destination));
    }
}

// ---------------------------------------------------------------------------------------------
// Raw values in every attribute slot.

/// The same documents with three strings in every slot that takes text.
fn documents<'a>(v: [&'a str; 3]) -> Vec<Document<'a>> {
    vec![
        Document::Domain { domain: v[0] },
        Document::User {
            domain: v[2],
            user: DirectoryUser {
                username: v[1],
                a1_hash: v[0],
                variables: vec![("effective_caller_id_name", v[0]), (v[1], v[2])],
            },
        },
        Document::Extension {
            context: v[0],
            destination: v[1],
            action: DialplanAction::Conference(format!("{}@{}", v[1], v[2])),
        },
        Document::Extension {
            context: v[2],
            destination: v[0],
            action: DialplanAction::Respond("486 Busy Here"),
        },
    ]
}

fn hostile_values(form: &Form) {
    let (last_name, last_value) = form.fields().last().expect("the prelude at least");
    let hostname = form.get_or_empty("hostname").unwrap_or("");
    let hostile = [last_value, last_name, hostname];
    let harmless = ["a", "b", "c"];
    for (doc, plain) in documents(hostile).iter().zip(documents(harmless).iter()) {
        let text = render(doc);
        let reference = render(plain);
        let got = check_document(&text);
        let want = check_document(&reference);
        // Same elements, same attributes: nothing from the input became markup.
        for c in ['<', '>', '"', '$', '\n', '\r'] {
            assert_eq!(
                text.matches(c).count(),
                reference.matches(c).count(),
                "{c:?} from the input in {text}"
            );
        }
        assert_eq!(got.len(), want.len(), "{text}");
        for ((gn, ga), (wn, wa)) in got.iter().zip(&want) {
            assert_eq!(gn, wn, "{text}");
            assert_eq!(ga.len(), wa.len(), "{text}");
            for ((gk, gv), (wk, wv)) in ga.iter().zip(wa) {
                assert_eq!(gk, wk, "{text}");
                let expected = match wv.as_str() {
                    "a" => sanitized(hostile[0]),
                    "b" => sanitized(hostile[1]),
                    "c" => sanitized(hostile[2]),
                    "b@c" => sanitized(&format!("{}@{}", hostile[1], hostile[2])),
                    "^b$" => sanitized(&dialplan::exact_regex(hostile[1])),
                    "^a$" => sanitized(&dialplan::exact_regex(hostile[0])),
                    constant => constant.to_owned(),
                };
                assert_eq!(*gv, expected, "attribute {gk} of <{gn}> in {text}");
            }
        }
    }
}

/// What an attribute value reads back as: characters XML 1.0 cannot carry become U+FFFD.
fn sanitized(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c.is_control() || !xml_char(c) => '\u{fffd}',
            c => c,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Document checks.

fn render(doc: &Document<'_>) -> String {
    match doc.render() {
        Ok(text) => text,
        Err(e) => panic!("render failed: {e}: {doc:?}"),
    }
}

/// XML 1.0 `Char`.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

const ELEMENTS: [&str; 16] = [
    "document",
    "section",
    "result",
    "domain",
    "params",
    "param",
    "groups",
    "group",
    "users",
    "user",
    "variables",
    "variable",
    "context",
    "extension",
    "condition",
    "action",
];

const ATTRIBUTES: [&str; 10] = [
    "type",
    "name",
    "description",
    "status",
    "value",
    "id",
    "field",
    "expression",
    "application",
    "data",
];

/// Every element in document order with its attributes (values unescaped), after checking the
/// text is a well-formed document FreeSWITCH's pre-processor leaves alone.
fn check_document(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    assert!(text.ends_with("</document>\n"), "{text}");
    if let Some(c) = text.chars().find(|&c| !xml_char(c)) {
        panic!("{c:?} is not an XML 1.0 character: {text:?}");
    }
    for line in text.lines() {
        let tag = line.trim_start_matches(' ');
        assert!(
            tag.starts_with('<') && tag.ends_with('>'),
            "a line that is not one tag: {line:?}"
        );
        for bad in [
            "<?",
            "$${",
            "<X-PRE-PROCESS",
            "<include",
            "</include",
            "<!--",
        ] {
            assert!(!line.contains(bad), "{bad} in {line:?}");
        }
        if line.contains('$') {
            assert!(
                line.contains(DIAL_STRING),
                "$ outside the dial-string: {line:?}"
            );
        }
    }

    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut out = Vec::new();
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => panic!("not well-formed ({e}): {text}"),
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).expect("UTF-8 name");
                assert!(
                    ELEMENTS.contains(&name.as_str()),
                    "element {name:?}: {text}"
                );
                if stack.is_empty() {
                    roots += 1;
                    assert_eq!(name, "document");
                }
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.unwrap_or_else(|err| panic!("bad attribute ({err}): {text}"));
                    let key = String::from_utf8(a.key.as_ref().to_vec()).expect("UTF-8 key");
                    assert!(
                        ATTRIBUTES.contains(&key.as_str()),
                        "attribute {key:?}: {text}"
                    );
                    let value = a
                        .unescape_value()
                        .unwrap_or_else(|err| panic!("bad value ({err}): {text}"))
                        .into_owned();
                    attrs.push((key, value));
                }
                if name == "param" {
                    assert!(
                        attrs.first().is_none_or(|(_, v)| v != "password"),
                        "a password param: {text}"
                    );
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(name.clone());
                }
                out.push((name, attrs));
            }
            Event::End(ref e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).expect("UTF-8 name");
                assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "{text}");
            }
            Event::Text(ref t) => {
                assert!(
                    t.iter().all(u8::is_ascii_whitespace),
                    "text content: {text}"
                );
            }
            Event::Eof => break,
            other => panic!("unexpected {other:?}: {text}"),
        }
    }
    assert!(stack.is_empty(), "unclosed {stack:?}: {text}");
    assert_eq!(roots, 1, "{text}");
    out
}
