//! RFC 6455 conformance of the relay's own frame reader and writer, one test
//! per Autobahn TestSuite case family (sections 1–7 and 9, no compression),
//! over real sockets against the production HTTP front and connection task
//! with an echo application (`arthas_relay::testing::start_echo`).
//!
//! Expected outcomes follow the Autobahn case descriptions: messages and
//! ping payloads are echoed, broken frames fail the connection with 1002,
//! text that is not UTF-8 with 1007 (at the fragment that shows it, "fail
//! fast"), a message over the limit with 1009, and a close is echoed with
//! its code before the server drops the TCP connection. The Python
//! fuzzingclient itself can be run against the same endpoint: see
//! `docs/OPERATIONS.md` ("RFC 6455 conformance").

use std::net::SocketAddr;
use std::time::Duration;

use arthas_relay::testing::{start_echo, RawClient};
use arthas_relay::websocket::opcode;
use arthas_relay::RelayConfig;

/// A relay whose `/ws` echoes; large messages allowed (section 9).
async fn echo_server(max_message_bytes: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let config = RelayConfig {
        max_message_bytes,
        ping_interval: Duration::from_secs(3600),
        read_timeout: Duration::from_secs(3600),
        message_timeout: Duration::from_secs(60),
        ..RelayConfig::default()
    };
    start_echo(listener, config);
    addr
}

async fn client() -> (RawClient, SocketAddr) {
    let addr = echo_server(16 << 20).await;
    (RawClient::connect(addr).await.expect("upgrade"), addr)
}

/// Sends `bytes` one byte at a time ("chopped" in the Autobahn cases).
async fn send_chopped(c: &mut RawClient, bytes: &[u8]) {
    for b in bytes {
        c.send(std::slice::from_ref(b)).await.expect("send");
    }
}

async fn assert_fails_with(c: &mut RawClient, code: u16) {
    let (got, _) = c.expect_close().await;
    assert_eq!(got, Some(code));
}

#[tokio::test]
async fn section_1_text_and_binary_messages_of_every_length_form_are_echoed() {
    let (mut c, _) = client().await;
    for len in [0usize, 125, 126, 127, 128, 65_535, 65_536] {
        let text = vec![b'*'; len];
        c.send_text(&text).await.unwrap();
        assert_eq!(c.expect_message().await, (true, text), "text of {len}");
        let binary = vec![0xfe; len];
        c.send_binary(&binary).await.unwrap();
        assert_eq!(c.expect_message().await, (false, binary), "binary of {len}");
    }
    // 1.1.8 / 1.2.8: 65,536 bytes written in chops of 997.
    let big = arthas_relay::testing::frame(0x80 | opcode::TEXT, &[b'*'; 65_536]);
    for chop in big.chunks(997) {
        c.send(chop).await.unwrap();
    }
    assert_eq!(c.expect_message().await.1.len(), 65_536);
    c.send_close(&1000u16.to_be_bytes()).await.unwrap();
    assert_fails_with(&mut c, 1000).await;
}

#[tokio::test]
async fn section_2_pings_are_answered_with_their_payload_and_pongs_ignored() {
    let (mut c, _) = client().await;
    for payload in [
        &b""[..],
        b"Hello, world!",
        &[0x00, 0xff, 0xfe, 0xfd],
        &[b'p'; 125],
    ] {
        c.send_frame(0x80 | opcode::PING, payload).await.unwrap();
        let pong = c.next_frame().await.unwrap().unwrap();
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (opcode::PONG, payload)
        );
    }
    // 2.6: a ping sent byte by byte.
    send_chopped(&mut c, &arthas_relay::testing::frame(0x89, &[b'c'; 125])).await;
    assert_eq!(
        c.next_frame().await.unwrap().unwrap().payload,
        vec![b'c'; 125]
    );
    // 2.7, 2.8: unsolicited pongs get no answer; 2.10: ten pings, ten pongs.
    c.send_frame(0x80 | opcode::PONG, b"").await.unwrap();
    c.send_frame(0x80 | opcode::PONG, b"unsolicited")
        .await
        .unwrap();
    for i in 0..10u8 {
        c.send_frame(0x89, &[i]).await.unwrap();
    }
    for i in 0..10u8 {
        let pong = c.next_frame().await.unwrap().unwrap();
        assert_eq!((pong.opcode, pong.payload), (opcode::PONG, vec![i]));
    }
    // 2.5: a ping of 126 bytes fails the connection.
    c.send_frame(0x89, &[0; 126]).await.unwrap();
    assert_fails_with(&mut c, 1002).await;
}

