//! The XML documents sent to FreeSWITCH, written with quick-xml's writer.
//!
//! Every attribute value goes through [`attr`]: XML escaping (`<>&'"`) plus what FreeSWITCH's
//! pre-processor would otherwise act on: `$` becomes `&#36;` (no `$${var}` expansion) and line
//! breaks become character references (no new line for the line-based pre-processor). Since `<`
//! is always escaped, no content line can contain `<?`, `<include>` or `<X-PRE-PROCESS`. No XML
//! declaration is written (it is optional, and FreeSWITCH drops any line that holds one).

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

/// The domain-level dial-string of the vanilla configuration (minus verto), constant.
pub const DIAL_STRING: &str = "{^^:sip_invite_domain=${dialed_domain}:presence_id=${dialed_user}@${dialed_domain}}${sofia_contact(*/${dialed_user}@${dialed_domain})}";

/// One user of a directory answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser<'a> {
    /// The SIP username (`<user id>`), equal to the digest username.
    pub username: &'a str,
    pub a1_hash: &'a str,
    /// `user_context`, `effective_caller_id_name`, ... in order.
    pub variables: Vec<(&'a str, &'a str)>,
}

/// What a conference extension does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialplanAction {
    /// `answer`, then `conference <data>` (`name@profile`).
    Conference(String),
    /// `respond <code reason>`: reject before answering.
    Respond(&'static str),
}

/// What the mod_xml_curl endpoints answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document<'a> {
    /// `<section name="result"><result status="not found"/>`.
    NotFound,
    /// The domain with its params and no users (profile start, ACL load).
    Domain { domain: &'a str },
    /// The domain with exactly one user.
    User {
        domain: &'a str,
        user: DirectoryUser<'a>,
    },
    /// A dialplan context with one extension for exactly `destination`.
    Extension {
        context: &'a str,
        destination: &'a str,
        action: DialplanAction,
    },
}

impl Document<'_> {
    /// The document as text (UTF-8, LF line endings, ending in a newline).
    pub fn render(&self) -> io::Result<String> {
        let mut w = Writer::new_with_indent(Vec::with_capacity(1024), b' ', 2);
        w.write_event(Event::Start(element(
            "document",
            &[("type", "freeswitch/xml")],
        )))?;
        match self {
            Document::NotFound => {
                w.write_event(Event::Start(element("section", &[("name", "result")])))?;
                w.write_event(Event::Empty(element("result", &[("status", "not found")])))?;
                w.write_event(Event::End(BytesEnd::new("section")))?;
            }
            Document::Domain { domain } => {
                w.write_event(Event::Start(element("section", &[("name", "directory")])))?;
                write_domain(&mut w, domain, None)?;
                w.write_event(Event::End(BytesEnd::new("section")))?;
            }
            Document::User { domain, user } => {
                w.write_event(Event::Start(element("section", &[("name", "directory")])))?;
                write_domain(&mut w, domain, Some(user))?;
                w.write_event(Event::End(BytesEnd::new("section")))?;
            }
            Document::Extension {
                context,
                destination,
                action,
            } => write_extension(&mut w, context, destination, action)?,
        }
        w.write_event(Event::End(BytesEnd::new("document")))?;
        let mut out = w.into_inner();
        out.push(b'\n');
        String::from_utf8(out).map_err(io::Error::other)
    }
}

fn write_extension(
    w: &mut Writer<Vec<u8>>,
    context: &str,
    destination: &str,
    action: &DialplanAction,
) -> io::Result<()> {
    w.write_event(Event::Start(element(
        "section",
        &[("name", "dialplan"), ("description", "switchyard")],
    )))?;
    w.write_event(Event::Start(element("context", &[("name", context)])))?;
    w.write_event(Event::Start(element(
        "extension",
        &[("name", "switchyard_conference")],
    )))?;
    let expression = super::dialplan::exact_regex(destination);
    w.write_event(Event::Start(element(
        "condition",
        &[("field", "destination_number"), ("expression", &expression)],
    )))?;
    match action {
        DialplanAction::Conference(data) => {
            w.write_event(Event::Empty(element(
                "action",
                &[("application", "answer")],
            )))?;
            w.write_event(Event::Empty(element(
                "action",
                &[("application", "conference"), ("data", data)],
            )))?;
        }
        DialplanAction::Respond(status) => {
            w.write_event(Event::Empty(element(
                "action",
                &[("application", "respond"), ("data", status)],
            )))?;
        }
    }
    for name in ["condition", "extension", "context", "section"] {
        w.write_event(Event::End(BytesEnd::new(name)))?;
    }
    Ok(())
}

fn write_domain(
    w: &mut Writer<Vec<u8>>,
    domain: &str,
    user: Option<&DirectoryUser<'_>>,
) -> io::Result<()> {
    w.write_event(Event::Start(element("domain", &[("name", domain)])))?;
    w.write_event(Event::Start(BytesStart::new("params")))?;
    // A constant, written without the `$` escaping so it reads like the vanilla config.
    let mut dial_string = BytesStart::new("param");
    dial_string.push_attribute(("name", "dial-string"));
    dial_string.push_attribute(("value", DIAL_STRING));
    w.write_event(Event::Empty(dial_string))?;
    w.write_event(Event::End(BytesEnd::new("params")))?;
    if let Some(user) = user {
        w.write_event(Event::Start(BytesStart::new("groups")))?;
        w.write_event(Event::Start(element("group", &[("name", "default")])))?;
        w.write_event(Event::Start(BytesStart::new("users")))?;
        // No `cacheable`: FreeSWITCH's user cache would outlive expiry and revocation.
        w.write_event(Event::Start(element("user", &[("id", user.username)])))?;
        w.write_event(Event::Start(BytesStart::new("params")))?;
        for (name, value) in [("a1-hash", user.a1_hash), ("allow-empty-password", "false")] {
            w.write_event(Event::Empty(element(
                "param",
                &[("name", name), ("value", value)],
            )))?;
        }
        w.write_event(Event::End(BytesEnd::new("params")))?;
        w.write_event(Event::Start(BytesStart::new("variables")))?;
        for (name, value) in &user.variables {
            w.write_event(Event::Empty(element(
                "variable",
                &[("name", name), ("value", value)],
            )))?;
        }
        w.write_event(Event::End(BytesEnd::new("variables")))?;
        w.write_event(Event::End(BytesEnd::new("user")))?;
        w.write_event(Event::End(BytesEnd::new("users")))?;
        w.write_event(Event::End(BytesEnd::new("group")))?;
        w.write_event(Event::End(BytesEnd::new("groups")))?;
    }
    w.write_event(Event::End(BytesEnd::new("domain")))?;
    Ok(())
}

/// `<name a="v" ...>` with every value escaped by [`attr`].
fn element<'a>(name: &'a str, attrs: &[(&str, &str)]) -> BytesStart<'a> {
    let mut start = BytesStart::new(name);
    for (key, value) in attrs {
        let value = attr(value);
        start.push_attribute((key.as_bytes(), value.as_bytes()));
    }
    start
}

/// XML attribute escaping plus `$` and line breaks (see the module docs). Constant values such
/// as [`DIAL_STRING`] do not go through here.
pub(crate) fn attr(value: &str) -> String {
    let escaped = quick_xml::escape::escape(value);
    let mut out = String::with_capacity(escaped.len());
    for c in escaped.chars() {
        match c {
            '$' => out.push_str("&#36;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            // Not representable in XML 1.0, not even as a reference (controls, and the two
            // noncharacters outside its `Char` production; Rust strings hold no surrogates).
            c if c.is_control() || matches!(c, '\u{fffe}' | '\u{ffff}') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
