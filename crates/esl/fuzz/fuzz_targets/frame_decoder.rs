//! The client-side decoder: any bytes, split anywhere, never panic, never exceed the limits,
//! and give the same frames whatever the split.
#![no_main]

use bytes::BytesMut;
use esl::{FrameDecoder, Limits, Message};
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], split: usize, limits: Limits) -> (Vec<esl::Frame>, bool) {
    let mut decoder = FrameDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.body_bytes().len() <= limits.max_body);
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let limits = Limits { max_header_block: 4096, max_body: 8192 };
    let split = usize::from(data[0]) * data.len() / 256;
    let data = &data[1..];
    let split = split.min(data.len());
    let (whole, whole_err) = run(data, data.len(), limits);
    let (parts, parts_err) = run(data, split, limits);
    if !whole_err && !parts_err {
        assert_eq!(whole, parts);
    }
    for frame in whole {
        if let Ok(Message::Event(event)) = Message::try_from(frame) {
            let _ = event.conference().map(|c| (c.action(), c.member_id(), c.size()));
            let _ = event.get_array("variable_DP_MATCH");
        }
    }
});
