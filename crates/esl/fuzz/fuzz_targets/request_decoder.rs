//! The server-side command decoder (used by the simulator): any bytes, never panic.
#![no_main]

use bytes::BytesMut;
use esl::RequestDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = RequestDecoder::new(4096, 8192);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(request)) = decoder.decode(&mut buf) {
        assert!(request.body.as_ref().map_or(0, |b| b.len()) <= 8192);
    }
});
