//! The envelope and its decoding (PROTOCOL.md §1 frames accepted, §2 envelope, parsing
//! failures, field typing, unknown types, Pong, and the 0x20-0x2F decision).

use rmpv::Value;

use crate::map;
use crate::support::msg::{encode, envelope, envelope_raw_type, envelope_with_raw};
use crate::support::room::{create_data, create_on};
use crate::support::{assert_room_chats, open_room, t, Client, Env, ValueExt};

const FORMAT_ERROR: &str = "invalid message format";

/// Byte strings that are not a msgpack envelope.
fn junk() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("never-used byte 0xc1", vec![0xc1]),
        ("empty payload", vec![]),
        ("truncated map", vec![0x82, 0xa4, b't', b'y', b'p', b'e']),
        (
            "array",
            encode(&Value::Array(vec![Value::from(3), Value::Map(vec![])])),
        ),
        ("integer", vec![0x05]),
        ("string", encode(&Value::from("hello"))),
        (
            "random bytes",
            vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0x13, 0x37],
        ),
    ]
}

#[tokio::test]
async fn bytes_that_are_not_an_envelope_get_e005_invalid_message_format() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for (what, bytes) in junk() {
        a.send_bytes(bytes).await;
        let text = a.expect_error_code("E005").await;
        assert_eq!(text, FORMAT_ERROR, "reply to {what}");
    }
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn junk_outside_a_room_gets_e005_too() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send_bytes(vec![0xc1, 0xc1]).await;
    c.expect_error("E005", FORMAT_ERROR).await;
    create_on(&mut c, create_data("still-fine")).await;
}

#[tokio::test]
async fn envelope_with_a_non_integer_type_gets_e005() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    let bytes = encode(&map! {"type" => "1", "data" => create_data("x")});
    c.send_bytes(bytes).await;
    c.expect_error("E005", FORMAT_ERROR).await;
}

#[tokio::test]
async fn text_frame_with_junk_gets_e005() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send_text_bytes(b"this is not msgpack".to_vec()).await;
    a.expect_error("E005", FORMAT_ERROR).await;
    a.send_text_bytes(b"{\"type\":3}".to_vec()).await;
    a.expect_error("E005", FORMAT_ERROR).await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn text_frame_that_is_not_utf8_closes_with_1007() {
    // RFC 6455 §8.1: a text message must be UTF-8. A MessagePack envelope
    // starts with 0x8N, never UTF-8, so it belongs in a binary frame (as
    // every Arthas client sends it); the reference server did not check.
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send_text_bytes(envelope(
        t::SEND_MESSAGE,
        map! {"iv" => "tiv", "ciphertext" => "tct"},
    ))
    .await;
    a.expect_close(1007).await;
    let left = b.expect(t::MEMBER_LEFT).await;
    assert_eq!(left.str("id"), a.id);
}

#[tokio::test]
async fn unknown_types_get_no_reply() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    for ty in [
        0x00u8, 0x0D, 0x0F, 0x10, 0x14, 0x17, 0x18, 0x1F, 0x30, 0x7F, 0xFF,
    ] {
        c.send(ty, map! {"iv" => "i", "ciphertext" => "c"}).await;
    }
    c.sync().await;
}

#[tokio::test]
async fn unknown_types_from_a_member_reach_nobody() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    for ty in [0x0Du8, 0x14, 0x19, 0x1F, 0x30, 0xFF] {
        a.send(ty, map! {"iv" => "i", "ciphertext" => "c"}).await;
    }
    a.sync().await;
    assert_room_chats(&mut [&mut a, &mut b, &mut c]).await;
}

#[tokio::test]
async fn every_match_type_gets_m001_random_match_is_disabled() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    for ty in 0x20u8..=0x2F {
        c.send(ty, map! {}).await;
        let data = c.expect(t::MATCH_ERROR).await;
        assert_eq!(data.str("code"), "M001", "reply to 0x{ty:02X}");
        assert_eq!(
            data.str("msg"),
            "random match is disabled",
            "reply to 0x{ty:02X}"
        );
    }
}