#[tokio::test]
async fn section_3_reserved_bits_fail_the_connection() {
    for (rsv, opcode) in [
        (0x40, opcode::TEXT),
        (0x20, opcode::TEXT),
        (0x60, opcode::TEXT),
        (0x10, opcode::BINARY),
        (0x50, opcode::BINARY),
        (0x30, opcode::PING),
        (0x70, opcode::CLOSE),
    ] {
        let (mut c, _) = client().await;
        // A good message first is still echoed (3.2), a ping after is not answered.
        c.send_text(b"Hello, world!").await.unwrap();
        c.send_frame(0x80 | rsv | opcode, b"Hello").await.unwrap();
        c.send_frame(0x89, b"").await.unwrap();
        let (code, before) = c.expect_close().await;
        assert_eq!(code, Some(1002), "rsv {rsv:#x} opcode {opcode:#x}");
        assert_eq!(
            before.len(),
            1,
            "only the echo before the close: {before:?}"
        );
        assert_eq!(before[0].payload, b"Hello, world!");
    }
}

#[tokio::test]
async fn section_4_reserved_opcodes_fail_the_connection() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let (mut c, _) = client().await;
        c.send_text(b"Hello, world!").await.unwrap();
        c.send_frame(0x80 | op, b"reserved").await.unwrap();
        c.send_frame(0x89, b"").await.unwrap();
        let (code, before) = c.expect_close().await;
        assert_eq!(code, Some(1002), "opcode {op:#x}");
        assert_eq!(before.len(), 1, "opcode {op:#x}: {before:?}");
    }
}

#[tokio::test]
async fn section_5_fragmentation_is_reassembled_and_its_violations_fail() {
    let (mut c, _) = client().await;
    // 5.3-5.5: a text message in two fragments, in one write and in two.
    c.send_frame(opcode::TEXT, b"frag").await.unwrap();
    c.send_frame(0x80, b"ment1").await.unwrap();
    assert_eq!(c.expect_message().await, (true, b"fragment1".to_vec()));
    // 5.6-5.9: a ping between the fragments is answered first.
    c.send_frame(opcode::BINARY, b"frag").await.unwrap();
    c.send_frame(0x89, b"between").await.unwrap();
    c.send_frame(0x80, b"ment2").await.unwrap();
    let pong = c.next_frame().await.unwrap().unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (opcode::PONG, &b"between"[..])
    );
    assert_eq!(c.expect_message().await, (false, b"fragment2".to_vec()));
    // 5.19: many fragments with pings in between, chopped.
    let mut bytes = Vec::new();
    for i in 0..5u8 {
        let first = if i == 0 { opcode::TEXT } else { 0x00 };
        bytes.extend(arthas_relay::testing::frame(first, &[b'a' + i]));
        bytes.extend(arthas_relay::testing::frame(0x89, &[i]));
    }
    bytes.extend(arthas_relay::testing::frame(0x80, b"!"));
    send_chopped(&mut c, &bytes).await;
    for i in 0..5u8 {
        assert_eq!(c.next_frame().await.unwrap().unwrap().payload, vec![i]);
    }
    assert_eq!(c.expect_message().await, (true, b"abcde!".to_vec()));
    c.send_close(&1000u16.to_be_bytes()).await.unwrap();
    assert_fails_with(&mut c, 1000).await;

    // 5.1, 5.2: a fragmented ping or pong.
    for op in [opcode::PING, opcode::PONG] {
        let (mut c, _) = client().await;
        c.send_frame(op, b"frag").await.unwrap();
        c.send_frame(0x80, b"ment").await.unwrap();
        assert_fails_with(&mut c, 1002).await;
    }
    // 5.9-5.14: a continuation with nothing to continue.
    for fin in [0x80, 0x00] {
        let (mut c, _) = client().await;
        c.send_frame(fin, b"nothing").await.unwrap();
        assert_fails_with(&mut c, 1002).await;
    }
    // 5.17, 5.18: a new message inside a fragmented one.
    let (mut c, _) = client().await;
    c.send_frame(opcode::TEXT, b"first").await.unwrap();
    c.send_frame(0x80 | opcode::TEXT, b"second").await.unwrap();
    assert_fails_with(&mut c, 1002).await;
}

