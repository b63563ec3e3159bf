//! The mod_xml_curl request body, parsed exactly as FreeSWITCH writes it.
//!
//! `hostname=..&section=..&tag_name=..&key_name=..&key_value=..` come first, in that order and
//! **raw** (FreeSWITCH does not encode them), then `&Name=value` for every param of the request
//! event, names raw and values encoded with `switch_url_encode` (`%20`, `%3A`, ...; `+` is not
//! a space). Anything else is malformed: a missing or reordered prelude, a pair without `=`,
//! an empty name, a bad `%` escape, bytes that are not UTF-8 after decoding, too many fields.
//! The caller answers malformed requests "not found"; this module never panics on input.

/// The five fields FreeSWITCH always sends first, unencoded.
pub const PRELUDE: [&str; 5] = ["hostname", "section", "tag_name", "key_name", "key_value"];

/// More fields than any real request carries (a `user_call` with every originate variable is
/// about 150); the body size limit bounds the rest.
pub const MAX_FIELDS: usize = 1024;

/// Why a body is not a mod_xml_curl form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error("field {index} is not name=value")]
    NoEquals { index: usize },
    #[error("field {index} has an empty name")]
    EmptyName { index: usize },
    #[error("field {index} should be {expected:?}")]
    Prelude {
        index: usize,
        expected: &'static str,
    },
    #[error("field {index} has a bad percent escape")]
    BadEscape { index: usize },
    #[error("more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("field {name:?} appears more than once")]
    Duplicate { name: String },
}

/// A parsed request: every field in order, values decoded.
///
/// One buffer holds the body followed by the decoded values that needed decoding; fields are
/// byte ranges into it (two allocations per request instead of two per field).
#[derive(Clone)]
pub struct Form {
    text: String,
    fields: Vec<(Span, Span)>,
}

/// A byte range of the form's text, on `char` boundaries.
type Span = std::ops::Range<usize>;

impl Form {
    /// Parses a request body (see the module docs for the rules).
    pub fn parse(body: &[u8]) -> Result<Self, FormError> {
        let body = std::str::from_utf8(body).map_err(|_| FormError::NotUtf8)?;
        // Decoding never lengthens a value, so the decoded values fit without reallocating.
        let mut text = Vec::with_capacity(2 * body.len());
        text.extend_from_slice(body.as_bytes());
        let mut fields = Vec::with_capacity(64);
        let mut start = 0;
        for (index, pair) in body.split('&').enumerate() {
            let pair_start = start;
            start += pair.len() + 1;
            if index >= MAX_FIELDS {
                return Err(FormError::TooManyFields);
            }
            let (name, value) = pair.split_once('=').ok_or(FormError::NoEquals { index })?;
            let name_span = pair_start..pair_start + name.len();
            let value_span = name_span.end + 1..pair_start + pair.len();
            if let Some(&expected) = PRELUDE.get(index) {
                if name != expected {
                    return Err(FormError::Prelude { index, expected });
                }
                fields.push((name_span, value_span));
                continue;
            }
            if name.is_empty() {
                return Err(FormError::EmptyName { index });
            }
            let value_span = if value.contains('%') {
                let decoded_start = text.len();
                percent_decode_into(value, &mut text).ok_or(FormError::BadEscape { index })?;
                decoded_start..text.len()
            } else {
                value_span
            };
            fields.push((name_span, value_span));
        }
        if fields.len() < PRELUDE.len() {
            return Err(FormError::Prelude {
                index: fields.len(),
                expected: PRELUDE[fields.len()],
            });
        }
        // The body and every decoded value are UTF-8, so this does not fail.
        let text = String::from_utf8(text).map_err(|_| FormError::NotUtf8)?;
        Ok(Self { text, fields })
    }

    /// The value of `name` when it appears exactly once; `Ok(None)` when absent. Fields the
    /// answer depends on go through here, so a repeated field cannot mean two things.
    pub fn get(&self, name: &str) -> Result<Option<&str>, FormError> {
        let mut found = self.fields().filter(|&(n, _)| n == name);
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some((_, v)), None) => Ok(Some(v)),
            (Some(_), Some(_)) => Err(FormError::Duplicate {
                name: name.to_owned(),
            }),
        }
    }

    /// [`Form::get`], with a missing field read as empty (FreeSWITCH sends empty prelude
    /// values as `key_value=`).
    pub fn get_or_empty(&self, name: &str) -> Result<&str, FormError> {
        Ok(self.get(name)?.unwrap_or(""))
    }

    /// Every field in body order, duplicates included, values decoded. For tests and fuzzing
    /// only: answers read fields through [`Form::get`], which refuses repeated fields.
    #[doc(hidden)]
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|(n, v)| (&self.text[n.clone()], &self.text[v.clone()]))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Two forms are equal when they have the same fields in the same order.
impl PartialEq for Form {
    fn eq(&self, other: &Self) -> bool {
        self.fields().eq(other.fields())
    }
}

impl Eq for Form {}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Form")
            .field("fields", &self.fields().collect::<Vec<_>>())
            .finish()
    }
}