#[tokio::test]
async fn match_types_get_m001_in_a_room_and_with_any_data() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for data in [Value::Nil, map! {"name" => "x"}, Value::from(3)] {
        a.send(0x20, data).await;
        let reply = a.expect(t::MATCH_ERROR).await;
        assert_eq!(reply.str("code"), "M001");
    }
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn pong_gets_no_reply_in_any_form() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for data in [
        map! {"t" => 1_700_000_000_000i64},
        map! {"t" => u64::MAX},
        map! {"t" => -1},
        map! {"t" => 0},
        map! {"t" => "soon"},
        map! {},
        Value::Nil,
        Value::from("x"),
    ] {
        a.send(t::PONG, data).await;
    }
    a.sync().await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn pong_outside_a_room_gets_no_reply() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::PONG, map! {"t" => 5}).await;
    c.sync().await;
}

#[tokio::test]
async fn integers_of_any_width_are_accepted() {
    let env = Env::start().await;
    let encodings: [(&str, Vec<u8>); 9] = [
        ("positive fixint", vec![0x1e]),
        ("uint8", vec![0xcc, 0x1e]),
        ("uint16", vec![0xcd, 0x00, 0x1e]),
        ("uint32", vec![0xce, 0, 0, 0, 0x1e]),
        ("uint64", vec![0xcf, 0, 0, 0, 0, 0, 0, 0, 0x1e]),
        ("int8", vec![0xd0, 0x1e]),
        ("int16", vec![0xd1, 0x00, 0x1e]),
        ("int32", vec![0xd2, 0, 0, 0, 0x1e]),
        ("int64", vec![0xd3, 0, 0, 0, 0, 0, 0, 0, 0x1e]),
    ];
    for (what, raw) in encodings {
        let mut c = Client::connect(&env.ws_url(0)).await;
        let data = map! {"name" => "w", "password" => "", "ephemeral" => "\u{1}eph", "expiry" => 0};
        c.send_bytes(envelope_with_raw(t::CREATE_ROOM, data, "\u{1}eph", &raw))
            .await;
        c.expect(t::ROOM_CREATED).await;
        let joined = c.expect(t::ROOM_JOINED).await;
        assert_eq!(joined.int("ephemeral"), 30, "ephemeral sent as {what}");
    }
}

#[tokio::test]
async fn negative_integers_of_any_width_are_accepted() {
    let env = Env::start().await;
    for (what, raw) in [
        ("negative fixint", vec![0xfbu8]),
        ("int8", vec![0xd0, 0xfb]),
        ("int16", vec![0xd1, 0xff, 0xfb]),
        ("int32", vec![0xd2, 0xff, 0xff, 0xff, 0xfb]),
        (
            "int64",
            vec![0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb],
        ),
    ] {
        let mut c = Client::connect(&env.ws_url(1)).await;
        let data = map! {"name" => "w", "password" => "", "ephemeral" => "\u{1}eph", "expiry" => 0};
        c.send_bytes(envelope_with_raw(t::CREATE_ROOM, data, "\u{1}eph", &raw))
            .await;
        c.expect(t::ROOM_CREATED).await;
        let joined = c.expect(t::ROOM_JOINED).await;
        assert_eq!(joined.int("ephemeral"), -5, "ephemeral sent as {what}");
    }
}

#[tokio::test]
async fn envelope_type_of_any_integer_width_is_accepted() {
    let env = Env::start().await;
    for raw in [
        vec![0xccu8, 0x01],
        vec![0xcd, 0x00, 0x01],
        vec![0xce, 0, 0, 0, 0x01],
        vec![0xd0, 0x01],
        vec![0xd3, 0, 0, 0, 0, 0, 0, 0, 0x01],
    ] {
        let mut c = Client::connect(&env.ws_url(0)).await;
        c.send_bytes(envelope_raw_type(&raw, create_data("w")))
            .await;
        c.expect(t::ROOM_CREATED).await;
        c.expect(t::ROOM_JOINED).await;
    }
}

