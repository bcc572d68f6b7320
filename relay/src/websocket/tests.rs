//! The reader's rules, one behaviour per test; the same rules over real
//! sockets, one test per Autobahn TestSuite family, are in
//! `relay/tests/autobahn.rs`.

use super::*;

/// A masked client frame with the given first byte.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

fn binary(payload: &[u8]) -> Incoming {
    Incoming::Message {
        text: false,
        payload: payload.to_vec(),
    }
}

fn text(payload: &[u8]) -> Incoming {
    Incoming::Message {
        text: true,
        payload: payload.to_vec(),
    }
}

fn error_of(bytes: &[u8], max: usize) -> FrameError {
    let mut r = FrameReader::new(max);
    r.feed(bytes);
    loop {
        match r.next_event() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error for {bytes:02x?}"),
            Err(e) => return e,
        }
    }
}

#[test]
fn a_message_split_across_reads_is_reassembled_and_the_buffer_released() {
    let mut r = FrameReader::new(1000);
    let bytes = masked(0x82, b"hello");
    r.feed(&bytes[..3]);
    assert_eq!(r.next_event().unwrap(), None);
    assert!(r.is_mid_message());
    r.feed(&bytes[3..]);
    assert_eq!(r.next_event().unwrap(), Some(binary(b"hello")));
    assert!(!r.is_mid_message());
    assert_eq!(r.buf.capacity(), 0);
}

#[test]
fn every_split_point_gives_the_same_events() {
    let mut stream = masked(0x01, "hé".as_bytes());
    stream.extend(masked(0x89, b"p"));
    stream.extend(masked(0x80, "llo wörld".as_bytes()));
    stream.extend(masked(0x82, &[7; 300]));
    for split in 0..=stream.len() {
        let mut r = FrameReader::new(1000);
        let mut events = Vec::new();
        for part in [&stream[..split], &stream[split..]] {
            r.feed(part);
            while let Some(e) = r.next_event().unwrap() {
                events.push(e);
            }
        }
        assert_eq!(
            events,
            vec![
                Incoming::Ping(b"p".to_vec()),
                text("héllo wörld".as_bytes()),
                binary(&[7; 300]),
            ],
            "split at {split}"
        );
    }
}

#[test]
fn a_continuation_of_2_pow_64_minus_1_bytes_is_refused_without_panicking() {
    // The attack of issue 7: a 1-byte non-final frame, then a continuation
    // whose 64-bit length is 2^64-1.
    let mut bytes = masked(0x02, b"x");
    bytes.extend_from_slice(&[0x80, 0xFF]);
    bytes.extend_from_slice(&u64::MAX.to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(
        error_of(&bytes, 102_400),
        FrameError::Protocol("64-bit length with its top bit set")
    );
    // The largest length with the top bit clear is just too big, and even
    // under a limit of usize::MAX nothing overflows: the reader waits.
    let mut bytes = masked(0x02, b"x");
    bytes.extend_from_slice(&[0x80, 0xFF]);
    bytes.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    assert_eq!(error_of(&bytes, 102_400), FrameError::TooBig);
    let mut r = FrameReader::new(usize::MAX);
    r.feed(&bytes);
    assert_eq!(r.next_event(), Ok(None));
}

#[test]
fn a_message_of_exactly_the_limit_passes_and_one_more_byte_is_refused_from_the_header() {
    let mut r = FrameReader::new(102_400);
    r.feed(&masked(0x82, &vec![7; 102_400]));
    assert!(matches!(
        r.next_event().unwrap(),
        Some(Incoming::Message { payload, .. }) if payload.len() == 102_400
    ));
    // only the header: refused before the payload arrives
    let header = &masked(0x82, &vec![7; 102_401])[..10];
    assert_eq!(error_of(header, 102_400), FrameError::TooBig);
}

#[test]
fn fragments_count_towards_the_limit() {
    let mut bytes = masked(0x02, &[0; 6]);
    bytes.extend(masked(0x80, &[0; 6]));
    assert_eq!(error_of(&bytes, 10), FrameError::TooBig);
    assert_eq!(error_of(&bytes, 10).close_code(), 1009);
}

#[test]
fn unmasked_frames_are_protocol_errors() {
    assert_eq!(error_of(&[0x82, 0x01, 0x00], 100).close_code(), 1002);
}

#[test]
fn reserved_bits_are_protocol_errors_from_the_first_byte() {
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        assert_eq!(error_of(&[0x82 | rsv], 100).close_code(), 1002);
    }
}

#[test]
fn unknown_opcodes_are_protocol_errors() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_eq!(
            error_of(&masked(0x80 | op, b""), 100),
            FrameError::Protocol("unknown opcode"),
            "opcode {op:#x}"
        );
    }
}

#[test]
fn control_frames_are_at_most_125_bytes_and_never_fragmented() {
    assert!(matches!(
        FrameReader::new(1000).feed_one(&masked(0x89, &[1; 125])),
        Ok(Some(Incoming::Ping(p))) if p.len() == 125
    ));
    for op in [0x88, 0x89, 0x8A] {
        assert_eq!(error_of(&masked(op, &[1; 126]), 1000).close_code(), 1002);
        assert_eq!(
            error_of(&masked(op & 0x0F, b""), 1000),
            FrameError::Protocol("fragmented control frame")
        );
    }
}

