//! An ordered, duplicate-preserving list of `Name: value` headers, stored compactly.
//!
//! Parsing a header block allocates one `Vec` of 16-byte slots and, only when some value
//! contains `%`, one string for the decoded values: names and plain values are slices of the
//! received bytes.
//! That keeps the hot path (hundreds of thousands of events a second) free of per-header
//! allocations. Lookups by name are ASCII case-insensitive, as in FreeSWITCH.

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

use crate::urlencode;

/// Flags of a [`Slot`].
const NAME_IN_ARENA: u8 = 1;
const VALUE_IN_ARENA: u8 = 2;
/// The decoded value was not UTF-8: the arena holds a lossy copy, `exact` the bytes.
const VALUE_INEXACT: u8 = 4;

/// One header: where its name and value text live. 16 bytes, so an 80-header event indexes
/// in 1.3 KB.
#[derive(Clone, Copy, Debug)]
struct Slot {
    name_start: u32,
    value_start: u32,
    value_len: u32,
    name_len: u16,
    flags: u8,
}

/// Ordered headers. Duplicate names are kept (FreeSWITCH sends some, e.g. in `floor-change`).
#[derive(Clone, Default)]
pub struct Headers {
    /// The received header block (names and plain values are slices of it).
    raw: ByteString,
    /// Decoded values and pushed names/values.
    arena: String,
    /// Exact bytes of values that were not UTF-8: (slot index, start, end) into `exact_bytes`.
    exact: Vec<(u32, u32, u32)>,
    exact_bytes: Vec<u8>,
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
            exact_bytes: Vec::new(),
            // FreeSWITCH header lines average 25-35 bytes.
            slots: Vec::with_capacity(block.len() / 24 + 2),
        };
        headers.index_raw(encoding);
        headers
    }

    /// One pass over the block: line ends and `%` positions come from two SIMD scans, the colon
    /// from a short scalar scan of the name.
    fn index_raw(&mut self, encoding: ValueEncoding) {
        let raw = self.raw.clone();
        let text = raw.as_bytes();
        let mut percents = memchr::memchr_iter(b'%', text);
        let mut next_percent = match encoding {
            ValueEncoding::UrlEncoded => percents.next().unwrap_or(usize::MAX),
            ValueEncoding::Verbatim => usize::MAX,
        };
        let mut line_start = 0usize;
        let mut line_ends = memchr::memchr_iter(b'\n', text);
        while line_start < text.len() {
            let line_end = line_ends.next().unwrap_or(text.len());
            let mut end = line_end;
            if end > line_start && text[end - 1] == b'\r' {
                end -= 1;
            }
            let line = &text[line_start..end];
            let start = line_start;
            line_start = line_end + 1;
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let mut name_end = colon;
            while name_end > 0 && line[name_end - 1] == b' ' {
                name_end -= 1;
            }
            let mut value_start = colon + 1;
            while value_start < line.len() && line[value_start] == b' ' {
                value_start += 1;
            }
            let (abs_value_start, abs_end) = (start + value_start, start + line.len());
            while next_percent < abs_value_start {
                next_percent = percents.next().unwrap_or(usize::MAX);
            }
            let Ok(name_len) = u16::try_from(name_end) else {
                continue;
            };
            let (value_start, value_len, flags) = if next_percent < abs_end {
                let value = raw.get(abs_value_start..abs_end).unwrap_or("");
                self.decode_value(value)
            } else {
                (
                    abs_value_start as u32,
                    (abs_end - abs_value_start) as u32,
                    0,
                )
            };
            // Built in one go: writing fields of a stack copy first costs a store-forwarding
            // stall per header (measured).
            self.slots.push(Slot {
                name_start: start as u32,
                name_len,
                value_start,
                value_len,
                flags,
            });
        }
    }

    /// Decodes a `%`-escaped value into the arena; returns its (start, len, flags).
    fn decode_value(&mut self, value: &str) -> (u32, u32, u8) {
        if self.arena.capacity() == 0 {
            self.arena.reserve(self.raw.len() / 2);
        }
        let start = self.arena.len();
        if decode_ascii_into(value, &mut self.arena) {
            return (
                start as u32,
                (self.arena.len() - start) as u32,
                VALUE_IN_ARENA,
            );
        }
        // An escape produced a non-ASCII byte: decode to bytes and check UTF-8.
        self.arena.truncate(start);
        let bytes = urlencode::decode(value.as_bytes());
        let index = self.slots.len();
        self.store_value_bytes(index, &bytes)
    }

    /// Stores a value's bytes in the arena (lossily if not UTF-8, keeping the exact bytes);
    /// returns its (start, len, flags).
    fn store_value_bytes(&mut self, index: usize, bytes: &[u8]) -> (u32, u32, u8) {
        let start = self.arena.len();
        let mut flags = VALUE_IN_ARENA;
        match std::str::from_utf8(bytes) {
            Ok(text) => self.arena.push_str(text),
            Err(_) => {
                self.arena.push_str(&String::from_utf8_lossy(bytes));
                let exact_start = self.exact_bytes.len();
                self.exact_bytes.extend_from_slice(bytes);
                self.exact.push((
                    index as u32,
                    exact_start as u32,
                    self.exact_bytes.len() as u32,
                ));
                flags |= VALUE_INEXACT;
            }
        }
        (start as u32, (self.arena.len() - start) as u32, flags)
    }

    /// Appends a header (its value as it should read after decoding).
    pub fn push(&mut self, name: &str, value: &str) {
        self.push_bytes(name, value.as_bytes());
    }

    /// Appends a header whose value may not be UTF-8 (kept exactly; readable lossily).
    pub fn push_bytes(&mut self, name: &str, value: &[u8]) {
        let name = &name[..name.len().min(usize::from(u16::MAX))];
        let name_start = self.arena.len();
        self.arena.push_str(name);
        let index = self.slots.len();
        let (value_start, value_len, flags) = self.store_value_bytes(index, value);
        self.slots.push(Slot {
            name_start: name_start as u32,
            name_len: name.len() as u16,
            value_start,
            value_len,
            flags: flags | NAME_IN_ARENA,
        });
    }

    /// Removes and returns the last header.
    pub fn pop(&mut self) -> Option<(String, Vec<u8>)> {
        let index = self.slots.len().checked_sub(1)?;
        let slot = *self.slots.get(index)?;
        let item = (
            self.name(&slot).to_owned(),
            self.value_bytes(index, &slot).to_vec(),
        );
        self.slots.pop();
        self.exact.retain(|(i, _, _)| *i as usize != index);
        Some(item)
    }

    fn name(&self, slot: &Slot) -> &str {
        let range = slot.name_start as usize..slot.name_start as usize + usize::from(slot.name_len);
        let text = if slot.flags & NAME_IN_ARENA != 0 {
            self.arena.get(range)
        } else {
            self.raw.get(range)
        };
        text.unwrap_or("")
    }

    fn value(&self, slot: &Slot) -> &str {
        let range = slot.value_start as usize..(slot.value_start + slot.value_len) as usize;
        let text = if slot.flags & VALUE_IN_ARENA != 0 {
            self.arena.get(range)
        } else {
            self.raw.get(range)
        };
        text.unwrap_or("")
    }

    fn value_bytes(&self, index: usize, slot: &Slot) -> &[u8] {
        if slot.flags & VALUE_INEXACT != 0
            && let Some((_, start, end)) = self.exact.iter().find(|(i, _, _)| *i as usize == index)
        {
            return self
                .exact_bytes
                .get(*start as usize..*end as usize)
                .unwrap_or(&[]);
        }
        self.value(slot).as_bytes()
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
        self.position(name).map(|i| self.value(&self.slots[i]))
    }

    /// The exact bytes of the first value of `name`.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.position(name)
            .map(|i| self.value_bytes(i, &self.slots[i]))
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.slots
            .iter()
            .filter(move |slot| {
                usize::from(slot.name_len) == name.len()
                    && self.name(slot).eq_ignore_ascii_case(name)
            })
            .map(move |slot| self.value(slot))
    }

    /// True when a header `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Index of the first header called `name`; the length check skips most headers without
    /// touching their text.
    fn position(&self, name: &str) -> Option<usize> {
        let len = name.len();
        self.slots.iter().position(|slot| {
            usize::from(slot.name_len) == len && self.name(slot).eq_ignore_ascii_case(name)
        })
    }

    /// All headers in order, as (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.slots
            .iter()
            .map(move |slot| (self.name(slot), self.value(slot)))
    }

    /// All headers in order with exact value bytes.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.slots
            .iter()
            .enumerate()
            .map(move |(i, slot)| (self.name(slot), self.value_bytes(i, slot)))
    }
}

/// Decodes `%XX` escapes of `value` onto `out` as long as they decode to ASCII (the common
/// case: `%20`, `%3A`, `%40`...). Returns false, leaving `out` partly written, at the first
/// escape of a byte ≥ 0x80; the caller then takes the byte-level path.
fn decode_ascii_into(value: &str, out: &mut String) -> bool {
    out.reserve(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let hex = rest.as_bytes().get(pos + 1..pos + 3);
        match hex.and_then(|h| Some((urlencode::hex_val(h[0])? << 4) | urlencode::hex_val(h[1])?)) {
            Some(byte) if byte < 0x80 => {
                out.push(char::from(byte));
                rest = &rest[pos + 3..];
            }
            Some(_) => return false,
            None => {
                out.push('%');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    true
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
