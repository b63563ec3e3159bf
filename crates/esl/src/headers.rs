//! An ordered, duplicate-preserving list of `Name: value` headers, stored compactly.
//!
//! Parsing a header block allocates one `Vec` of spans and, only when some value contains `%`,
//! one string for the decoded values: names and plain values are slices of the received bytes.
//! That keeps the hot path (hundreds of thousands of events a second) free of per-header
//! allocations. Lookups by name are ASCII case-insensitive, as in FreeSWITCH.

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

use crate::urlencode;

/// Where a span's text lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    /// A slice of the received header block.
    Raw,
    /// A slice of the decoded-values arena.
    Arena,
}

#[derive(Clone, Copy, Debug)]
struct Span {
    src: Src,
    start: u32,
    end: u32,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    name: Span,
    value: Span,
    /// Exact decoded bytes when they were not valid UTF-8 (`value` then holds a lossy copy).
    exact: Option<(u32, u32)>,
}

/// Ordered headers. Duplicate names are kept (FreeSWITCH sends some, e.g. in `floor-change`).
#[derive(Clone, Default)]
pub struct Headers {
    raw: ByteString,
    arena: String,
    exact: Vec<u8>,
    slots: Vec<Slot>,
}

/// How header values in a block are encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueEncoding {
    /// Values are taken as they are (outer ESL frame headers).
    Verbatim,
    /// Values are URL-encoded (the body of `text/event-plain`).
    UrlEncoded,
}

impl Headers {
    /// An empty header list, to be filled with [`Headers::push`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a header block (lines `Name: value`, each ending in `\n`, without the blank line
    /// that terminates the block). Lines without `:` are ignored, as FreeSWITCH does; a trailing
    /// `\r` is dropped. Bytes that are not UTF-8 are replaced (U+FFFD) rather than refused.
    pub fn parse(block: Bytes, encoding: ValueEncoding) -> Headers {
        let raw = match ByteString::try_from(block.clone()) {
            Ok(s) => s,
            Err(_) => ByteString::from(String::from_utf8_lossy(&block).into_owned()),
        };
        let mut headers = Headers {
            raw,
            arena: String::new(),
            exact: Vec::new(),
            slots: Vec::with_capacity(16),
        };
        headers.index_raw(encoding);
        headers
    }

    fn index_raw(&mut self, encoding: ValueEncoding) {
        let text = self.raw.as_bytes();
        let mut pos = 0usize;
        let mut decoded = Vec::new();
        while pos < text.len() {
            let line_end = memchr::memchr(b'\n', &text[pos..]).map_or(text.len(), |i| pos + i);
            let mut line = &text[pos..line_end];
            let line_start = pos;
            pos = line_end + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let name_end = trim_end(line, colon);
            let mut value_start = colon + 1;
            while value_start < line.len() && line[value_start] == b' ' {
                value_start += 1;
            }
            let name = raw_span(line_start, line_start + name_end);
            let value_bytes = &line[value_start..];
            let raw_value = raw_span(line_start + value_start, line_start + line.len());
            if encoding == ValueEncoding::UrlEncoded && urlencode::needs_decode(value_bytes) {
                decoded.clear();
                urlencode::decode_into(value_bytes, &mut decoded);
                let (value, exact) = push_decoded(&mut self.arena, &mut self.exact, &decoded);
                self.slots.push(Slot { name, value, exact });
            } else {
                self.slots.push(Slot {
                    name,
                    value: raw_value,
                    exact: None,
                });
            }
        }
    }

    /// Appends a header (its value as it should read after decoding).
    pub fn push(&mut self, name: &str, value: &str) {
        let name = push_str(&mut self.arena, name);
        let value = push_str(&mut self.arena, value);
        self.slots.push(Slot {
            name,
            value,
            exact: None,
        });
    }

    /// Appends a header whose value may not be UTF-8 (kept exactly; readable lossily).
    pub fn push_bytes(&mut self, name: &str, value: &[u8]) {
        let name = push_str(&mut self.arena, name);
        let (value, exact) = push_decoded(&mut self.arena, &mut self.exact, value);
        self.slots.push(Slot { name, value, exact });
    }

    fn text(&self, span: Span) -> &str {
        let range = span.start as usize..span.end as usize;
        match span.src {
            Src::Raw => self.raw.get(range).unwrap_or(""),
            Src::Arena => self.arena.get(range).unwrap_or(""),
        }
    }

