//! In-memory decode: `FrameDecoder` + `Message::try_from` over the corpus fed in 64 KiB chunks,
//! against a `memchr::memmem` scan for `\n\n` over the same bytes.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use esl::{FrameDecoder, Limits, Message};

/// The size of the chunks the decoder is fed (what one socket read would give).
pub const CHUNK: usize = 64 * 1024;

/// What one decode pass saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeCounts {
    /// Events parsed.
    pub events: u64,
    /// Of which conference::maintenance (`Event::conference()` is `Some`).
    pub conference: u64,
    /// Frames that were not events.
    pub other: u64,
    /// Header values that were not UTF-8 once decoded (read through `get_bytes`).
    pub non_utf8_values: u64,
    /// Bytes of event bodies (BACKGROUND_JOB output).
    pub body_bytes: u64,
}

/// The decoder limits used everywhere in the benchmark: FreeSWITCH's 16 MiB body bound.
pub fn limits() -> Limits {
    Limits::default()
}

/// Decodes `data` completely, fed in [`CHUNK`]-byte pieces.
pub fn decode_pass(data: &[u8], count_non_utf8: bool) -> anyhow::Result<DecodeCounts> {
    let mut decoder = FrameDecoder::new(limits());
    let mut buf = BytesMut::with_capacity(CHUNK * 2);
    let mut counts = DecodeCounts::default();
    for chunk in data.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = decoder.decode(&mut buf)? {
            match Message::try_from(frame)? {
                Message::Event(event) => {
                    counts.events += 1;
                    if event.conference().is_some() {
                        counts.conference += 1;
                    }
                    if let Some(body) = event.body() {
                        counts.body_bytes += body.len() as u64;
                    }
                    if count_non_utf8 {
                        counts.non_utf8_values += event
                            .headers()
                            .iter_bytes()
                            .filter(|(_, v)| std::str::from_utf8(v).is_err())
                            .count() as u64;
                    }
                }
                _ => counts.other += 1,
            }
        }
    }
    if !buf.is_empty() {
        anyhow::bail!("{} bytes left over after the last frame", buf.len());
    }
    Ok(counts)
}

/// Counts `\n\n` with `memmem` over `data` (the reference scan).
pub fn memchr_pass(data: &[u8]) -> u64 {
    let finder = memchr::memmem::Finder::new(b"\n\n");
    finder.find_iter(data).count() as u64
}

/// Runs `f` `passes` times; returns the median and the best duration and the last result.
pub fn timed<T>(passes: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let start = Instant::now();
    let mut last = f();
    let mut times = vec![start.elapsed()];
    for _ in 1..passes {
        let start = Instant::now();
        last = f();
        times.push(start.elapsed());
    }
    times.sort();
    (times[times.len() / 2], times[0], last)
}

/// Feeds `data` to our sans-IO `esl::client::Client` (after a scripted handshake) in [`CHUNK`]
/// pieces and drains its outputs: the client core without any IO.
pub fn client_pass(data: &[u8]) -> anyhow::Result<DecodeCounts> {
    use esl::client::{Client, ClientConfig, Input, Output, Subscription};
    let mut config = ClientConfig::new("ClueCon");
    config.subscription = Subscription::new(esl::EventFormat::Plain).with_events(["ALL"]);
    let mut client = Client::new(config);
    let now = Instant::now();
    let mut counts = DecodeCounts::default();
    let drain = |client: &mut Client, counts: &mut DecodeCounts| -> anyhow::Result<()> {
        while let Some(out) = client.poll_output() {
            match out {
                Output::Event(event) => {
                    counts.events += 1;
                    counts.conference += u64::from(event.conference().is_some());
                }
                Output::EventError(e) => anyhow::bail!("event error: {e}"),
                Output::Disconnected(reason) => anyhow::bail!("disconnected: {reason}"),
                Output::Timeout(_) => break,
                _ => counts.other += 1,
            }
        }
        Ok(())
    };
    client.handle_input(Input::Connected(now));
    for reply in [
        &b"Content-Type: auth/request\n\n"[..],
        b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n",
        b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n",
    ] {
        client.handle_input(Input::Receive(now, reply));
        drain(&mut client, &mut counts)?;
    }
    if !client.is_ready() {
        anyhow::bail!("scripted handshake did not make the client ready");
    }
    for chunk in data.chunks(CHUNK) {
        client.handle_input(Input::Receive(now, chunk));
        drain(&mut client, &mut counts)?;
    }
    Ok(counts)
}

/// A lower bound, not a parser: `FrameDecoder` framing, then per event body one pass that finds
/// each line's end and colon (no URL-decoding, no allocation per header) and looks at
/// `Event-Subclass` / `Action` by name. What an index-only header parser could cost at best.
pub fn index_only_pass(data: &[u8]) -> anyhow::Result<DecodeCounts> {
    let mut decoder = FrameDecoder::new(limits());
    let mut buf = BytesMut::with_capacity(CHUNK * 2);
    let mut counts = DecodeCounts::default();
    for chunk in data.chunks(CHUNK) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = decoder.decode(&mut buf)? {
            let body = frame.body_bytes();
            let block_end = memchr::memmem::find(body, b"\n\n").map_or(body.len(), |e| e + 1);
            let block = &body[..block_end];
            let (mut subclass, mut action) = (false, false);
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', block) {
                let line = &block[start..end];
                start = end + 1;
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    continue;
                };
                let (name, value) = (&line[..colon], &line[colon + 1..]);
                match name {
                    b"Event-Subclass" => {
                        subclass = value.trim_ascii() == b"conference%3A%3Amaintenance";
                    }
                    b"Action" => action = true,
                    _ => {}
                }
            }
            counts.events += 1;
            counts.conference += u64::from(subclass && action);
        }
    }
    Ok(counts)
}
