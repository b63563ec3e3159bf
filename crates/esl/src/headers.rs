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
/// Transient, while parsing: the raw value contains `%` and still has to be decoded.
const VALUE_ENCODED: u8 = 8;

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
        Headers::parse_prefix(&block, encoding, false).0
    }

    /// Parses the header block at the start of `bytes`. With `stop_at_blank`, the block ends at
    /// the first `\n\n` (the returned offset is where the blank line starts; the block keeps the
    /// `\n` of its last line); otherwise, and when there is no blank line, it is all of `bytes`.
    pub(crate) fn parse_prefix(
        bytes: &Bytes,
        encoding: ValueEncoding,
        stop_at_blank: bool,
    ) -> (Headers, Option<usize>) {
        // Index first, on the bytes, then validate UTF-8 on exactly the block: one pass finds
        // the lines, the colons, the `%`s and the end of the block.
        // FreeSWITCH header lines average 25-35 bytes.
        let mut slots = Vec::with_capacity(bytes.len().min(64 * 1024) / 24 + 2);
        let (end, blank, encoded) = index_lines(bytes, encoding, stop_at_blank, &mut slots);
        let (raw, encoded) = match ByteString::try_from(bytes.slice(..end)) {
            Ok(raw) => (raw, encoded),
            Err(_) => {
                // Rare: index the lossy text again (replacement characters shift offsets).
                let raw = ByteString::from(String::from_utf8_lossy(&bytes[..end]).into_owned());
                slots.clear();
                let (_, _, encoded) = index_lines(raw.as_bytes(), encoding, false, &mut slots);
                (raw, encoded)
            }
        };
        let mut headers = Headers {
            raw,
            slots,
            ..Headers::default()
        };
        if encoded {
            headers.decode_marked();
        }
        (headers, blank)
    }

    /// Decodes the values that [`index_lines`] marked as containing `%` into the (empty) arena.
    fn decode_marked(&mut self) {
        // All values are decoded as bytes into one buffer that is validated once at the end: no
        // per-value UTF-8 check, no small copies.
        let raw = self.raw.as_bytes();
        let mut decoded = Vec::with_capacity(raw.len() / 4);
        for slot in self.slots.iter_mut() {
            if slot.flags & VALUE_ENCODED == 0 {
                continue;
            }
            let start = slot.value_start as usize;
            let value = raw
                .get(start..start + slot.value_len as usize)
                .unwrap_or(&[]);
            slot.value_start = decoded.len() as u32;
            urlencode::decode_into_simple(value, &mut decoded);
            slot.value_len = decoded.len() as u32 - slot.value_start;
        }
        match String::from_utf8(decoded) {
            Ok(arena) => {
                for slot in self.slots.iter_mut() {
                    if slot.flags & VALUE_ENCODED != 0 {
                        slot.flags = VALUE_IN_ARENA;
                    }
                }
                self.arena = arena;
            }
            Err(e) => {
                // Some value is not UTF-8: store each one lossily, keeping its exact bytes.
                let decoded = e.into_bytes();
                for index in 0..self.slots.len() {
                    let slot = self.slots[index];
                    if slot.flags & VALUE_ENCODED == 0 {
                        continue;
                    }
                    let start = slot.value_start as usize;
                    let value = decoded
                        .get(start..start + slot.value_len as usize)
                        .unwrap_or(&[]);
                    let (value_start, value_len, flags) = self.store_value_bytes(index, value);
                    self.slots[index] = Slot {
                        value_start,
                        value_len,
                        flags,
                        ..slot
                    };
                }
            }
        }
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

    /// The last header, as (name, value).
    pub(crate) fn last(&self) -> Option<(&str, &str)> {
        let slot = self.slots.last()?;
        Some((self.name(slot), self.value(slot)))
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

/// Indexes the lines of `text` into `slots` (offsets into `text`, values not decoded yet but
/// marked [`VALUE_ENCODED`] when they contain `%` and `encoding` is URL encoding). Returns the
/// end of the block, where its blank line starts (only with `stop_at_blank`, see
/// [`Headers::parse_prefix`]), and whether any value is marked.
fn index_lines(
    text: &[u8],
    encoding: ValueEncoding,
    stop_at_blank: bool,
    slots: &mut Vec<Slot>,
) -> (usize, Option<usize>, bool) {
    let url = encoding == ValueEncoding::UrlEncoded;
    let mut encoded = false;
    let mut start = 0usize;
    while start < text.len() {
        // `\n\n`: an empty line that is not the very first byte.
        if stop_at_blank && start > 0 && text[start] == b'\n' {
            return (start, Some(start), encoded);
        }
        let colon = find_either(text, start, b':', b'\n');
        if colon >= text.len() || text[colon] == b'\n' {
            start = colon + 1; // a line without `:`
            continue;
        }
        let (line_end, percent) = find_line_end(text, colon + 1, url);
        let next = line_end + 1;
        let mut end = line_end;
        if end > colon + 1 && text[end - 1] == b'\r' {
            end -= 1;
        }
        let mut name_end = colon;
        while name_end > start && text[name_end - 1] == b' ' {
            name_end -= 1;
        }
        let mut value_start = colon + 1;
        while value_start < end && text[value_start] == b' ' {
            value_start += 1;
        }
        let Ok(name_len) = u16::try_from(name_end - start) else {
            start = next;
            continue;
        };
        let flags = if percent { VALUE_ENCODED } else { 0 };
        encoded |= percent;
        // Built in one go: writing fields of a stack copy first costs a store-forwarding
        // stall per header (measured).
        slots.push(Slot {
            name_start: start as u32,
            name_len,
            value_start: value_start as u32,
            value_len: (end - value_start) as u32,
            flags,
        });
        start = next;
    }
    (text.len(), None, encoded)
}

// Line scanning reads 8 bytes at a time as a u64 ("SWAR"): header lines are ~30 bytes, too
// short for memchr's SIMD to pay for its per-call setup, and this finds the colon, the line end
// and any `%` in one pass without `unsafe`.
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of the first byte of `word` (in memory order) equal to `byte`, and possibly of
/// later bytes: the classic "has zero byte" test, whose borrow can only mark bytes above a real
/// match. Callers use the lowest bit, or ask whether any bit is set, which that keeps exact.
#[inline(always)]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (LO * u64::from(byte));
    x.wrapping_sub(LO) & !x & HI
}

#[inline(always)]
fn word_at(text: &[u8], i: usize) -> Option<u64> {
    let chunk = text.get(i..)?.first_chunk::<8>()?;
    Some(u64::from_le_bytes(*chunk))
}

/// Index of the first `a` or `b` at or after `i`; `text.len()` if none.
#[inline(always)]
fn find_either(text: &[u8], mut i: usize, a: u8, b: u8) -> usize {
    while let Some(word) = word_at(text, i) {
        let hits = bytes_equal(word, a) | bytes_equal(word, b);
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < text.len() && text[i] != a && text[i] != b {
        i += 1;
    }
    i
}

/// Index of the first `\n` at or after `i` (`text.len()` if none), and whether a `%` comes
/// before it (only looked for with `percent`).
#[inline(always)]
fn find_line_end(text: &[u8], mut i: usize, percent: bool) -> (usize, bool) {
    let mut seen = 0u64;
    while let Some(word) = word_at(text, i) {
        let newlines = bytes_equal(word, b'\n');
        let percents = if percent { bytes_equal(word, b'%') } else { 0 };
        if newlines != 0 {
            // Bits up to the first newline byte: `%`s after it belong to the next line.
            let before = newlines ^ (newlines - 1);
            return (
                i + (newlines.trailing_zeros() / 8) as usize,
                (seen | (percents & before)) != 0,
            );
        }
        seen |= percents;
        i += 8;
    }
    let mut found = seen != 0;
    while i < text.len() && text[i] != b'\n' {
        found |= percent && text[i] == b'%';
        i += 1;
    }
    (i, found)
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

    /// The straightforward reading of a header block, to check the line indexer against.
    fn reference(block: &[u8], encoding: ValueEncoding) -> Vec<(String, Vec<u8>)> {
        let text = String::from_utf8_lossy(block);
        let mut out = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim_start_matches(' ');
            let value = if encoding == ValueEncoding::UrlEncoded && value.contains('%') {
                urlencode::decode(value.as_bytes())
            } else {
                value.as_bytes().to_vec()
            };
            out.push((name.trim_end_matches(' ').to_owned(), value));
        }
        out
    }

    fn owned(h: &Headers) -> Vec<(String, Vec<u8>)> {
        h.iter_bytes()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect()
    }

    #[test]
    fn indexer_matches_the_reference() {
        // Bytes drawn from the characters that matter to the indexer, UTF-8 and not.
        const ALPHABET: &[u8] = b"aB: \n\n\r%%4e1E9\xc3\xa9\xff";
        fn prop(seed: Vec<u8>, url: bool) -> bool {
            let block: Vec<u8> = seed
                .iter()
                .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()])
                .collect();
            let encoding = if url {
                ValueEncoding::UrlEncoded
            } else {
                ValueEncoding::Verbatim
            };
            let bytes = Bytes::from(block.clone());
            if owned(&Headers::parse(bytes.clone(), encoding)) != reference(&block, encoding) {
                return false;
            }
            // Stopping at the blank line: the same as cutting at the first `\n\n`.
            let (h, blank) = Headers::parse_prefix(&bytes, encoding, true);
            let cut = memchr::memmem::find(&block, b"\n\n").map(|at| at + 1);
            blank == cut && owned(&h) == reference(&block[..cut.unwrap_or(block.len())], encoding)
        }
        quickcheck::QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<u8>, bool) -> bool);
    }

    #[test]
    fn verbatim_does_not_decode() {
        let h = Headers::parse(Bytes::from_static(b"R: 100%20\n"), ValueEncoding::Verbatim);
        assert_eq!(h.get("R"), Some("100%20"));
    }
}