    /// Number of headers (duplicates counted).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there is no header.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The first value of `name` (case-insensitive). Values that were not UTF-8 read lossily;
    /// use [`Headers::get_bytes`] for the exact bytes.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name).map(|slot| self.text(slot.value))
    }

    /// The exact bytes of the first value of `name`.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.find(name).map(|slot| match slot.exact {
            Some((start, end)) => self.exact.get(start as usize..end as usize).unwrap_or(&[]),
            None => self.text(slot.value).as_bytes(),
        })
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.slots
            .iter()
            .filter(move |slot| self.text(slot.name).eq_ignore_ascii_case(name))
            .map(move |slot| self.text(slot.value))
    }

    /// True when a header `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    fn find(&self, name: &str) -> Option<&Slot> {
        self.slots
            .iter()
            .find(|slot| self.text(slot.name).eq_ignore_ascii_case(name))
    }

    /// All headers in order, as (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.slots
            .iter()
            .map(move |slot| (self.text(slot.name), self.text(slot.value)))
    }

    /// All headers in order with exact value bytes.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.slots.iter().map(move |slot| {
            let value = match slot.exact {
                Some((s, e)) => self.exact.get(s as usize..e as usize).unwrap_or(&[]),
                None => self.text(slot.value).as_bytes(),
            };
            (self.text(slot.name), value)
        })
    }
}

fn trim_end(line: &[u8], mut end: usize) -> usize {
    while end > 0 && line[end - 1] == b' ' {
        end -= 1;
    }
    end
}

fn raw_span(start: usize, end: usize) -> Span {
    // Header blocks are limited far below 4 GiB by the decoder.
    Span {
        src: Src::Raw,
        start: start as u32,
        end: end as u32,
    }
}

fn push_str(arena: &mut String, s: &str) -> Span {
    let start = arena.len();
    arena.push_str(s);
    Span {
        src: Src::Arena,
        start: start as u32,
        end: arena.len() as u32,
    }
}

fn push_decoded(
    arena: &mut String,
    exact: &mut Vec<u8>,
    bytes: &[u8],
) -> (Span, Option<(u32, u32)>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (push_str(arena, s), None),
        Err(_) => {
            let start = exact.len();
            exact.extend_from_slice(bytes);
            let lossy = String::from_utf8_lossy(bytes);
            (
                push_str(arena, &lossy),
                Some((start as u32, exact.len() as u32)),
            )
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.iter_bytes().eq(other.iter_bytes())
    }
}

impl Eq for Headers {}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<T: IntoIterator<Item = (&'a str, &'a str)>>(iter: T) -> Self {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.push(name, value);
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let block = Bytes::from_static(
            b"Event-Name: HEARTBEAT\nFreeSWITCH-IPv6: fd00%3A%3A2\nbogus line\nX:  two\r\nEmpty:\n",
        );
        let h = Headers::parse(block, ValueEncoding::UrlEncoded);
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("event-name"), Some("HEARTBEAT"));
        assert_eq!(h.get("FreeSWITCH-IPv6"), Some("fd00::2"));
        assert_eq!(h.get("X"), Some("two"));
        assert_eq!(h.get("Empty"), Some(""));
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn keeps_duplicates_in_order() {
        let h = Headers::parse(
            Bytes::from_static(b"A: 1\nB: 2\nA: 3\n"),
            ValueEncoding::Verbatim,
        );
        assert_eq!(h.get("A"), Some("1"));
        assert_eq!(h.get_all("a").collect::<Vec<_>>(), vec!["1", "3"]);
    }

    #[test]
    fn non_utf8_values_are_exact_and_lossy() {
        let h = Headers::parse(
            Bytes::from_static(b"V: caf%E9\n"),
            ValueEncoding::UrlEncoded,
        );
        assert_eq!(h.get_bytes("V"), Some(&b"caf\xe9"[..]));
        assert_eq!(h.get("V"), Some("caf\u{fffd}"));
    }

    #[test]
    fn verbatim_does_not_decode() {
        let h = Headers::parse(Bytes::from_static(b"R: 100%20\n"), ValueEncoding::Verbatim);
        assert_eq!(h.get("R"), Some("100%20"));
    }
}