#[test]
fn continuation_without_a_message_and_a_message_inside_another_are_protocol_errors() {
    assert_eq!(
        error_of(&masked(0x80, b"x"), 100),
        FrameError::Protocol("continuation without a message")
    );
    let mut bytes = masked(0x01, b"a");
    bytes.extend(masked(0x81, b"b"));
    assert_eq!(
        error_of(&bytes, 100),
        FrameError::Protocol("new message inside a fragmented one")
    );
}

#[test]
fn lengths_must_use_the_shortest_form() {
    // 5 bytes in the 16-bit form, 200 in the 64-bit form
    assert_eq!(
        error_of(&[0x82, 0x80 | 126, 0, 5], 1000),
        FrameError::Protocol("length not in its shortest form")
    );
    let mut long = vec![0x82, 0x80 | 127];
    long.extend_from_slice(&200u64.to_be_bytes());
    assert_eq!(
        error_of(&long, 1000),
        FrameError::Protocol("length not in its shortest form")
    );
}

#[test]
fn text_must_be_utf8() {
    assert_eq!(
        error_of(&masked(0x81, &[0xce, 0xba, 0xff]), 100),
        FrameError::InvalidUtf8("text message")
    );
    assert_eq!(error_of(&masked(0x81, &[0xff]), 100).close_code(), 1007);
    // binary is not checked
    assert_eq!(
        FrameReader::new(100).feed_one(&masked(0x82, &[0xff])),
        Ok(Some(binary(&[0xff])))
    );
}

#[test]
fn invalid_utf8_fails_at_the_fragment_that_shows_it() {
    // "κ" split across fragments is fine; 0xff in the first fragment fails
    // before the message ends.
    let mut r = FrameReader::new(100);
    r.feed(&masked(0x01, &[0xce]));
    assert_eq!(r.next_event(), Ok(None));
    r.feed(&masked(0x80, &[0xba]));
    assert_eq!(r.next_event(), Ok(Some(text("κ".as_bytes()))));
    let mut r = FrameReader::new(100);
    r.feed(&masked(0x01, &[b'a', 0xff]));
    assert_eq!(r.next_event(), Err(FrameError::InvalidUtf8("text message")));
    // a character left unfinished by the last fragment
    let mut bytes = masked(0x01, b"a");
    bytes.extend(masked(0x80, &[0xce]));
    assert_eq!(error_of(&bytes, 100).close_code(), 1007);
}

#[test]
fn close_codes_and_reasons_are_checked() {
    let close = |payload: &[u8]| FrameReader::new(200).feed_one(&masked(0x88, payload));
    assert_eq!(close(b""), Ok(Some(Incoming::Close(None))));
    assert_eq!(close(&[0x03, 0xE8]), Ok(Some(Incoming::Close(Some(1000)))));
    assert_eq!(
        close(&[0x0F, 0xA0, b'o', b'k']),
        Ok(Some(Incoming::Close(Some(4000))))
    );
    assert_eq!(close(&[0x03]).unwrap_err().close_code(), 1002);
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
    ] {
        assert_eq!(
            close(&code.to_be_bytes()).unwrap_err().close_code(),
            1002,
            "{code}"
        );
    }
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        assert_eq!(
            close(&code.to_be_bytes()),
            Ok(Some(Incoming::Close(Some(code))))
        );
    }
    assert_eq!(close(&[0x03, 0xE8, 0xff]).unwrap_err().close_code(), 1007);
}

#[test]
fn nothing_is_read_after_a_close_or_an_error() {
    let mut r = FrameReader::new(100);
    let mut bytes = masked(0x88, &[0x03, 0xE8]);
    bytes.extend(masked(0x82, b"late"));
    r.feed(&bytes);
    assert_eq!(r.next_event(), Ok(Some(Incoming::Close(Some(1000)))));
    assert_eq!(r.next_event(), Ok(None));
    r.feed(&masked(0x82, b"later"));
    assert_eq!(r.next_event(), Ok(None));
    assert_eq!(r.pending_bytes(), 0);
}

#[test]
fn unmasking_handles_every_length_and_alignment() {
    for len in 0..40 {
        let payload: Vec<u8> = (0..len as u8).collect();
        let mut r = FrameReader::new(100);
        assert_eq!(
            r.feed_one(&masked(0x82, &payload)),
            Ok(Some(binary(&payload)))
        );
    }
}

#[test]
fn headers_use_the_shortest_length_form() {
    assert_eq!(frame_header(2, 125).1, 2);
    assert_eq!(frame_header(2, 126).1, 4);
    assert_eq!(frame_header(2, 65_535).1, 4);
    assert_eq!(frame_header(2, 65_536).1, 10);
}

impl FrameReader {
    /// Feeds `bytes` and returns the first event.
    fn feed_one(&mut self, bytes: &[u8]) -> Result<Option<Incoming>, FrameError> {
        self.feed(bytes);
        self.next_event()
    }
}
