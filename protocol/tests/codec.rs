//! Round trips and robustness of the codec.

use arthas_protocol::client::{
    self, CreateRoom, FileChunk, FileMeta, JoinRoom, MessageType, Sealed, TransferRef, Typing,
};
use arthas_protocol::reject::texts;
use arthas_protocol::server::{
    self, MemberView, RelayFileChunk, RelayFileMeta, Relayed, RoomJoined,
};
use arthas_protocol::{kind, ErrorCode};
use proptest::prelude::*;

fn envelope(bytes: &[u8]) -> client::Envelope<'_> {
    client::decode(bytes).expect("valid envelope")
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_client_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(env) = client::decode(&bytes) {
            let _ = CreateRoom::parse(&env.data);
            let _ = JoinRoom::parse(&env.data);
            let _ = Sealed::parse_message(&env.data);
            let _ = Typing::parse(&env.data);
            let _ = FileMeta::parse(&env.data);
            let _ = FileChunk::parse(&env.data);
            let _ = TransferRef::parse_ack(&env.data);
            let _ = client::parse_pong(&env.data);
        }
        let _ = server::decode(&bytes);
    }

    #[test]
    fn create_room_round_trips(name in "[^\u{0}]{1,20}", pw in prop_oneof![Just(String::new()), "[0-9a-f]{64}"],
                               ephemeral in any::<i64>(), expiry in any::<i64>(), public in any::<bool>(),
                               title in ".{0,60}", tags in proptest::collection::vec("[a-z0-9-]{1,20}", 0..6)) {
        let msg = CreateRoom { name: &name, password: &pw, ephemeral, expiry, public, title: &title,
            description: "d", tags: tags.iter().map(String::as_str).collect(), key_encoded: "k", owner_hash: "" };
        let bytes = client::encode(kind::CREATE_ROOM, &msg);
        let env = envelope(&bytes);
        prop_assert_eq!(env.message_type, MessageType::CreateRoom);
        prop_assert_eq!(CreateRoom::parse(&env.data).unwrap(), msg);
    }

    #[test]
    fn chunk_round_trips(id in "[a-z0-9]{1,40}", index in any::<i64>(),
                         iv in proptest::collection::vec(any::<u8>(), 1..16), data in proptest::collection::vec(any::<u8>(), 1..2000)) {
        let msg = FileChunk { transfer_id: &id, index, iv: &iv, data: &data };
        let bytes = client::encode(kind::SEND_FILE_CHUNK, &msg);
        prop_assert_eq!(FileChunk::parse(&envelope(&bytes).data).unwrap(), msg);
    }

    #[test]
    fn relayed_server_frame_round_trips(sender in "[0-9a-f]{8}", name in ".{1,20}", iv in "[A-Za-z0-9_-]{16}",
                                        ct in "[A-Za-z0-9_-]{1,400}", t in any::<i64>()) {
        let msg = Relayed { sender_id: &sender, sender_name: &name, iv: &iv, ciphertext: &ct, t };
        let bytes = server::encode(kind::RELAY_MESSAGE, &msg);
        let (ty, data) = server::decode(&bytes).unwrap();
        prop_assert_eq!(ty, kind::RELAY_MESSAGE);
        prop_assert_eq!(server::data::<Relayed>(data).unwrap(), msg);
    }

    #[test]
    fn room_joined_round_trips(ids in proptest::collection::vec("[0-9a-f]{8}", 1..50), eph in any::<i64>(), exp in any::<i64>(), pw in any::<bool>()) {
        let members: Vec<MemberView> = ids.iter().map(|id| MemberView { id, name: "n", color: "#404040" }).collect();
        let msg = RoomJoined { room_id: "r", members, has_password: pw, ephemeral: eph, expires_at: exp };
        let bytes = server::encode(kind::ROOM_JOINED, &msg);
        let (_, data) = server::decode(&bytes).unwrap();
        prop_assert_eq!(server::data::<RoomJoined>(data).unwrap(), msg);
    }

    #[test]
    fn file_frames_round_trip(ct in proptest::collection::vec(any::<u8>(), 1..300), index in any::<i64>()) {
        let meta = RelayFileMeta { sender_id: "a", sender_name: "b", transfer_id: "x", iv: "iv", ciphertext: &ct, t: 5 };
        let bytes = server::encode(kind::RELAY_FILE_META, &meta);
        prop_assert_eq!(server::data::<RelayFileMeta>(server::decode(&bytes).unwrap().1).unwrap(), meta);
        let chunk = RelayFileChunk { sender_id: "a", transfer_id: "x", index, iv: &ct[..1], data: &ct };
        let bytes = server::encode(kind::RELAY_FILE_CHUNK, &chunk);
        prop_assert_eq!(server::data::<RelayFileChunk>(server::decode(&bytes).unwrap().1).unwrap(), chunk);
    }
}

/// Hand-written msgpack: `{"type": T, "data": D}` with D as raw bytes.
fn raw(t: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x82, 0xa4];
    v.extend_from_slice(b"type");
    v.extend_from_slice(t);
    v.push(0xa4);
    v.extend_from_slice(b"data");
    v.extend_from_slice(data);
    v
}

#[test]
fn any_integer_width_is_a_type_and_a_field() {
    // type as uint16 0x0003, data {"expiry": int64 5, "name": "a"}
    let mut data = vec![0x82, 0xa6];
    data.extend_from_slice(b"expiry");
    data.extend_from_slice(&[0xd3, 0, 0, 0, 0, 0, 0, 0, 5]);
    data.extend_from_slice(&[0xa4, b'n', b'a', b'm', b'e', 0xa1, b'a']);
    let bytes = raw(&[0xcd, 0x00, 0x01], &data);
    let env = envelope(&bytes);
    assert_eq!(env.message_type, MessageType::CreateRoom);
    assert_eq!(CreateRoom::parse(&env.data).unwrap().expiry, 5);
}

