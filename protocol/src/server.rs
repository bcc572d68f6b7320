//! Server -> client frames.
//!
//! Hot path: a frame that goes to many recipients is encoded **once** by
//! [`encode`] into a [`Bytes`], which every recipient's queue shares by
//! reference count. Keys are written in the reference (Go struct) order.
//! The structs also implement `Deserialize` (borrowing from the frame), so our
//! own clients and tests decode with [`decode`] + [`data`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::kind;
use crate::reject::Reject;

/// What a member looks like to the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub color: &'a str,
}

/// 0x10 RoomCreated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomCreated<'a> {
    #[serde(rename = "roomId")]
    pub room_id: &'a str,
    /// Unix seconds; 0 = never.
    #[serde(rename = "expiresAt")]
    pub expires_at: i64,
}

/// 0x11 RoomJoined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomJoined<'a> {
    #[serde(rename = "roomId")]
    pub room_id: &'a str,
    /// Join order; the receiver itself is last.
    #[serde(borrow)]
    pub members: Vec<MemberView<'a>>,
    #[serde(rename = "hasPassword")]
    pub has_password: bool,
    pub ephemeral: i64,
    #[serde(rename = "expiresAt")]
    pub expires_at: i64,
}

/// 0x13 MemberLeft; `reason` (extension: `kicked`, `rekeyed`) only when
/// the member was kicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLeft<'a> {
    pub id: &'a str,
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub reason: &'a str,
}

/// 0x50 RelayDirect (extension): a directed message, to one member only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayDirect<'a> {
    #[serde(rename = "senderId")]
    pub sender_id: &'a str,
    pub iv: &'a str,
    pub ciphertext: &'a str,
    /// Server time, unix milliseconds.
    pub t: i64,
}

/// 0x51 RoomSecretSet (extension): what a SetRoomSecret changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSecretSet {
    pub password: bool,
    pub owner: bool,
}

/// 0x14 RelayMessage and 0x19 RelayReaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed<'a> {
    #[serde(rename = "senderId")]
    pub sender_id: &'a str,
    #[serde(rename = "senderName")]
    pub sender_name: &'a str,
    pub iv: &'a str,
    pub ciphertext: &'a str,
    /// Server time, unix milliseconds.
    pub t: i64,
}

/// 0x15 MemberTyping (with our extension: the encrypted typing payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberTyping<'a> {
    pub id: &'a str,
    pub typing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iv: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<&'a str>,
}

/// 0x16 RoomClosed; `reason` is omitted when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomClosed<'a> {
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub reason: &'a str,
}

/// 0x17 Error and 0x2B MatchError.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorData<'a> {
    pub code: &'a str,
    pub msg: &'a str,
}

/// 0x18 Ping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Server time, unix milliseconds.
    pub t: i64,
}

/// 0x1A RelayFileMeta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayFileMeta<'a> {
    #[serde(rename = "senderId")]
    pub sender_id: &'a str,
    #[serde(rename = "senderName")]
    pub sender_name: &'a str,
    #[serde(rename = "transferId")]
    pub transfer_id: &'a str,
    pub iv: &'a str,
    #[serde(with = "serde_bytes")]
    pub ciphertext: &'a [u8],
    pub t: i64,
}

/// 0x1B RelayFileChunk (no senderName, no t).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayFileChunk<'a> {
    #[serde(rename = "senderId")]
    pub sender_id: &'a str,
    #[serde(rename = "transferId")]
    pub transfer_id: &'a str,
    pub index: i64,
    #[serde(with = "serde_bytes")]
    pub iv: &'a [u8],
    #[serde(with = "serde_bytes")]
    pub data: &'a [u8],
}

/// 0x1C RelayFileComplete and 0x1D RelayFileCancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayFileRef<'a> {
    #[serde(rename = "senderId")]
    pub sender_id: &'a str,
    #[serde(rename = "transferId")]
    pub transfer_id: &'a str,
}

/// 0x1E RelayFileAck, sent to the transfer's sender only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayFileAck<'a> {
    #[serde(rename = "receiverId")]
    pub receiver_id: &'a str,
    #[serde(rename = "transferId")]
    pub transfer_id: &'a str,
}

