//! File transfer routing (PROTOCOL.md §6, §2.8, §7 disconnect order).

use rmpv::Value;

use crate::map;
use crate::support::msg::{assert_keys, envelope_with_raw, now_ms};
use crate::support::room::{create_data, create_on, create_room, join_data, unique};
use crate::support::{assert_room_chats, open_room, say, t, Client, Env, Member, Opts, ValueExt};

const REQUIRED: &str = "transferId, iv, and ciphertext are required";
const MISMATCH: &str = "transferId does not match active transfer";
const CHUNK_FIELDS: &str = "iv and data must be non-empty";

pub(crate) fn meta(transfer_id: &str) -> Value {
    map! {"transferId" => transfer_id, "iv" => "bWV0YUlW", "ciphertext" => vec![1u8, 2, 3, 4]}
}

pub(crate) fn chunk(transfer_id: &str, index: i64, data: Vec<u8>) -> Value {
    map! {"transferId" => transfer_id, "index" => index, "iv" => vec![7u8; 12], "data" => data}
}

fn tid(transfer_id: &str) -> Value {
    map! {"transferId" => transfer_id}
}

/// `from` starts transfer `id`; every member of `to` gets the RelayFileMeta.
async fn start(from: &mut Member, to: &mut [&mut Member], id: &str) {
    from.send(t::FILE_META, meta(id)).await;
    for m in to.iter_mut() {
        let data = m.expect(t::RELAY_FILE_META).await;
        assert_eq!(data.str("transferId"), id);
        assert_eq!(data.str("senderId"), from.id);
    }
}

#[tokio::test]
async fn file_meta_is_relayed_to_others_with_typed_fields() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    let before = now_ms();
    a.send(t::FILE_META, meta("tr-1")).await;
    for m in [&mut b, &mut c] {
        let data = m.expect(t::RELAY_FILE_META).await;
        assert_keys(
            &data,
            &[
                "senderId",
                "senderName",
                "transferId",
                "iv",
                "ciphertext",
                "t",
            ],
        );
        assert_eq!(data.str("senderId"), a.id);
        assert_eq!(data.str("senderName"), "m0");
        assert_eq!(data.str("transferId"), "tr-1");
        assert_eq!(data.str("iv"), "bWV0YUlW");
        assert_eq!(data.bin("ciphertext"), &[1, 2, 3, 4]);
        assert!((before..=now_ms()).contains(&data.int("t")));
    }
    // No echo to the sender.
    say(&mut b, &mut [&mut a, &mut c]).await;
}

#[tokio::test]
async fn file_chunk_is_relayed_without_sender_name_or_time() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    start(&mut a, &mut [&mut b, &mut c], "tr-1").await;
    a.send(t::FILE_CHUNK, chunk("tr-1", 0, vec![9u8; 100]))
        .await;
    for m in [&mut b, &mut c] {
        let data = m.expect(t::RELAY_FILE_CHUNK).await;
        assert_keys(&data, &["senderId", "transferId", "index", "iv", "data"]);
        assert_eq!(data.str("senderId"), a.id);
        assert_eq!(data.str("transferId"), "tr-1");
        assert_eq!(data.int("index"), 0);
        assert_eq!(data.bin("iv"), &[7u8; 12]);
        assert_eq!(data.bin("data"), &[9u8; 100][..]);
    }
    say(&mut b, &mut [&mut a, &mut c]).await;
}

#[tokio::test]
async fn file_complete_and_cancel_are_relayed() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    start(&mut a, &mut [&mut b, &mut c], "tr-1").await;
    a.send(t::FILE_COMPLETE, tid("tr-1")).await;
    for m in [&mut b, &mut c] {
        let data = m.expect(t::RELAY_FILE_COMPLETE).await;
        assert_keys(&data, &["senderId", "transferId"]);
        assert_eq!(data.str("senderId"), a.id);
        assert_eq!(data.str("transferId"), "tr-1");
    }
    start(&mut a, &mut [&mut b, &mut c], "tr-2").await;
    a.send(t::FILE_CANCEL, tid("tr-2")).await;
    for m in [&mut b, &mut c] {
        let data = m.expect(t::RELAY_FILE_CANCEL).await;
        assert_keys(&data, &["senderId", "transferId"]);
        assert_eq!(data.str("senderId"), a.id);
        assert_eq!(data.str("transferId"), "tr-2");
    }
    a.sync().await;
}

