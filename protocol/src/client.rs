//! Client -> server frames.
//!
//! Decoding is lazy on purpose: the reference server checks connection state
//! (e.g. "not in a room") *before* it looks at `data`, so [`decode`] only
//! finds the type and keeps `data` as a borrowed value; each message's
//! `parse` then runs the data checks in the reference order and returns the
//! reference's exact error text. Nothing is copied: strings and bins borrow
//! the frame.
//!
//! The structs also implement `Serialize`, so our own clients (load generator,
//! tests) encode with [`encode`] exactly what existing clients send.

pub use rmpv::ValueRef;
use serde::Serialize;

use crate::kind;
use crate::reject::{texts, Reject};
use crate::value::Fields;

/// The longest display name, in Unicode scalar values ("runes").
pub const MAX_NAME_RUNES: usize = 20;

/// The longest room id accepted (ours are 21-character NanoIDs).
pub const MAX_ROOM_ID_BYTES: usize = 64;

/// Whether `id` can name a room: 1..=64 characters of the NanoID alphabet.
/// Anything else cannot exist, and must never reach a storage key (a `{` or
/// `}` would change a Redis Cluster hash tag).
pub fn is_room_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ROOM_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// How deep a client frame may nest; real frames nest 3 levels.
const MAX_DEPTH: usize = 16;

/// What a client frame asks for, by its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    CreateRoom,
    JoinRoom,
    SendMessage,
    LeaveRoom,
    Typing,
    Pong,
    SendReaction,
    SendFileMeta,
    SendFileChunk,
    SendFileComplete,
    SendFileCancel,
    SendFileAck,
    /// 0x40 Kick (extension).
    Kick,
    /// 0x41 SendDirect (extension).
    SendDirect,
    /// 0x42 SetRoomSecret (extension).
    SetRoomSecret,
    /// 0x20–0x2F: the random-match module, which this project disables.
    Match(u8),
    /// Anything else: logged, never answered.
    Unknown(u64),
}

impl MessageType {
    fn of(t: u64) -> MessageType {
        match u8::try_from(t) {
            Ok(kind::CREATE_ROOM) => MessageType::CreateRoom,
            Ok(kind::JOIN_ROOM) => MessageType::JoinRoom,
            Ok(kind::SEND_MESSAGE) => MessageType::SendMessage,
            Ok(kind::LEAVE_ROOM) => MessageType::LeaveRoom,
            Ok(kind::TYPING) => MessageType::Typing,
            Ok(kind::PONG) => MessageType::Pong,
            Ok(kind::SEND_REACTION) => MessageType::SendReaction,
            Ok(kind::SEND_FILE_META) => MessageType::SendFileMeta,
            Ok(kind::SEND_FILE_CHUNK) => MessageType::SendFileChunk,
            Ok(kind::SEND_FILE_COMPLETE) => MessageType::SendFileComplete,
            Ok(kind::SEND_FILE_CANCEL) => MessageType::SendFileCancel,
            Ok(kind::SEND_FILE_ACK) => MessageType::SendFileAck,
            Ok(kind::KICK) => MessageType::Kick,
            Ok(kind::SEND_DIRECT) => MessageType::SendDirect,
            Ok(kind::SET_ROOM_SECRET) => MessageType::SetRoomSecret,
            Ok(m @ kind::MATCH_FIRST..=kind::MATCH_LAST) => MessageType::Match(m),
            _ => MessageType::Unknown(t),
        }
    }
}

/// A decoded client envelope: its type, and `data` still undecoded.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// What the client asks for.
    pub message_type: MessageType,
    /// The `data` field (nil when absent), borrowing the frame.
    pub data: ValueRef<'a>,
}

/// Decodes a client frame's envelope. Anything that is not a MessagePack map
/// (with an integer `type`, when present) is E005 "invalid message format".
pub fn decode(frame: &[u8]) -> Result<Envelope<'_>, Reject> {
    let mut rd = frame;
    let value = rmpv::decode::read_value_ref_with_max_depth(&mut rd, MAX_DEPTH)
        .map_err(|_| texts::INVALID_FORMAT)?;
    let ValueRef::Map(entries) = value else {
        return Err(texts::INVALID_FORMAT);
    };
    let mut message_type = 0u64;
    let mut data = ValueRef::Nil;
    for (k, v) in entries {
        let ValueRef::String(k) = k else { continue };
        match k.as_bytes() {
            b"type" => match v {
                ValueRef::Integer(i) => message_type = i.as_u64().unwrap_or(u64::MAX),
                ValueRef::Nil => message_type = 0,
                _ => return Err(texts::INVALID_FORMAT),
            },
            b"data" => data = v,
            _ => {}
        }
    }
    Ok(Envelope {
        message_type: MessageType::of(message_type),
        data,
    })
}

