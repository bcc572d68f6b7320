//! Size limits and slow consumers (PROTOCOL.md §1.2 max inbound message, §1.4, §8, §10 close
//! codes 1009 and 4001, --max-outbound-queue-bytes).

use std::time::Duration;

use crate::map;
use crate::support::msg::envelope;
use crate::support::room::{expect_member_joined, join_data, member_from};
use crate::support::{
    assert_room_chats, open_room, say, t, Client, ConnectOpts, Env, Event, Member, Opts, ValueExt,
};

/// A SendMessage envelope of exactly `total` bytes (the ciphertext is padded).
fn message_of_size(total: usize) -> (Vec<u8>, String) {
    let probe = 70_000; // > 65535, so the str32 header is used, as it is at the target size
    let overhead = envelope(
        t::SEND_MESSAGE,
        map! {"iv" => "i", "ciphertext" => "x".repeat(probe)},
    )
    .len()
        - probe;
    let ciphertext = "x".repeat(total - overhead);
    let bytes = envelope(
        t::SEND_MESSAGE,
        map! {"iv" => "i", "ciphertext" => ciphertext.as_str()},
    );
    assert_eq!(bytes.len(), total);
    (bytes, ciphertext)
}

/// A SendMessage envelope of exactly `total` bytes for small sizes (str16 range).
fn small_message_of_size(total: usize) -> Vec<u8> {
    let probe = 1000;
    let overhead = envelope(
        t::SEND_MESSAGE,
        map! {"iv" => "i", "ciphertext" => "x".repeat(probe)},
    )
    .len()
        - probe;
    let bytes = envelope(
        t::SEND_MESSAGE,
        map! {"iv" => "i", "ciphertext" => "x".repeat(total - overhead)},
    );
    assert_eq!(bytes.len(), total);
    bytes
}

#[tokio::test]
async fn message_of_exactly_102400_bytes_is_accepted() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    let (bytes, ciphertext) = message_of_size(102_400);
    a.send_bytes(bytes).await;
    let data = b.expect(t::RELAY_MESSAGE).await;
    assert_eq!(data.str("ciphertext").len(), ciphertext.len());
    assert_eq!(data.str("senderId"), a.id);
    a.sync().await;
}

#[tokio::test]
async fn message_over_102400_bytes_closes_with_1009() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    let (bytes, _) = message_of_size(102_401);
    // The server may close before it has read the whole frame; a failed write is fine.
    let _ = a
        .try_send_frame(fastwebsockets::OpCode::Binary, bytes)
        .await;
    a.expect_close(1009).await;
    for m in [&mut b, &mut c] {
        assert_eq!(m.expect(t::MEMBER_LEFT).await.str("id"), a.id);
    }
    assert_room_chats(&mut [&mut b, &mut c]).await;
}

#[tokio::test]
async fn max_message_bytes_flag_is_respected() {
    let env = Env::start_with(Opts::new().flag("--max-message-bytes", 2000)).await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send_bytes(small_message_of_size(2000)).await;
    b.expect(t::RELAY_MESSAGE).await;
    let _ = a
        .try_send_frame(fastwebsockets::OpCode::Binary, small_message_of_size(2001))
        .await;
    a.expect_close(1009).await;
    b.expect(t::MEMBER_LEFT).await;
}

#[tokio::test]
async fn fragmented_message_is_reassembled_and_processed() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    let (bytes, ciphertext) = message_of_size(90_000);
    a.send_fragmented(&bytes, 16_000)
        .await
        .expect("send fragments");
    let data = b.expect(t::RELAY_MESSAGE).await;
    assert_eq!(data.str("ciphertext"), ciphertext);
}

#[tokio::test]
async fn fragmented_message_over_the_limit_closes_with_1009() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    let (bytes, _) = message_of_size(120_000);
    // Every fragment is small; only the assembled message is too big.
    let _ = a.send_fragmented(&bytes, 30_000).await;
    a.expect_close(1009).await;
    b.expect(t::MEMBER_LEFT).await;
}

#[tokio::test]
async fn oversized_message_does_not_disturb_other_rooms() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    let [mut x, mut y] = open_room::<2>(&env).await;
    let (bytes, _) = message_of_size(200_000);
    let _ = a
        .try_send_frame(fastwebsockets::OpCode::Binary, bytes)
        .await;
    a.expect_close(1009).await;
    b.expect(t::MEMBER_LEFT).await;
    assert_room_chats(&mut [&mut x, &mut y]).await;
}

