//! The bus subscriber's RESP3 reader (what Redis sends the subscriber
//! connection: pushes, and the answers to publishes and store scripts):
//! never panics, every range it returns lies inside the frame it measured,
//! a frame parses the same with bytes after it, and a prefix of a complete
//! frame is incomplete or malformed, never another frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::redis::resp::{parse, Frame, MAX_FRAME_LEN};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = parse(rest) {
        assert!(used > 0 && used <= rest.len() && used <= MAX_FRAME_LEN);
        let ranges = match &frame {
            Frame::Message { channel, payload } => vec![channel.clone(), payload.clone()],
            Frame::Subscribed { channel } => vec![channel.clone()],
            Frame::Unsubscribed { channel } => channel.iter().cloned().collect(),
            Frame::Error { text } => vec![text.clone()],
            Frame::Bulk { data } => vec![data.clone()],
            Frame::OtherPush | Frame::Reply | Frame::Integer(_) => vec![],
        };
        for r in ranges {
            assert!(r.start <= r.end && r.end <= used);
        }
        // The frame alone parses to the same.
        assert_eq!(parse(&rest[..used]), Ok(Some((frame, used))));
        // A strict prefix is never a complete frame.
        if used > 1 {
            assert!(!matches!(parse(&rest[..used - 1]), Ok(Some(_))));
        }
        rest = &rest[used..];
    }
});