#[tokio::test]
async fn chunk_index_is_any_integer_and_not_checked() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr").await;
    for index in [5i64, -1, 70_000, 0] {
        a.send(t::FILE_CHUNK, chunk("tr", index, vec![1])).await;
        assert_eq!(b.expect(t::RELAY_FILE_CHUNK).await.int("index"), index);
    }
    for raw in [
        vec![0xd1u8, 0x00, 0x03],
        vec![0xce, 0, 0, 0, 3],
        vec![0xd0, 0x03],
    ] {
        let data = map! {"transferId" => "tr", "index" => "\u{1}idx", "iv" => vec![1u8], "data" => vec![2u8]};
        a.send_bytes(envelope_with_raw(t::FILE_CHUNK, data, "\u{1}idx", &raw))
            .await;
        assert_eq!(b.expect(t::RELAY_FILE_CHUNK).await.int("index"), 3);
    }
}

#[tokio::test]
async fn ack_goes_to_the_sender_only() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    start(&mut a, &mut [&mut b, &mut c], "tr-ack").await;
    b.send(t::FILE_ACK, tid("tr-ack")).await;
    let ack = a.expect(t::RELAY_FILE_ACK).await;
    assert_keys(&ack, &["receiverId", "transferId"]);
    assert_eq!(ack.str("receiverId"), b.id);
    assert_eq!(ack.str("transferId"), "tr-ack");
    // Neither the acker nor the third member got anything.
    say(&mut a, &mut [&mut b, &mut c]).await;
}

#[tokio::test]
async fn ack_after_complete_still_reaches_the_sender() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr-done").await;
    a.send(t::FILE_COMPLETE, tid("tr-done")).await;
    b.expect(t::RELAY_FILE_COMPLETE).await;
    b.send(t::FILE_ACK, tid("tr-done")).await;
    let ack = a.expect(t::RELAY_FILE_ACK).await;
    assert_eq!(ack.str("receiverId"), b.id);
    assert_eq!(ack.str("transferId"), "tr-done");
}

#[tokio::test]
async fn ack_for_an_unknown_transfer_is_dropped_silently() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr-real").await;
    b.send(t::FILE_ACK, tid("tr-other")).await;
    b.sync().await;
    say(&mut b, &mut [&mut a]).await;
}

#[tokio::test]
async fn ack_from_another_room_is_dropped() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr-x").await;
    let mut outsider = create_room(&env, 2, "outsider").await;
    outsider.send(t::FILE_ACK, tid("tr-x")).await;
    outsider.sync().await;
    say(&mut b, &mut [&mut a]).await;
}

#[tokio::test]
async fn ack_errors() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::FILE_ACK, tid("x")).await;
    c.expect_error("E003", "not in a room").await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send(t::FILE_ACK, Value::Nil).await;
    a.expect_error("E005", "invalid file ack data").await;
    a.send(t::FILE_ACK, map! {}).await;
    a.expect_error("E005", "missing transferId").await;
    a.send(t::FILE_ACK, tid("")).await;
    a.expect_error("E005", "missing transferId").await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn second_meta_while_active_gets_e005() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr-1").await;
    a.send(t::FILE_META, meta("tr-2")).await;
    a.expect_error("E005", "already has active transfer").await;
    // Checked before the data is parsed.
    a.send(t::FILE_META, Value::Nil).await;
    a.expect_error("E005", "already has active transfer").await;
    // The first transfer is still the active one.
    a.send(t::FILE_CHUNK, chunk("tr-1", 0, vec![1])).await;
    b.expect(t::RELAY_FILE_CHUNK).await;
}

#[tokio::test]
async fn one_active_transfer_per_member_not_per_room() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    start(&mut a, &mut [&mut b, &mut c], "tr-a").await;
    start(&mut b, &mut [&mut a, &mut c], "tr-b").await;
    a.send(t::FILE_CHUNK, chunk("tr-a", 0, vec![1])).await;
    b.send(t::FILE_CHUNK, chunk("tr-b", 0, vec![2])).await;
    assert_eq!(
        b.expect(t::RELAY_FILE_CHUNK).await.str("transferId"),
        "tr-a"
    );
    assert_eq!(
        a.expect(t::RELAY_FILE_CHUNK).await.str("transferId"),
        "tr-b"
    );
    let mut senders = vec![
        c.expect(t::RELAY_FILE_CHUNK)
            .await
            .str("senderId")
            .to_string(),
        c.expect(t::RELAY_FILE_CHUNK)
            .await
            .str("senderId")
            .to_string(),
    ];
    senders.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    assert_eq!(senders, want);
    // A member cannot push chunks into someone else's transfer.
    c.send(t::FILE_CHUNK, chunk("tr-a", 1, vec![3])).await;
    c.expect_error("E005", MISMATCH).await;
}