/// Encodes a client frame `{type, data}` (for our own clients and tests).
pub fn encode<T: Serialize>(message_type: u8, data: &T) -> Vec<u8> {
    crate::server::encode(message_type, data).to_vec()
}

fn fields<'v, 'a>(
    data: &'v ValueRef<'a>,
    not_a_map: &'static str,
) -> Result<Fields<'v, 'a>, Reject> {
    Fields::of(data).ok_or(Reject::invalid(not_a_map))
}

/// The display-name rule: 1..=20 runes, judged as the reference does (empty by
/// bytes, long by runes; whitespace-only passes).
pub fn check_name(name: &str) -> Result<(), Reject> {
    if name.is_empty() || name.chars().count() > MAX_NAME_RUNES {
        return Err(Reject::invalid("name must be 1-20 characters"));
    }
    Ok(())
}

/// 0x01 CreateRoom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct CreateRoom<'a> {
    pub name: &'a str,
    /// "" or the 64-character SHA-256 hex of the password.
    pub password: &'a str,
    /// Seconds after which clients delete messages; stored and echoed only.
    pub ephemeral: i64,
    /// Requested lifetime in seconds (the relay clamps it).
    pub expiry: i64,
    pub public: bool,
    pub title: &'a str,
    pub description: &'a str,
    pub tags: Vec<&'a str>,
    #[serde(rename = "keyEncoded")]
    pub key_encoded: &'a str,
    /// Extension: SHA-256 hex of the owner secret the creator keeps ("" =
    /// the room has no owner).
    #[serde(rename = "ownerHash", skip_serializing_if = "str::is_empty")]
    pub owner_hash: &'a str,
}

impl<'a> CreateRoom<'a> {
    /// Data checks 2–4 of PROTOCOL.md §2.1, in order.
    pub fn parse(data: &ValueRef<'a>) -> Result<CreateRoom<'a>, Reject> {
        let f = fields(data, "invalid create room data")?;
        let name = f.str("name");
        check_name(name)?;
        let password = f.str("password");
        if !password.is_empty() && password.len() != 64 {
            return Err(Reject::invalid("invalid password format"));
        }
        let owner_hash = f.str("ownerHash");
        if !owner_hash.is_empty() && !is_secret_hex(owner_hash) {
            return Err(texts::INVALID_OWNER_HASH);
        }
        Ok(CreateRoom {
            name,
            password,
            ephemeral: f.int("ephemeral"),
            expiry: f.int("expiry"),
            public: f.bool("public"),
            title: f.str("title"),
            description: f.str("description"),
            tags: f.str_array("tags"),
            key_encoded: f.str("keyEncoded"),
            owner_hash,
        })
    }
}

/// 0x02 JoinRoom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct JoinRoom<'a> {
    #[serde(rename = "roomId")]
    pub room_id: &'a str,
    pub name: &'a str,
    pub password: &'a str,
    /// Extension: a join ticket from the gateway's HTTP API, instead of `password`.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub ticket: &'a str,
}

impl<'a> JoinRoom<'a> {
    /// Data checks 2–3 of PROTOCOL.md §2.2, in order.
    pub fn parse(data: &ValueRef<'a>) -> Result<JoinRoom<'a>, Reject> {
        let f = fields(data, "invalid join room data")?;
        let name = f.str("name");
        check_name(name)?;
        Ok(JoinRoom {
            room_id: f.str("roomId"),
            name,
            password: f.str("password"),
            ticket: f.str("ticket"),
        })
    }
}

/// 0x03 SendMessage and 0x07 SendReaction: an encrypted payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Sealed<'a> {
    /// base64url IV.
    pub iv: &'a str,
    /// base64url AES-GCM ciphertext.
    pub ciphertext: &'a str,
}

impl<'a> Sealed<'a> {
    /// Data checks of §2.3 (`not_a_map` names the message for the E005 text).
    pub fn parse(data: &ValueRef<'a>, not_a_map: &'static str) -> Result<Sealed<'a>, Reject> {
        let f = fields(data, not_a_map)?;
        match (f.opt_str("iv"), f.opt_str("ciphertext")) {
            (Some(iv), Some(ciphertext)) if !iv.is_empty() && !ciphertext.is_empty() => {
                Ok(Sealed { iv, ciphertext })
            }
            _ => Err(Reject::invalid(
                "iv and ciphertext must be non-empty strings",
            )),
        }
    }

    /// SendMessage's data checks.
    pub fn parse_message(data: &ValueRef<'a>) -> Result<Sealed<'a>, Reject> {
        Sealed::parse(data, "invalid message data")
    }

    /// SendReaction's data checks.
    pub fn parse_reaction(data: &ValueRef<'a>) -> Result<Sealed<'a>, Reject> {
        Sealed::parse(data, "invalid reaction data")
    }
}

/// 0x05 Typing: plain `typing`, or (web clients) an encrypted `iv`/`ciphertext`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Typing<'a> {
    pub typing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iv: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<&'a str>,
}