#[tokio::test]
async fn section_6_text_must_be_utf8_and_fails_fast() {
    let (mut c, _) = client().await;
    // 6.1-6.3, 6.5-6.7: valid text, whole and in fragments at every byte.
    let valid = "κόσμε, Hello-µ@ßöäüàá-UTF-8!! \u{10FFFF}\u{FEFF}".as_bytes();
    c.send_text(valid).await.unwrap();
    assert_eq!(c.expect_message().await.1, valid);
    c.send_text(b"").await.unwrap();
    assert_eq!(c.expect_message().await, (true, Vec::new()));
    for (i, byte) in valid.iter().enumerate() {
        let first = if i == 0 { opcode::TEXT } else { 0x00 };
        let fin = if i + 1 == valid.len() { 0x80 } else { 0 };
        c.send_frame(fin | first, std::slice::from_ref(byte))
            .await
            .unwrap();
    }
    assert_eq!(c.expect_message().await.1, valid);
    c.send_close(&1000u16.to_be_bytes()).await.unwrap();
    assert_fails_with(&mut c, 1000).await;

    // 6.3, 6.8-6.21: invalid sequences (overlong, surrogates, bad bytes,
    // cut at the end).
    for invalid in [
        &[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
        ][..],
        &[0xc0, 0xaf],
        &[0xf8, 0x88, 0x80, 0x80, 0x80],
        &[0xed, 0xbf, 0xbf],
        &[0xfe],
        &[0xf4, 0x90, 0x80, 0x80],
        &[b'a', 0xe1, 0xbd],
    ] {
        let (mut c, _) = client().await;
        c.send_text(invalid).await.unwrap();
        assert_fails_with(&mut c, 1007).await;
    }
    // 6.4.1-6.4.4: fail fast: the fragment with the invalid byte closes the
    // connection; the rest of the message is never needed.
    let (mut c, _) = client().await;
    c.send_frame(opcode::TEXT, "κόσμε".as_bytes())
        .await
        .unwrap();
    c.send_frame(0x00, &[0xf4, 0x90, 0x80, 0x80]).await.unwrap();
    assert_fails_with(&mut c, 1007).await;
}

