//! The relay's WebSocket frame reader fed arbitrary bytes, split at
//! arbitrary points: it never panics, and every message it accepts is
//! within the limit (and, for text, UTF-8); after an error or a close it
//! returns nothing more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay::websocket::{FrameReader, Incoming, MAX_CONTROL_PAYLOAD};

/// A small limit, so the fuzzer reaches it.
const MAX_MESSAGE_BYTES: usize = 512;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the read sizes; the rest is the stream.
    let (sizes, stream) = match data {
        [a, b, rest @ ..] => ([usize::from(*a) + 1, usize::from(*b) + 1], rest),
        _ => return,
    };
    let mut reader = FrameReader::new(MAX_MESSAGE_BYTES);
    let mut rest = stream;
    let mut turn = 0;
    let mut ended = false;
    while !rest.is_empty() {
        let n = sizes[turn % 2].min(rest.len());
        turn += 1;
        reader.feed(&rest[..n]);
        rest = &rest[n..];
        loop {
            match reader.next_event() {
                Ok(None) => break,
                Ok(Some(event)) => {
                    assert!(!ended, "an event after the end");
                    match event {
                        Incoming::Message { text, payload } => {
                            assert!(payload.len() <= MAX_MESSAGE_BYTES);
                            if text {
                                assert!(std::str::from_utf8(&payload).is_ok());
                            }
                        }
                        Incoming::Ping(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
                        Incoming::Pong => {}
                        Incoming::Close(_) => ended = true,
                    }
                }
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        // What is held is bounded by the limit, one frame header and one read.
        assert!(reader.pending_bytes() <= MAX_MESSAGE_BYTES + 14 + 256);
    }
});