impl<'a> Typing<'a> {
    /// §2.5: data must be a map; `typing` defaults to false.
    pub fn parse(data: &ValueRef<'a>) -> Result<Typing<'a>, Reject> {
        let f = fields(data, "invalid typing data")?;
        Ok(Typing {
            typing: f.bool("typing"),
            iv: f.opt_str("iv"),
            ciphertext: f.opt_str("ciphertext"),
        })
    }
}

/// 0x06 Pong: `t` as any integer; `None` when data is not a map (ignored).
pub fn parse_pong(data: &ValueRef<'_>) -> Option<i64> {
    Fields::of(data).map(|f| f.int("t"))
}

/// 0x08 SendFileMeta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct FileMeta<'a> {
    #[serde(rename = "transferId")]
    pub transfer_id: &'a str,
    /// base64url IV of the encrypted metadata.
    pub iv: &'a str,
    /// Encrypted metadata, **bin**.
    #[serde(with = "serde_bytes")]
    pub ciphertext: &'a [u8],
}

impl<'a> FileMeta<'a> {
    /// Data checks 3–4 of §6 Meta.
    pub fn parse(data: &ValueRef<'a>) -> Result<FileMeta<'a>, Reject> {
        let f = fields(data, "invalid file meta data")?;
        let meta = FileMeta {
            transfer_id: f.str("transferId"),
            iv: f.str("iv"),
            ciphertext: f.bin("ciphertext"),
        };
        if meta.transfer_id.is_empty() || meta.iv.is_empty() || meta.ciphertext.is_empty() {
            return Err(Reject::invalid(
                "transferId, iv, and ciphertext are required",
            ));
        }
        Ok(meta)
    }
}

/// 0x09 SendFileChunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct FileChunk<'a> {
    #[serde(rename = "transferId")]
    pub transfer_id: &'a str,
    /// Chunk number; any integer, not range-checked.
    pub index: i64,
    /// Raw 12-byte IV, **bin**.
    #[serde(with = "serde_bytes")]
    pub iv: &'a [u8],
    /// Encrypted chunk with its GCM tag, **bin**.
    #[serde(with = "serde_bytes")]
    pub data: &'a [u8],
}

impl<'a> FileChunk<'a> {
    /// Data checks 2–4 of §6 Chunk.
    pub fn parse(data: &ValueRef<'a>) -> Result<FileChunk<'a>, Reject> {
        let f = fields(data, "invalid file chunk data")?;
        let transfer_id = f.str("transferId");
        if transfer_id.is_empty() {
            return Err(Reject::invalid("missing transferId"));
        }
        let chunk = FileChunk {
            transfer_id,
            index: f.int("index"),
            iv: f.bin("iv"),
            data: f.bin("data"),
        };
        if chunk.iv.is_empty() || chunk.data.is_empty() {
            return Err(Reject::invalid("iv and data must be non-empty"));
        }
        Ok(chunk)
    }
}

/// 0x0A Complete, 0x0B Cancel and 0x0C Ack: just a transfer id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct TransferRef<'a> {
    #[serde(rename = "transferId")]
    pub transfer_id: &'a str,
}

impl<'a> TransferRef<'a> {
    fn parse(
        data: &ValueRef<'a>,
        not_a_map: &'static str,
        empty: &'static str,
    ) -> Result<TransferRef<'a>, Reject> {
        let f = fields(data, not_a_map)?;
        let transfer_id = f.str("transferId");
        if transfer_id.is_empty() {
            return Err(Reject::invalid(empty));
        }
        Ok(TransferRef { transfer_id })
    }

    /// SendFileComplete's data checks.
    pub fn parse_complete(data: &ValueRef<'a>) -> Result<TransferRef<'a>, Reject> {
        TransferRef::parse(data, "invalid file complete data", "transferId is required")
    }

    /// SendFileCancel's data checks.
    pub fn parse_cancel(data: &ValueRef<'a>) -> Result<TransferRef<'a>, Reject> {
        TransferRef::parse(data, "invalid file cancel data", "transferId is required")
    }

    /// SendFileAck's data checks.
    pub fn parse_ack(data: &ValueRef<'a>) -> Result<TransferRef<'a>, Reject> {
        TransferRef::parse(data, "invalid file ack data", "missing transferId")
    }
}

/// Length of an owner secret and of its hash, in lowercase hex characters.
pub const SECRET_HEX_LEN: usize = 64;

/// Whether `s` is 64 lowercase hex characters (an owner secret, an owner
/// hash).
pub fn is_secret_hex(s: &str) -> bool {
    s.len() == SECRET_HEX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why a member was kicked; sent as RoomClosed's and MemberLeft's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KickReason {
    /// The owner removed the member.
    #[default]
    Kicked,
    /// The room key was rotated and the member's client cannot receive the
    /// new one: it needs a new share code.
    Rekeyed,
}

impl KickReason {
    /// The reason as it travels on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            KickReason::Kicked => "kicked",
            KickReason::Rekeyed => "rekeyed",
        }
    }

    /// Parses a wire reason.
    pub fn parse(s: &str) -> Option<KickReason> {
        match s {
            "kicked" => Some(KickReason::Kicked),
            "rekeyed" => Some(KickReason::Rekeyed),
            _ => None,
        }
    }
}

/// 0x40 Kick (extension): the owner removes a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kick<'a> {
    /// The owner secret, 64 lowercase hex characters.
    pub owner: &'a str,
    /// The member to remove.
    pub id: &'a str,
    pub reason: KickReason,
}