#[tokio::test]
async fn section_7_close_is_echoed_with_its_code_and_checked() {
    // 7.1.1-7.1.4: after the close nothing more is answered or echoed.
    let (mut c, _) = client().await;
    c.send_text(b"Hello").await.unwrap();
    c.send_close(&1000u16.to_be_bytes()).await.unwrap();
    c.send_close(&1000u16.to_be_bytes()).await.unwrap();
    c.send_frame(0x89, b"after").await.unwrap();
    c.send_text(b"after").await.unwrap();
    let (code, before) = c.expect_close().await;
    assert_eq!(code, Some(1000));
    assert_eq!(before.len(), 1, "only the echo of Hello: {before:?}");

    // 7.3.1: an empty close gets an empty close.
    let (mut c, _) = client().await;
    c.send_close(b"").await.unwrap();
    assert_eq!(c.expect_close().await.0, None);
    // 7.3.3-7.3.5: a code, with a reason up to 123 bytes, is echoed.
    for payload in [
        1000u16.to_be_bytes().to_vec(),
        [&1000u16.to_be_bytes()[..], b"Hello World!"].concat(),
        [&1000u16.to_be_bytes()[..], &[b'*'; 123]].concat(),
    ] {
        let (mut c, _) = client().await;
        c.send_close(&payload).await.unwrap();
        assert_eq!(c.expect_close().await.0, Some(1000));
    }
    // 7.7.1-7.7.13: every code a peer may send is echoed.
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let (mut c, _) = client().await;
        c.send_close(&code.to_be_bytes()).await.unwrap();
        assert_eq!(c.expect_close().await.0, Some(code));
    }
    // 7.3.2, 7.3.6, 7.9.x, 7.13.x: a 1-byte payload, a 126-byte close,
    // codes nobody may send: 1002. 7.5.1: a reason that is not UTF-8: 1007.
    let mut bad: Vec<(Vec<u8>, u16)> = vec![(vec![0x03], 1002)];
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65_535,
    ] {
        bad.push((code.to_be_bytes().to_vec(), 1002));
    }
    bad.push((
        [&1000u16.to_be_bytes()[..], &[0xce, 0xba, 0xed, 0xa0, 0x80]].concat(),
        1007,
    ));
    for (payload, expected) in bad {
        let (mut c, _) = client().await;
        c.send_close(&payload).await.unwrap();
        assert_fails_with(&mut c, expected).await;
    }
    let (mut c, _) = client().await;
    c.send_close(&[b'*'; 126]).await.unwrap();
    assert_fails_with(&mut c, 1002).await;
}

#[tokio::test]
async fn section_9_large_and_chopped_messages_are_echoed_and_the_limit_is_1009() {
    let (mut c, _) = client().await;
    // 9.1-9.2 (scaled to 4 MiB): single frames; 9.3-9.4: in fragments of 64 KiB.
    for len in [64 << 10, 256 << 10, 1 << 20, 4 << 20] {
        let text = vec![b'*'; len];
        c.send_text(&text).await.unwrap();
        assert_eq!(c.expect_message().await.1.len(), len);
        let binary = vec![0xfe; len];
        c.send_binary(&binary).await.unwrap();
        assert_eq!(c.expect_message().await.1.len(), len);
    }
    let fragments = 64;
    for i in 0..fragments {
        let first = if i == 0 { opcode::BINARY } else { 0x00 };
        let fin = if i + 1 == fragments { 0x80 } else { 0 };
        c.send_frame(fin | first, &[i as u8; 64 << 10])
            .await
            .unwrap();
    }
    assert_eq!(c.expect_message().await.1.len(), 4 << 20);
    // 9.5-9.6: many small messages in one write.
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        burst.extend(arthas_relay::testing::frame(0x82, &i.to_be_bytes()));
    }
    c.send(&burst).await.unwrap();
    for i in 0..1000u32 {
        assert_eq!(c.expect_message().await.1, i.to_be_bytes());
    }

    // The limit: 1009 from the header, before the payload is sent.
    let addr = echo_server(1000).await;
    let mut c = RawClient::connect(addr).await.unwrap();
    c.send(&arthas_relay::testing::frame(0x82, &[0; 1001])[..8])
        .await
        .unwrap();
    assert_fails_with(&mut c, 1009).await;
    // ...and as a fragmented message grows past it.
    let mut c = RawClient::connect(addr).await.unwrap();
    c.send_frame(opcode::BINARY, &[0; 600]).await.unwrap();
    c.send(&arthas_relay::testing::frame(0x80, &[0; 600])[..8])
        .await
        .unwrap();
    assert_fails_with(&mut c, 1009).await;
}