#[tokio::test]
async fn meta_errors_in_order() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::FILE_META, meta("x")).await;
    c.expect_error("E003", "not in a room").await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send(t::FILE_META, Value::Nil).await;
    a.expect_error("E005", "invalid file meta data").await;
    for data in [
        map! {"iv" => "i", "ciphertext" => vec![1u8]},
        map! {"transferId" => "", "iv" => "i", "ciphertext" => vec![1u8]},
        map! {"transferId" => "x", "ciphertext" => vec![1u8]},
        map! {"transferId" => "x", "iv" => "", "ciphertext" => vec![1u8]},
        map! {"transferId" => "x", "iv" => "i"},
        map! {"transferId" => "x", "iv" => "i", "ciphertext" => Vec::<u8>::new()},
    ] {
        a.send(t::FILE_META, data).await;
        a.expect_error("E005", REQUIRED).await;
    }
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn meta_field_types_are_strict() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for data in [
        map! {"transferId" => "x", "iv" => "i", "ciphertext" => "text-not-bin"},
        map! {"transferId" => "x", "iv" => vec![1u8], "ciphertext" => vec![1u8]},
        map! {"transferId" => b"x".to_vec(), "iv" => "i", "ciphertext" => vec![1u8]},
    ] {
        a.send(t::FILE_META, data).await;
        a.expect_error("E005", REQUIRED).await;
    }
    // None of them started a transfer.
    start(&mut a, &mut [&mut b], "ok").await;
}

#[tokio::test]
async fn chunk_errors_in_order() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::FILE_CHUNK, chunk("x", 0, vec![1])).await;
    c.expect_error("E003", "not in a room").await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr").await;
    a.send(t::FILE_CHUNK, Value::Nil).await;
    a.expect_error("E005", "invalid file chunk data").await;
    a.send(
        t::FILE_CHUNK,
        map! {"index" => 0, "iv" => vec![1u8], "data" => vec![1u8]},
    )
    .await;
    a.expect_error("E005", "missing transferId").await;
    // transferId is checked before iv/data.
    a.send(t::FILE_CHUNK, map! {"transferId" => "", "index" => 0})
        .await;
    a.expect_error("E005", "missing transferId").await;
    for data in [
        map! {"transferId" => "tr", "index" => 0, "data" => vec![1u8]},
        map! {"transferId" => "tr", "index" => 0, "iv" => Vec::<u8>::new(), "data" => vec![1u8]},
        map! {"transferId" => "tr", "index" => 0, "iv" => vec![1u8]},
        map! {"transferId" => "tr", "index" => 0, "iv" => vec![1u8], "data" => Vec::<u8>::new()},
        map! {"transferId" => "tr", "index" => 0, "iv" => "str-iv", "data" => vec![1u8]},
        map! {"transferId" => "tr", "index" => 0, "iv" => vec![1u8], "data" => "str-data"},
        // iv/data are checked before the transfer id matches.
        map! {"transferId" => "other", "index" => 0, "iv" => vec![1u8], "data" => "str-data"},
    ] {
        a.send(t::FILE_CHUNK, data).await;
        a.expect_error("E005", CHUNK_FIELDS).await;
    }
    a.send(t::FILE_CHUNK, chunk("other", 0, vec![1])).await;
    a.expect_error("E005", MISMATCH).await;
    // None of the bad chunks reached b.
    a.send(t::FILE_CHUNK, chunk("tr", 0, vec![1])).await;
    assert_eq!(b.expect(t::RELAY_FILE_CHUNK).await.int("index"), 0);
}

