//! Error codes and the reason a request was refused.

use std::borrow::Cow;
use std::fmt;

/// The error codes of the protocol (the `code` field of an Error frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Room not found.
    RoomNotFound,
    /// Room is full.
    RoomFull,
    /// Not in a room, or the room no longer exists.
    NotInRoom,
    /// Rate limited.
    RateLimited,
    /// Invalid message (the catch-all, "already in a room" included).
    Invalid,
    /// Wrong password.
    WrongPassword,
    /// Room has expired.
    RoomExpired,
    /// Extension: an owner action without the room's owner secret.
    NotOwner,
    /// Hub is full: the room was created, but private.
    HubFull,
    /// Invalid public listing metadata: the room was created, but private.
    InvalidListing,
    /// The random-match module is disabled (sent in a 0x2B envelope).
    MatchDisabled,
}

impl ErrorCode {
    /// The code as it travels on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::RoomNotFound => "E001",
            ErrorCode::RoomFull => "E002",
            ErrorCode::NotInRoom => "E003",
            ErrorCode::RateLimited => "E004",
            ErrorCode::Invalid => "E005",
            ErrorCode::WrongPassword => "E006",
            ErrorCode::RoomExpired => "E007",
            ErrorCode::NotOwner => "E008",
            ErrorCode::HubFull => "E010",
            ErrorCode::InvalidListing => "E011",
            ErrorCode::MatchDisabled => "M001",
        }
    }

    /// Parses a wire code.
    pub fn parse(code: &str) -> Option<ErrorCode> {
        Some(match code {
            "E001" => ErrorCode::RoomNotFound,
            "E002" => ErrorCode::RoomFull,
            "E003" => ErrorCode::NotInRoom,
            "E004" => ErrorCode::RateLimited,
            "E005" => ErrorCode::Invalid,
            "E006" => ErrorCode::WrongPassword,
            "E007" => ErrorCode::RoomExpired,
            "E008" => ErrorCode::NotOwner,
            "E010" => ErrorCode::HubFull,
            "E011" => ErrorCode::InvalidListing,
            "M001" => ErrorCode::MatchDisabled,
            _ => return None,
        })
    }
}

/// A refused request: the code and the exact text the client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Which error.
    pub code: ErrorCode,
    /// The human-readable text (`msg`), exactly as the reference server words it.
    pub msg: Cow<'static, str>,
}

impl Reject {
    /// A refusal with a fixed text.
    pub const fn new(code: ErrorCode, msg: &'static str) -> Reject {
        Reject {
            code,
            msg: Cow::Borrowed(msg),
        }
    }

    /// A refusal with a computed text.
    pub fn owned(code: ErrorCode, msg: String) -> Reject {
        Reject {
            code,
            msg: Cow::Owned(msg),
        }
    }

    /// E005 with the given text.
    pub const fn invalid(msg: &'static str) -> Reject {
        Reject::new(ErrorCode::Invalid, msg)
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code.as_str(), self.msg)
    }
}

impl std::error::Error for Reject {}

/// The fixed refusals of the protocol, named for their meaning.
pub mod texts {
    use super::{ErrorCode, Reject};

    pub const INVALID_FORMAT: Reject = Reject::invalid("invalid message format");
    pub const ALREADY_IN_ROOM: Reject = Reject::invalid("already in a room");
    pub const NOT_IN_ROOM: Reject = Reject::new(ErrorCode::NotInRoom, "not in a room");
    pub const ROOM_NOT_FOUND: Reject = Reject::new(ErrorCode::RoomNotFound, "room not found");
    pub const ROOM_EXPIRED: Reject = Reject::new(ErrorCode::RoomExpired, "room has expired");
    pub const ROOM_FULL: Reject = Reject::new(ErrorCode::RoomFull, "room is full");
    pub const WRONG_PASSWORD: Reject = Reject::new(ErrorCode::WrongPassword, "wrong password");
    pub const TOO_MANY_GUESSES: Reject = Reject::new(
        ErrorCode::RateLimited,
        "too many wrong passwords, try again later",
    );
    pub const RATE_LIMITED: Reject =
        Reject::new(ErrorCode::RateLimited, "rate limited, please slow down");
    pub const FAILED_TO_CREATE: Reject = Reject::invalid("failed to create room");
    pub const ACTIVE_TRANSFER: Reject = Reject::invalid("already has active transfer");
    /// Extension: a transfer id longer than the relay's `max-transfer-id-bytes`.
    pub const TRANSFER_ID_TOO_LONG: Reject = Reject::invalid("transferId is too long");
    pub const TRANSFER_MISMATCH: Reject =
        Reject::invalid("transferId does not match active transfer");
    pub const MATCH_DISABLED: Reject =
        Reject::new(ErrorCode::MatchDisabled, "random match is disabled");
    pub const HUB_FULL: Reject =
        Reject::new(ErrorCode::HubFull, "hub is full, room created as private");
    /// Our extension: the creator's public listings per hour are spent (the
    /// room is created, private).
    pub const LISTING_RATE_LIMITED: Reject = Reject::new(
        ErrorCode::RateLimited,
        "too many public rooms, room created as private",
    );
    pub const KEY_REQUIRED: Reject = Reject::new(
        ErrorCode::InvalidListing,
        "keyEncoded is required for public rooms",
    );
    /// Extension: a listing's `keyEncoded` longer than a room key's
    /// base64url can be (it is stored in the public share code).
    pub const KEY_TOO_LONG: Reject =
        Reject::new(ErrorCode::InvalidListing, "keyEncoded is too long");
    /// Our extension: the bus (Redis) is unreachable, so the message was not sent.
    pub const UNAVAILABLE: Reject = Reject::invalid("service temporarily unavailable, retry");
    /// Our extension: the message was published, but fewer relays received
    /// it than hold members of the room (a Redis failover or a lost
    /// subscription): some members may not have it.
    pub const MAYBE_UNDELIVERED: Reject =
        Reject::invalid("message may not have reached every member, retry");
    /// Extension: an owner action whose secret does not hash to the room's
    /// owner hash (or the room has no owner).
    pub const NOT_OWNER: Reject = Reject::new(ErrorCode::NotOwner, "not the room owner");
    /// Extension: an owner secret that is not 64 lowercase hex characters.
    pub const INVALID_OWNER: Reject = Reject::invalid("owner must be 64 hex characters");
    /// Extension: an `ownerHash` that is not 64 lowercase hex characters.
    pub const INVALID_OWNER_HASH: Reject = Reject::invalid("invalid ownerHash");
    /// Extension: a member id that is not 8 lowercase hex characters.
    pub const INVALID_MEMBER_ID: Reject = Reject::invalid("invalid member id");
    /// Our extension: a ticket that is unknown, used, expired or for another room.
    pub const INVALID_TICKET: Reject = Reject::new(ErrorCode::WrongPassword, "invalid ticket");
}