#[tokio::test]
async fn slow_consumer_is_removed_and_the_others_keep_chatting() {
    // The default write timeout (10 s): an overflow ends the slow connection at once, even
    // while a write to it is blocked, so the room sees MemberLeft long before that.
    let env = Env::start_with(Opts::new().flag("--max-outbound-queue-bytes", 262_144)).await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    // The slow member: a tiny receive buffer, and it never reads until the end.
    let opts = ConnectOpts {
        recv_buffer: Some(4096),
        ..ConnectOpts::default()
    };
    let mut slow = Client::connect_opts(&env.ws_url(2), &opts)
        .await
        .expect("connect slow client");
    slow.send(t::JOIN_ROOM, join_data(&a.room_id, "slow", ""))
        .await;
    let joined = slow.expect(t::ROOM_JOINED).await;
    let mut slow: Member = member_from(slow, &joined);
    expect_member_joined(&mut [&mut a, &mut b], &slow).await;

    a.send(t::FILE_META, super::files::meta("flood")).await;
    b.expect(t::RELAY_FILE_META).await;

    // b reads everything in its own task and reports progress; it stops at slow's MemberLeft.
    let (progress_tx, progress_rx) = tokio::sync::watch::channel(0usize);
    let slow_id = slow.id.clone();
    let reader = tokio::spawn(async move {
        let mut chunks = 0usize;
        b.timeout = Duration::from_secs(20);
        loop {
            let (ty, data) = b.recv().await;
            match ty {
                t::RELAY_FILE_CHUNK => {
                    chunks += 1;
                    let _ = progress_tx.send(chunks);
                }
                t::MEMBER_LEFT => {
                    assert_eq!(data.str("id"), slow_id, "only the slow member may leave");
                    return (b, chunks);
                }
                other => panic!("reader: unexpected 0x{other:02X} {data}"),
            }
        }
    });

    // a sends 64 KiB chunks, never more than 2 ahead of b (so b's own queue stays far below
    // the limit), until b has seen slow leave or FLOOD_CHUNKS were sent: 12.8 MB, far more
    // than slow's socket buffers plus its 256 KiB queue can hold.
    const FLOOD_CHUNKS: usize = 200;
    let payload = vec![0x5au8; 64 * 1024];
    let mut sent = 0usize;
    while !reader.is_finished() && sent < FLOOD_CHUNKS {
        let mut rx = progress_rx.clone();
        let wait = rx.wait_for(|read| *read + 2 >= sent);
        let _ = tokio::time::timeout(Duration::from_millis(200), wait).await;
        if reader.is_finished() {
            break;
        }
        a.send(
            t::FILE_CHUNK,
            super::files::chunk("flood", sent as i64, payload.clone()),
        )
        .await;
        sent += 1;
    }
    // The overflow itself removes the member (not the write timeout): promptly.
    let reader = tokio::time::timeout(Duration::from_secs(3), reader);
    let (mut b, _) = reader
        .await
        .expect("the slow member was not removed within 3 s of the flood")
        .expect("reader task");
    a.timeout = Duration::from_secs(5);
    assert_eq!(a.expect(t::MEMBER_LEFT).await.str("id"), slow.id);
    a.send(t::FILE_COMPLETE, map! {"transferId" => "flood"})
        .await;
    // b drains the chunks still queued, then gets the Complete.
    loop {
        let (ty, data) = b.recv().await;
        match ty {
            t::RELAY_FILE_CHUNK => continue,
            t::RELAY_FILE_COMPLETE => break,
            other => panic!("unexpected 0x{other:02X} {data}"),
        }
    }
    say(&mut a, &mut [&mut b]).await;
    say(&mut b, &mut [&mut a]).await;

    // The slow client's connection has ended; if a close frame made it through, it is 4001.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match slow.next_event(left).await {
            None => panic!("slow client's connection did not end"),
            Some(Event::Close(code, _)) => {
                assert_eq!(code, Some(4001), "slow consumer close code");
                break;
            }
            Some(Event::Gone(_)) => break,
            Some(_) => continue,
        }
    }
}

#[tokio::test]
async fn normal_member_is_not_a_slow_consumer_under_a_burst() {
    let env = Env::start_with(Opts::new().flag("--max-outbound-queue-bytes", 262_144)).await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    // 64 reactions of ~3 KB each in a burst: the reader keeps up, nobody is removed.
    for i in 0..64 {
        a.send(
            t::SEND_REACTION,
            map! {"iv" => "i", "ciphertext" => format!("{i:03}{}", "r".repeat(3000))},
        )
        .await;
    }
    for i in 0..64 {
        let data = b.expect(t::RELAY_REACTION).await;
        assert!(data.str("ciphertext").starts_with(&format!("{i:03}")));
    }
    assert_room_chats(&mut [&mut a, &mut b]).await;
}