#[test]
fn a_float_reads_as_zero() {
    let mut data = vec![0x82, 0xa6];
    data.extend_from_slice(b"expiry");
    data.push(0xcb);
    data.extend_from_slice(&100.0f64.to_be_bytes());
    data.extend_from_slice(&[0xa4, b'n', b'a', b'm', b'e', 0xa1, b'a']);
    let bytes = raw(&[0x01], &data);
    assert_eq!(CreateRoom::parse(&envelope(&bytes).data).unwrap().expiry, 0);
}

#[test]
fn bin_where_a_str_is_required_fails_the_check() {
    // {"iv": bin "ab", "ciphertext": "cd"}
    let data = [
        0x82, 0xa2, b'i', b'v', 0xc4, 2, b'a', b'b', 0xaa, b'c', b'i', b'p', b'h', b'e', b'r',
        b't', b'e', b'x', b't', 0xa2, b'c', b'd',
    ];
    let bytes = raw(&[0x03], &data);
    let err = Sealed::parse_message(&envelope(&bytes).data).unwrap_err();
    assert_eq!(err.msg, "iv and ciphertext must be non-empty strings");
}

#[test]
fn str_where_a_bin_is_required_fails_the_check() {
    let msg = FileMeta {
        transfer_id: "t",
        iv: "iv",
        ciphertext: b"x",
    };
    let mut bytes = client::encode(kind::SEND_FILE_META, &msg);
    // ciphertext encoded as bin8 (0xc4 0x01 'x') -> turn it into str (0xa1 'x')
    let n = bytes.len();
    assert_eq!(&bytes[n - 3..], &[0xc4, 1, b'x']);
    bytes.truncate(n - 3);
    bytes.extend_from_slice(&[0xa1, b'x']);
    assert_eq!(
        FileMeta::parse(&envelope(&bytes).data).unwrap_err().msg,
        "transferId, iv, and ciphertext are required"
    );
}

#[test]
fn not_msgpack_is_invalid_message_format() {
    assert_eq!(client::decode(b"\xc1").unwrap_err(), texts::INVALID_FORMAT);
    assert_eq!(client::decode(b"hello").unwrap_err(), texts::INVALID_FORMAT);
    assert_eq!(client::decode(&[0x05]).unwrap_err(), texts::INVALID_FORMAT);
}

#[test]
fn non_map_data_gets_the_per_message_text() {
    let bytes = raw(&[0x02], &[0x05]);
    assert_eq!(
        JoinRoom::parse(&envelope(&bytes).data).unwrap_err().msg,
        "invalid join room data"
    );
    assert_eq!(client::parse_pong(&envelope(&bytes).data), None);
}

#[test]
fn match_and_unknown_types_are_classified() {
    assert_eq!(
        envelope(&raw(&[0x20], &[0x80])).message_type,
        MessageType::Match(0x20)
    );
    assert_eq!(
        envelope(&raw(&[0x2f], &[0x80])).message_type,
        MessageType::Match(0x2f)
    );
    assert_eq!(
        envelope(&raw(&[0x0d], &[0x80])).message_type,
        MessageType::Unknown(0x0d)
    );
    assert_eq!(
        envelope(&raw(&[0xcd, 1, 0], &[0x80])).message_type,
        MessageType::Unknown(256)
    );
}

#[test]
fn names_are_counted_in_runes() {
    assert!(client::check_name(&"é".repeat(20)).is_ok());
    assert!(client::check_name(&"é".repeat(21)).is_err());
    assert!(client::check_name("").is_err());
    assert!(client::check_name("   ").is_ok());
}

#[test]
fn match_disabled_travels_in_a_0x2b_envelope() {
    let bytes = server::error(&texts::MATCH_DISABLED);
    let (ty, data) = server::decode(&bytes).unwrap();
    assert_eq!(ty, kind::MATCH_ERROR);
    let e: server::ErrorData = server::data(data).unwrap();
    assert_eq!((e.code, e.msg), ("M001", "random match is disabled"));
    assert_eq!(ErrorCode::parse("M001"), Some(ErrorCode::MatchDisabled));
}

#[test]
fn room_ids_are_nanoid_shaped_and_never_carry_hash_tag_braces() {
    assert!(client::is_room_id("V1StGXR8_Z5jdHi6B-myT"));
    assert!(!client::is_room_id(""));
    assert!(!client::is_room_id("a{b}"));
    assert!(!client::is_room_id("a b"));
    assert!(!client::is_room_id(&"a".repeat(65)));
    assert!(client::is_room_id(&"a".repeat(64)));
}

#[test]
fn kind_of_reads_the_type_of_every_encoded_frame_and_nothing_else() {
    for kind in [
        kind::ROOM_CREATED,
        kind::RELAY_MESSAGE,
        kind::PING,
        kind::MATCH_ERROR,
    ] {
        let frame = server::encode(
            kind,
            &server::MemberLeft {
                id: "0123abcd",
                reason: "",
            },
        );
        assert_eq!(server::kind_of(&frame), Some(kind));
    }
    assert_eq!(
        server::kind_of(&server::error(&texts::RATE_LIMITED)),
        Some(kind::ERROR)
    );
    assert_eq!(server::kind_of(b""), None);
    assert_eq!(server::kind_of(b"\x82\xa4type"), None);
    assert_eq!(server::kind_of(b"\x82\xa4typf\x10"), None);
    assert_eq!(server::kind_of(b"\x82\xa4type\xcc\xff"), None);
}