#[tokio::test]
async fn chunk_without_an_active_transfer_gets_mismatch() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send(t::FILE_CHUNK, chunk("never-started", 0, vec![1]))
        .await;
    a.expect_error("E005", MISMATCH).await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn complete_and_cancel_errors() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::FILE_COMPLETE, tid("x")).await;
    c.expect_error("E003", "not in a room").await;
    c.send(t::FILE_CANCEL, tid("x")).await;
    c.expect_error("E003", "not in a room").await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr").await;
    a.send(t::FILE_COMPLETE, Value::Nil).await;
    a.expect_error("E005", "invalid file complete data").await;
    a.send(t::FILE_CANCEL, Value::Nil).await;
    a.expect_error("E005", "invalid file cancel data").await;
    for ty in [t::FILE_COMPLETE, t::FILE_CANCEL] {
        a.send(ty, map! {}).await;
        a.expect_error("E005", "transferId is required").await;
        a.send(ty, tid("")).await;
        a.expect_error("E005", "transferId is required").await;
        a.send(ty, tid("other")).await;
        a.expect_error("E005", MISMATCH).await;
    }
    // The transfer survived all of that.
    a.send(t::FILE_COMPLETE, tid("tr")).await;
    b.expect(t::RELAY_FILE_COMPLETE).await;
}

#[tokio::test]
async fn complete_clears_the_transfer() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr-1").await;
    a.send(t::FILE_COMPLETE, tid("tr-1")).await;
    b.expect(t::RELAY_FILE_COMPLETE).await;
    a.send(t::FILE_COMPLETE, tid("tr-1")).await;
    a.expect_error("E005", MISMATCH).await;
    a.send(t::FILE_CHUNK, chunk("tr-1", 1, vec![1])).await;
    a.expect_error("E005", MISMATCH).await;
    start(&mut a, &mut [&mut b], "tr-2").await;
}

#[tokio::test]
async fn repeated_cancel_gets_e005() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr-1").await;
    a.send(t::FILE_CANCEL, tid("tr-1")).await;
    b.expect(t::RELAY_FILE_CANCEL).await;
    a.send(t::FILE_CANCEL, tid("tr-1")).await;
    a.expect_error("E005", MISMATCH).await;
    // Cancel cleared the transfer: a new one may start.
    start(&mut a, &mut [&mut b], "tr-2").await;
}

#[tokio::test]
async fn disconnect_with_active_transfer_sends_cancel_before_member_left() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    start(&mut a, &mut [&mut b, &mut c], "tr-gone").await;
    let a_id = a.id.clone();
    drop(a);
    for m in [&mut b, &mut c] {
        let cancel = m.expect(t::RELAY_FILE_CANCEL).await;
        assert_eq!(cancel.str("senderId"), a_id);
        assert_eq!(cancel.str("transferId"), "tr-gone");
        assert_eq!(m.expect(t::MEMBER_LEFT).await.str("id"), a_id);
    }
    assert_room_chats(&mut [&mut b, &mut c]).await;
}

#[tokio::test]
async fn disconnect_without_transfer_sends_only_member_left() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr").await;
    a.send(t::FILE_COMPLETE, tid("tr")).await;
    b.expect(t::RELAY_FILE_COMPLETE).await;
    drop(a);
    b.expect(t::MEMBER_LEFT).await;
}

#[tokio::test]
async fn leave_does_not_clear_an_active_transfer() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr-stuck").await;
    a.send(t::LEAVE_ROOM, map! {}).await;
    // No cancel for an explicit leave: the next frame is the MemberLeft.
    assert_eq!(b.expect(t::MEMBER_LEFT).await.str("id"), a.id);
    // Outside a room the transfer can be neither completed nor cancelled.
    a.send(t::FILE_COMPLETE, tid("tr-stuck")).await;
    a.expect_error("E003", "not in a room").await;
    a.send(t::FILE_CANCEL, tid("tr-stuck")).await;
    a.expect_error("E003", "not in a room").await;
    // In a new room, a new transfer cannot start: the old one is still active.
    create_on(&mut a, create_data("a-again")).await;
    a.send(t::FILE_META, meta("tr-new")).await;
    a.expect_error("E005", "already has active transfer").await;
}