/// Appends `value` to `out` with `%XX` → byte, everything else as is. `None` for a bad escape
/// or a non-UTF-8 result (`out` then holds a partial value; the caller gives up on the form).
fn percent_decode_into(value: &str, out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    let bytes = value.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| esl::urlencode::hex_val(*c))?;
            let lo = bytes.get(i + 2).and_then(|c| esl::urlencode::hex_val(*c))?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    std::str::from_utf8(&out[start..]).ok().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::{Form, FormError};

    /// The body of captured request #3 (REGISTER 1001).
    pub(crate) const REGISTER_1001: &str = "hostname=vm&section=directory&tag_name=domain&key_name=name&key_value=127.0.0.1&Event-Name=REQUEST_PARAMS&Core-UUID=60521194-8708-47ec-8892-6f189eab12ad&FreeSWITCH-Hostname=vm&FreeSWITCH-Switchname=vm&FreeSWITCH-IPv4=192.0.2.2&FreeSWITCH-IPv6=fd00%3A%3A2&Event-Date-Local=2026-11-22%2002%3A45%3A30&Event-Date-GMT=Sun,%2022%20Nov%202026%2002%3A45%3A30%20GMT&Event-Date-Timestamp=1795315530036759&Event-Calling-File=sofia_reg.c&Event-Calling-Function=sofia_reg_parse_auth&Event-Calling-Line-Number=3124&Event-Sequence=454&action=sip_auth&sip_profile=internal&sip_user_agent=sipp-fixture&sip_auth_username=1001&sip_auth_realm=127.0.0.1&sip_auth_nonce=927f26d8-be73-439c-9045-0eead5d1749d&sip_auth_uri=sip%3A127.0.0.1%3A5060&sip_contact_user=1001&sip_contact_host=127.0.0.1&sip_to_user=1001&sip_to_host=127.0.0.1&sip_via_protocol=udp&sip_from_user=1001&sip_from_host=127.0.0.1&sip_call_id=1-15938%40127.0.0.1&sip_request_host=127.0.0.1&sip_request_port=5060&sip_auth_qop=auth&sip_auth_cnonce=6b8b4567&sip_auth_nc=00000001&sip_auth_response=25a0a97bd849f0724eea14745bc8da2b&sip_auth_method=REGISTER&client_port=5071&key=id&user=1001&domain=127.0.0.1&ip=127.0.0.1";

    #[test]
    fn parses_the_captured_register() {
        let form = Form::parse(REGISTER_1001.as_bytes()).expect("parses");
        assert_eq!(form.get("section"), Ok(Some("directory")));
        assert_eq!(form.get("key_value"), Ok(Some("127.0.0.1")));
        assert_eq!(form.get("action"), Ok(Some("sip_auth")));
        assert_eq!(form.get("user"), Ok(Some("1001")));
        assert_eq!(form.get("FreeSWITCH-IPv6"), Ok(Some("fd00::2")));
        assert_eq!(
            form.get("Event-Date-GMT"),
            Ok(Some("Sun, 22 Nov 2026 02:45:30 GMT"))
        );
        assert_eq!(form.get("sip_call_id"), Ok(Some("1-15938@127.0.0.1")));
        assert_eq!(form.get("nope"), Ok(None));
    }

    #[test]
    fn parses_the_captured_startup_requests() {
        let gateways = "hostname=vm&section=directory&tag_name=&key_name=&key_value=&Event-Name=REQUEST_PARAMS&purpose=gateways&profile=internal";
        let form = Form::parse(gateways.as_bytes()).expect("parses");
        assert_eq!(form.get("key_value"), Ok(Some("")));
        assert_eq!(form.get("purpose"), Ok(Some("gateways")));
    }

    #[test]
    fn prelude_is_raw_and_the_rest_decoded() {
        let form =
            Form::parse(b"hostname=a%20b&section=s&tag_name=&key_name=&key_value=&x=a%20b+c")
                .expect("parses");
        assert_eq!(form.get("hostname"), Ok(Some("a%20b")));
        assert_eq!(form.get("x"), Ok(Some("a b+c")));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let prelude = "hostname=h&section=directory&tag_name=&key_name=&key_value=";
        let cases: Vec<(Vec<u8>, FormError)> = vec![
            (b"".to_vec(), FormError::NoEquals { index: 0 }),
            (
                b"section=directory&hostname=h".to_vec(),
                FormError::Prelude {
                    index: 0,
                    expected: "hostname",
                },
            ),
            (
                b"hostname=h&section=directory".to_vec(),
                FormError::Prelude {
                    index: 2,
                    expected: "tag_name",
                },
            ),
            (b"\xff\xfe".to_vec(), FormError::NotUtf8),
            (
                format!("{prelude}&user=%ff").into_bytes(),
                FormError::BadEscape { index: 5 },
            ),
            (
                format!("{prelude}&user=%4").into_bytes(),
                FormError::BadEscape { index: 5 },
            ),
            (
                format!("{prelude}&user=%zz").into_bytes(),
                FormError::BadEscape { index: 5 },
            ),
            (
                format!("{prelude}&=x").into_bytes(),
                FormError::EmptyName { index: 5 },
            ),
            (
                format!("{prelude}&junk").into_bytes(),
                FormError::NoEquals { index: 5 },
            ),
            (
                format!("{prelude}{}", "&a=b".repeat(2000)).into_bytes(),
                FormError::TooManyFields,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                Form::parse(&body),
                Err(expected),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn repeated_fields_are_refused_where_they_matter() {
        let form = Form::parse(
            b"hostname=h&section=directory&tag_name=&key_name=&key_value=&user=a&user=b",
        )
        .expect("parses");
        assert!(matches!(form.get("user"), Err(FormError::Duplicate { .. })));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_u32;
        for len in 0..300 {
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    b"%&=az09\xff"[(seed >> 16) as usize % 8]
                })
                .collect();
            let _ = Form::parse(&body);
        }
    }
}
