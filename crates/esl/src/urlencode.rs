//! FreeSWITCH's URL encoding of event header values (`switch_url_encode`) and its inverse.
//!
//! FreeSWITCH escapes a byte as `%XX` (uppercase hex) when it is a control byte, non-ASCII, or one
//! of `SWITCH_URL_UNSAFE`; everything else printable stays literal (notably `, / ( ) ' * ! $ ~`).
//! A `%` already followed by two *uppercase* hex digits is copied through, so encoding is not
//! always reversible: that is FreeSWITCH's behaviour and we reproduce it.

/// Characters `switch_url_encode` escapes besides control and non-ASCII bytes.
const UNSAFE: &[u8] = b"\r\n #%&+:;<=>?@[\\]^`{|}\"";

fn needs_escape(b: u8) -> bool {
    !(0x20..=0x7e).contains(&b) || UNSAFE.contains(&b)
}

fn is_upper_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `value` URL-encoded exactly as FreeSWITCH does to `out`.
pub fn encode_into(value: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b == b'%'
            && i + 2 < value.len()
            && is_upper_hex(value[i + 1])
            && is_upper_hex(value[i + 2])
        {
            // FreeSWITCH passes an existing uppercase %XX escape through untouched.
            out.push(b);
        } else if needs_escape(b) {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.push(b);
        }
        i += 1;
    }
}

/// URL-encodes `value` exactly as FreeSWITCH does.
pub fn encode(value: &str) -> String {
    let mut out = Vec::with_capacity(value.len() + 8);
    encode_into(value.as_bytes(), &mut out);
    // Only ASCII bytes are emitted, so this cannot fail.
    String::from_utf8(out).unwrap_or_default()
}

/// Returns true when `value` would be changed by [`decode_into`] (it contains a `%`).
pub fn needs_decode(value: &[u8]) -> bool {
    memchr::memchr(b'%', value).is_some()
}

/// The value of one hex digit, either case.
pub fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` (either case of hex) like libesl. `+` stays `+`; a `%` not followed by two hex
/// digits is kept literally.
pub fn decode_into(value: &[u8], out: &mut Vec<u8>) {
    let mut rest = value;
    while let Some(pos) = memchr::memchr(b'%', rest) {
        out.extend_from_slice(&rest[..pos]);
        let escaped = rest
            .get(pos + 1..pos + 3)
            .and_then(|h| Some((hex_val(h[0])? << 4) | hex_val(h[1])?));
        match escaped {
            Some(byte) => {
                out.push(byte);
                rest = &rest[pos + 3..];
            }
            None => {
                out.push(b'%');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.extend_from_slice(rest);
}

/// [`decode_into`] as a plain byte loop, faster on short values with escapes (header values).
pub(crate) fn decode_into_simple(value: &[u8], out: &mut Vec<u8>) {
    out.reserve(value.len());
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        if b == b'%'
            && let Some(byte) = value
                .get(i + 1..i + 3)
                .and_then(|h| Some((hex_val(h[0])? << 4) | hex_val(h[1])?))
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
}

/// Decodes to bytes (the result may not be UTF-8: FreeSWITCH escapes raw bytes of any value).
pub fn decode(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    decode_into(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_freeswitch() {
        assert_eq!(
            encode("Sun, 22 Nov 2026 02:45:32 GMT"),
            "Sun,%2022%20Nov%202026%2002%3A45%3A32%20GMT"
        );
        assert_eq!(encode("fd00::2"), "fd00%3A%3A2");
        assert_eq!(encode("1001@127.0.0.1"), "1001%40127.0.0.1");
        assert_eq!(encode("a+b"), "a%2Bb");
        assert_eq!(encode("ARRAY::3000|:3000"), "ARRAY%3A%3A3000%7C%3A3000");
        assert_eq!(encode("/x,y(z)'*!$~-._"), "/x,y(z)'*!$~-._");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(encode("tab\there"), "tab%09here");
    }

    #[test]
    fn uppercase_escape_passes_through_lowercase_does_not() {
        assert_eq!(encode("%41"), "%41");
        assert_eq!(encode("%4a"), "%254a");
        assert_eq!(encode("100%"), "100%25");
        assert_eq!(encode("%4"), "%254");
    }

    #[test]
    fn decodes_like_libesl() {
        assert_eq!(decode(b"a%20b%3a%3A"), b"a b::");
        assert_eq!(decode(b"a+b"), b"a+b");
        assert_eq!(decode(b"100%"), b"100%");
        assert_eq!(decode(b"%zz%4"), b"%zz%4");
        assert_eq!(decode(b"%FF%fe"), vec![0xff, 0xfe]);
    }

    #[test]
    fn roundtrip_without_uppercase_escapes() {
        for s in ["", "plain", "a b:c@d", "ünïcödé ✓", "%zz", "x%4a", "\r\n\t"] {
            assert_eq!(decode(encode(s).as_bytes()), s.as_bytes(), "{s:?}");
        }
    }
}