#[tokio::test]
async fn stale_transfer_is_cleared_silently() {
    // PROTOCOL.md §6: a transfer is stale exactly --file-transfer-stale-secs after its Meta (there
    // is no sweep period flag).
    let env = Env::start_with(Opts::new().flag("--file-transfer-stale-secs", 1)).await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    let started = tokio::time::Instant::now();
    start(&mut a, &mut [&mut b], "tr-old").await;
    // Retry a new Meta until the old transfer has gone stale. The Ack with no
    // transferId is a barrier whose reply ("missing transferId") tells "accepted" apart.
    let deadline = started + std::time::Duration::from_secs(6);
    loop {
        a.send(t::FILE_META, meta("tr-new")).await;
        a.send(t::FILE_ACK, map! {}).await;
        let first = a.expect_error_code("E005").await;
        if first == "missing transferId" {
            break;
        }
        assert_eq!(first, "already has active transfer");
        a.expect_error("E005", "missing transferId").await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "stale transfer was never cleared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "transfer cleared after {:?}, before it was stale",
        started.elapsed()
    );
    // b saw no cancel for the stale transfer: the next frame is the new Meta.
    assert_eq!(
        b.expect(t::RELAY_FILE_META).await.str("transferId"),
        "tr-new"
    );
    // The old transfer is gone.
    a.send(t::FILE_CHUNK, chunk("tr-old", 0, vec![1])).await;
    a.expect_error("E005", MISMATCH).await;
}

#[tokio::test]
async fn file_messages_are_not_rate_limited() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr").await;
    for i in 0..40 {
        a.send(t::FILE_CHUNK, chunk("tr", i, vec![i as u8])).await;
    }
    for i in 0..40 {
        assert_eq!(b.expect(t::RELAY_FILE_CHUNK).await.int("index"), i);
    }
    a.send(t::FILE_COMPLETE, tid("tr")).await;
    b.expect(t::RELAY_FILE_COMPLETE).await;
    // And the chat budget is untouched.
    for _ in 0..10 {
        say(&mut a, &mut [&mut b]).await;
    }
}

#[tokio::test]
async fn five_megabyte_transfer_reaches_a_reading_client_completely() {
    const CHUNKS: usize = 80;
    const CHUNK_BYTES: usize = 64 * 1024 + 16;
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    let id = unique("big");
    start(&mut a, &mut [&mut b, &mut c], &id).await;
    let payload = |i: usize| -> Vec<u8> {
        (0..CHUNK_BYTES)
            .map(|j| ((i * 31 + j) % 251) as u8)
            .collect()
    };
    let readers: Vec<_> = [b, c]
        .into_iter()
        .map(|mut m| {
            let id = id.clone();
            tokio::spawn(async move {
                for i in 0..CHUNKS {
                    let data = m.expect(t::RELAY_FILE_CHUNK).await;
                    assert_eq!(data.str("transferId"), id);
                    assert_eq!(data.int("index"), i as i64);
                    assert_eq!(
                        data.bin("data"),
                        payload(i).as_slice(),
                        "chunk {i} corrupted"
                    );
                }
                m.expect(t::RELAY_FILE_COMPLETE).await;
                m
            })
        })
        .collect();
    for i in 0..CHUNKS {
        a.send(t::FILE_CHUNK, chunk(&id, i as i64, payload(i)))
            .await;
    }
    a.send(t::FILE_COMPLETE, tid(&id)).await;
    let mut back = Vec::new();
    for r in readers {
        back.push(r.await.expect("reader task"));
    }
    let (mut b, mut c) = (back.remove(0), back.remove(0));
    // The receivers ack and the sender hears both.
    b.send(t::FILE_ACK, tid(&id)).await;
    c.send(t::FILE_ACK, tid(&id)).await;
    let mut ackers = vec![
        a.expect(t::RELAY_FILE_ACK)
            .await
            .str("receiverId")
            .to_string(),
        a.expect(t::RELAY_FILE_ACK)
            .await
            .str("receiverId")
            .to_string(),
    ];
    ackers.sort();
    let mut want = vec![b.id.clone(), c.id.clone()];
    want.sort();
    assert_eq!(ackers, want);
    assert_room_chats(&mut [&mut a, &mut b, &mut c]).await;
}

#[tokio::test]
async fn join_during_a_transfer_sees_the_rest_of_it() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    start(&mut a, &mut [&mut b], "tr").await;
    let mut c = Client::connect(&env.ws_url(2)).await;
    c.send(t::JOIN_ROOM, join_data(&a.room_id, "late", ""))
        .await;
    c.expect(t::ROOM_JOINED).await;
    a.expect(t::MEMBER_JOINED).await;
    b.expect(t::MEMBER_JOINED).await;
    a.send(t::FILE_CHUNK, chunk("tr", 0, vec![1])).await;
    b.expect(t::RELAY_FILE_CHUNK).await;
    c.expect(t::RELAY_FILE_CHUNK).await;
}