#[tokio::test]
async fn floats_become_zero() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    let (created, joined) = create_on(
        &mut c,
        map! {"name" => "f", "password" => "", "ephemeral" => 3.7f64, "expiry" => 3600.0f64},
    )
    .await;
    assert_eq!(joined.int("ephemeral"), 0);
    assert_eq!(
        created.int("expiresAt"),
        0,
        "a float expiry becomes 0 = never"
    );
    let mut d = Client::connect(&env.ws_url(1)).await;
    let (_, joined) = create_on(
        &mut d,
        map! {"name" => "g", "password" => "", "ephemeral" => 12.0f32, "expiry" => 0},
    )
    .await;
    assert_eq!(joined.int("ephemeral"), 0);
}

#[tokio::test]
async fn bin_where_a_name_is_expected_fails_the_name_check() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(
        t::CREATE_ROOM,
        map! {"name" => b"alice".to_vec(), "password" => "", "ephemeral" => 0, "expiry" => 0},
    )
    .await;
    c.expect_error("E005", "name must be 1-20 characters").await;
    let room = create_on(&mut c, create_data("alice")).await.0;
    let mut d = Client::connect(&env.ws_url(1)).await;
    d.send(
        t::JOIN_ROOM,
        map! {"roomId" => room.str("roomId"), "name" => b"bob".to_vec(), "password" => ""},
    )
    .await;
    d.expect_error("E005", "name must be 1-20 characters").await;
}

#[tokio::test]
async fn key_order_and_extra_keys_do_not_matter() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    let bytes = encode(&Value::Map(vec![
        (Value::from("extra"), Value::from(1)),
        (
            Value::from("data"),
            map! {"expiry" => 0, "unknown" => "x", "ephemeral" => 0, "password" => "", "name" => "k"},
        ),
        (Value::from("type"), Value::from(t::CREATE_ROOM)),
    ]));
    c.send_bytes(bytes).await;
    c.expect(t::ROOM_CREATED).await;
    c.expect(t::ROOM_JOINED).await;
}

#[tokio::test]
async fn envelope_without_data_is_non_map_data() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send_bytes(encode(&map! {"type" => t::SEND_MESSAGE}))
        .await;
    a.expect_error("E005", "invalid message data").await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn bad_input_of_every_kind_never_disturbs_the_room() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    let mut inputs: Vec<Vec<u8>> = junk().into_iter().map(|(_, b)| b).collect();
    inputs.push(envelope(t::SEND_MESSAGE, Value::Nil));
    inputs.push(envelope(t::FILE_CHUNK, map! {"transferId" => 5}));
    inputs.push(envelope(
        t::FILE_META,
        map! {"transferId" => "x", "iv" => "", "ciphertext" => "str"},
    ));
    inputs.push(envelope(
        t::JOIN_ROOM,
        map! {"roomId" => Value::Array(vec![])},
    ));
    inputs.push(encode(
        &map! {"type" => 3, "data" => map! {"iv" => map! {}, "ciphertext" => Value::Nil}},
    ));
    // Each of these is answered with exactly one E005 (whatever the text).
    for bytes in inputs {
        a.send_bytes(bytes).await;
        a.expect_error_code("E005").await;
    }
    assert_room_chats(&mut [&mut a, &mut b, &mut c]).await;
}

#[tokio::test]
async fn not_in_a_room_is_checked_before_the_data_for_every_room_message() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    for ty in [
        t::SEND_MESSAGE,
        t::TYPING,
        t::SEND_REACTION,
        t::FILE_META,
        t::FILE_CHUNK,
        t::FILE_COMPLETE,
        t::FILE_CANCEL,
        t::FILE_ACK,
    ] {
        c.send(ty, Value::Nil).await;
        let data = c.expect(t::ERROR).await;
        assert_eq!(
            (data.str("code"), data.str("msg")),
            ("E003", "not in a room"),
            "reply to 0x{ty:02X} with nil data outside a room"
        );
    }
}