/// Bytes an envelope adds around `data` (map header, keys, type), rounded up.
const ENVELOPE_OVERHEAD: usize = 24;

/// Encodes `{type, data}` once. Hot path: `payload_hint` is the byte length of
/// the large fields so the buffer is allocated once.
pub fn encode_sized<T: Serialize + ?Sized>(
    message_type: u8,
    data: &T,
    payload_hint: usize,
) -> Bytes {
    let mut buf = Vec::with_capacity(ENVELOPE_OVERHEAD + 96 + payload_hint);
    // Writing into a Vec cannot fail, and our types always serialize.
    let _ = rmp::encode::write_map_len(&mut buf, 2);
    let _ = rmp::encode::write_str(&mut buf, "type");
    let _ = rmp::encode::write_uint(&mut buf, u64::from(message_type));
    let _ = rmp::encode::write_str(&mut buf, "data");
    if rmp_serde::encode::write_named(&mut buf, data).is_err() {
        debug_assert!(false, "protocol types always serialize");
    }
    Bytes::from(buf)
}

/// The message type of a frame made by [`encode_sized`], read from its
/// fixed prefix (`{"type": N, ...`) without decoding: metrics label what the
/// relay sends by type at the cost of one comparison.
pub fn kind_of(frame: &[u8]) -> Option<u8> {
    const PREFIX: &[u8] = b"\x82\xa4type";
    match frame.get(PREFIX.len()) {
        Some(&kind) if kind < 0x80 && frame.starts_with(PREFIX) => Some(kind),
        _ => None,
    }
}

/// Encodes `{type, data}` once (small frames).
pub fn encode<T: Serialize + ?Sized>(message_type: u8, data: &T) -> Bytes {
    encode_sized(message_type, data, 0)
}

/// 0x1D RelayFileCancel for `sender_id`'s transfer `transfer_id` (a
/// disconnect, an expiry or a room closed under it).
pub fn file_cancel(sender_id: &str, transfer_id: &str) -> Bytes {
    encode(
        crate::kind::RELAY_FILE_CANCEL,
        &RelayFileRef {
            sender_id,
            transfer_id,
        },
    )
}

/// The Error frame (0x17) for a refusal; M001 travels in a 0x2B envelope.
pub fn error(reject: &Reject) -> Bytes {
    let data = ErrorData {
        code: reject.code.as_str(),
        msg: &reject.msg,
    };
    let message_type = match reject.code {
        crate::ErrorCode::MatchDisabled => kind::MATCH_ERROR,
        _ => kind::ERROR,
    };
    encode(message_type, &data)
}

/// Why a server frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("undecodable server frame: {0}")]
pub struct DecodeError(String);

/// Splits a server frame into its type and the still-encoded `data`.
pub fn decode(frame: &[u8]) -> Result<(u8, &[u8]), DecodeError> {
    let mut rd = frame;
    let len = rmp::decode::read_map_len(&mut rd).map_err(|e| DecodeError(e.to_string()))?;
    let mut message_type = None;
    let mut data: &[u8] = &[0xc0];
    for _ in 0..len {
        let mut key_buf = [0u8; 8];
        let key = rmp::decode::read_str(&mut rd, &mut key_buf)
            .map_err(|e| DecodeError(format!("{e:?}")))?;
        match key {
            "type" => {
                let t: u8 =
                    rmp::decode::read_int(&mut rd).map_err(|e| DecodeError(e.to_string()))?;
                message_type = Some(t);
            }
            other => {
                let before = rd;
                rmpv::decode::read_value_ref(&mut rd).map_err(|e| DecodeError(e.to_string()))?;
                if other == "data" {
                    data = &before[..before.len() - rd.len()];
                }
            }
        }
    }
    let message_type = message_type.ok_or_else(|| DecodeError("no type".into()))?;
    Ok((message_type, data))
}

/// Decodes the `data` part returned by [`decode`] into a message struct.
pub fn data<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Result<T, DecodeError> {
    rmp_serde::from_slice(data).map_err(|e| DecodeError(e.to_string()))
}
