//! Message type numbers (the `type` field of the envelope).

/// Client -> server: create a room and join it.
pub const CREATE_ROOM: u8 = 0x01;
/// Client -> server: join an existing room.
pub const JOIN_ROOM: u8 = 0x02;
/// Client -> server: an encrypted chat message.
pub const SEND_MESSAGE: u8 = 0x03;
/// Client -> server: leave the current room.
pub const LEAVE_ROOM: u8 = 0x04;
/// Client -> server: typing indicator (plain or encrypted).
pub const TYPING: u8 = 0x05;
/// Client -> server: application-level answer to [`PING`].
pub const PONG: u8 = 0x06;
/// Client -> server: an encrypted reaction.
pub const SEND_REACTION: u8 = 0x07;
/// Client -> server: start of a file transfer (encrypted metadata).
pub const SEND_FILE_META: u8 = 0x08;
/// Client -> server: one encrypted file chunk.
pub const SEND_FILE_CHUNK: u8 = 0x09;
/// Client -> server: the transfer is complete.
pub const SEND_FILE_COMPLETE: u8 = 0x0A;
/// Client -> server: the transfer is cancelled.
pub const SEND_FILE_CANCEL: u8 = 0x0B;
/// Client -> server: a receiver acknowledges a transfer.
pub const SEND_FILE_ACK: u8 = 0x0C;
/// Client -> server: first and last number of the (disabled) random-match module.
pub const MATCH_FIRST: u8 = 0x20;
/// See [`MATCH_FIRST`].
pub const MATCH_LAST: u8 = 0x2F;

/// Client -> server (extension): the room owner removes a member.
pub const KICK: u8 = 0x40;
/// Client -> server (extension): an encrypted message for one member only.
pub const SEND_DIRECT: u8 = 0x41;
/// Client -> server (extension): the owner changes the join password or
/// hands the owner capability over.
pub const SET_ROOM_SECRET: u8 = 0x42;

/// Server -> client: the room was created.
pub const ROOM_CREATED: u8 = 0x10;
/// Server -> client: you are in the room; the member list ends with you.
pub const ROOM_JOINED: u8 = 0x11;
/// Server -> client: someone joined.
pub const MEMBER_JOINED: u8 = 0x12;
/// Server -> client: someone left.
pub const MEMBER_LEFT: u8 = 0x13;
/// Server -> client: a chat message.
pub const RELAY_MESSAGE: u8 = 0x14;
/// Server -> client: someone is typing.
pub const MEMBER_TYPING: u8 = 0x15;
/// Server -> client: the room was closed (expired).
pub const ROOM_CLOSED: u8 = 0x16;
/// Server -> client: an error `{code, msg}`.
pub const ERROR: u8 = 0x17;
/// Server -> client: application-level ping `{t}`.
pub const PING: u8 = 0x18;
/// Server -> client: a reaction.
pub const RELAY_REACTION: u8 = 0x19;
/// Server -> client: a file transfer starts.
pub const RELAY_FILE_META: u8 = 0x1A;
/// Server -> client: a file chunk.
pub const RELAY_FILE_CHUNK: u8 = 0x1B;
/// Server -> client: a file transfer completed.
pub const RELAY_FILE_COMPLETE: u8 = 0x1C;
/// Server -> client: a file transfer was cancelled.
pub const RELAY_FILE_CANCEL: u8 = 0x1D;
/// Server -> client: a receiver acknowledged your transfer.
pub const RELAY_FILE_ACK: u8 = 0x1E;
/// Server -> client: the match module's error envelope (used for "disabled").
pub const MATCH_ERROR: u8 = 0x2B;
/// Server -> client (extension): a directed message from another member.
pub const RELAY_DIRECT: u8 = 0x50;
/// Server -> client (extension): what a SetRoomSecret changed.
pub const ROOM_SECRET_SET: u8 = 0x51;