impl<'a> Kick<'a> {
    /// Checks the fields' shapes (the owner secret is checked against the
    /// room by the relay).
    pub fn parse(data: &ValueRef<'a>) -> Result<(Kick<'a>, crate::member::MemberId), Reject> {
        let f = fields(data, "invalid kick data")?;
        let owner = f.str("owner");
        if !is_secret_hex(owner) {
            return Err(texts::INVALID_OWNER);
        }
        let id = f.str("id");
        let member = crate::member::MemberId::parse(id).ok_or(texts::INVALID_MEMBER_ID)?;
        let reason = match f.opt_str("reason") {
            None | Some("") => KickReason::Kicked,
            Some(r) => KickReason::parse(r).ok_or(Reject::invalid("invalid kick reason"))?,
        };
        Ok((Kick { owner, id, reason }, member))
    }
}

/// 0x41 SendDirect (extension): an encrypted message for one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Direct<'a> {
    /// The addressed member.
    pub to: &'a str,
    /// base64url IV.
    pub iv: &'a str,
    /// base64url AES-GCM ciphertext.
    pub ciphertext: &'a str,
}

impl<'a> Direct<'a> {
    /// Checks the fields; `max_bytes` bounds iv and ciphertext together.
    pub fn parse(
        data: &ValueRef<'a>,
        max_bytes: usize,
    ) -> Result<(Direct<'a>, crate::member::MemberId), Reject> {
        let f = fields(data, "invalid direct data")?;
        let to = f.str("to");
        let member = crate::member::MemberId::parse(to).ok_or(texts::INVALID_MEMBER_ID)?;
        let (iv, ciphertext) = match (f.opt_str("iv"), f.opt_str("ciphertext")) {
            (Some(iv), Some(c)) if !iv.is_empty() && !c.is_empty() => (iv, c),
            _ => {
                return Err(Reject::invalid(
                    "iv and ciphertext must be non-empty strings",
                ))
            }
        };
        if iv.len().saturating_add(ciphertext.len()) > max_bytes {
            return Err(Reject::invalid("direct message too large"));
        }
        Ok((Direct { to, iv, ciphertext }, member))
    }
}

/// 0x42 SetRoomSecret (extension): the owner sets a new join password, or
/// hands the owner capability over, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct SetRoomSecret<'a> {
    /// The owner secret, 64 lowercase hex characters.
    pub owner: &'a str,
    /// The new password's SHA-256 hex (64 characters), if it changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<&'a str>,
    /// The new owner hash, if the capability is handed over.
    #[serde(rename = "ownerHash", skip_serializing_if = "Option::is_none")]
    pub owner_hash: Option<&'a str>,
}

impl<'a> SetRoomSecret<'a> {
    /// Checks the fields' shapes.
    pub fn parse(data: &ValueRef<'a>) -> Result<SetRoomSecret<'a>, Reject> {
        let f = fields(data, "invalid room secret data")?;
        let owner = f.str("owner");
        if !is_secret_hex(owner) {
            return Err(texts::INVALID_OWNER);
        }
        let password = f.opt_str("password").filter(|p| !p.is_empty());
        if password.is_some_and(|p| p.len() != 64 || !p.is_ascii()) {
            return Err(Reject::invalid("invalid password format"));
        }
        let owner_hash = f.opt_str("ownerHash").filter(|h| !h.is_empty());
        if owner_hash.is_some_and(|h| !is_secret_hex(h)) {
            return Err(texts::INVALID_OWNER_HASH);
        }
        Ok(SetRoomSecret {
            owner,
            password,
            owner_hash,
        })
    }
}
