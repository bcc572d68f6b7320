//! Every Redis key and channel name the engines use, in one place.
//!
//! All keys of a room share the hash tag `{roomId}`, so a Lua script that
//! touches a room's keys touches one cluster slot. Structures that span
//! rooms or nodes live under their own tags and are only ever updated by
//! separate commands (never from inside a room's script).
//!
//! # Layout
//!
//! This table is the reference for what Redis holds (a tool that rebuilds
//! or checks Redis state starts here); `R` is a room id, `N` a relay node id.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `arthas:{R}:room` | hash | `created`, `expiresAt`, `ephemeral`, `password` (argon2id PHC or empty), `capacity`, `listed`, `inDirectory`, `keepEmpty` (a daily topic: survives having no members), `seq` (join counter) |
//! | `arthas:{R}:members` | hash | member id -> `<seq>:<msgpack [name, color, node, joinedAt]>`; `seq` (the join counter) gives the join order |
//! | `arthas:{R}:nodes` | hash | relay node -> how many of the room's members it holds |
//! | `arthas:{R}:activity` | sorted set | listed rooms: one entry per chat message (score = unix ms), trimmed to 5 minutes and 10,000 entries |
//! | `arthas:{R}` | channel | `BusMessage::to_wire` payloads (PUBLISH, or SPUBLISH on a cluster) |
//! | `arthas:node:{N}` | string, TTL | relay N's heartbeat deadline (for operators) |
//! | `arthas:node:{N}:epoch` | string, TTL | the token of the engine that last recorded relay N (its incarnation), or `swept` once another relay swept N as dead; missing after Redis lost its data (see `RoomStore::node_state`); kept for `node_epoch_ttl` |
//! | `arthas:node:{N}:rooms` | set | rooms where relay N has members, or had them less than the room linger ago (read by the sweeper) |
//! | `arthas:nodes` | sorted set | relay -> heartbeat deadline (Redis server ms); the sweep's one range query; a join registers a relay not known to be in it |
//! | `arthas:online{arthas:nodes}` | hash | relay -> WebSockets at its last heartbeat (the directory's online count; same slot as `arthas:nodes`) |
//! | `arthas:{~directory}:listings` | hash | room id -> msgpack listing (the public directory) |
//! | `arthas:{~directory}:regular` | set | listed rooms that are not daily topics (what `max_listed` counts) |
//! | `arthas:{~directory}:daily:{D}` | string, TTL | the room listed as UTC day D's topic; set with its listing in one script, so one topic per day |
//! | `arthas:{R}:guesses` | string, TTL | a password room's guesses in the window (wrong, or being verified); only for rooms that exist |
//! | `arthas:{R}:guesses:{client}` | string, TTL | one client key's guesses on the room in the window |
//! | `arthas:hit:{key}` | string, TTL | fixed-window counter or budget (rate limits, per-client creation and guess budgets) |
//! | `arthas:claim:{key}` | string, TTL | claimed single-use token |
//!
//! Lifetimes: a created room's keys carry the unjoined TTL; the first join
//! sets them to `expiresAt + expired_room_grace` (EXPIREAT), or removes the
//! TTL for a room that never expires. An expired room therefore answers
//! E007 during the grace and E001 after it. The last leave, a destroy or a
//! sweep that empties the room deletes its keys and its listing, except for
//! a room kept while empty (the daily topic): it is created with its
//! lifetime (`expiresAt` plus the grace) as its TTL and lives until then or
//! a destroy. Listings of rooms whose keys expired are pruned when the
//! directory is read.
//!
//! Presence: a relay's first member in a room adds the room to
//! `arthas:node:{N}:rooms` (once per room while it lingers there) and, when
//! no heartbeat of N is known to hold, registers N in `arthas:nodes` (`nx`);
//! the sweeper reads both when N's deadline passes.

/// `arthas:{<room_id>}:<what>`, built without `fmt` (several per join).
fn of_room(room_id: &str, what: &str) -> String {
    ["arthas:{", room_id, "}:", what].concat()
}

/// A room's record (hash): `created`, `expiresAt`, `ephemeral`, `password`,
/// `capacity`, `listed`, `inDirectory`, `keepEmpty` (survives having no
/// members: a daily topic), and `seq` (the join counter that orders the
/// member list).
pub fn room(room_id: &str) -> String {
    of_room(room_id, "room")
}

/// A room's members (hash): member id -> `<seq>:<record>`, where `seq` is
/// the room's join counter when the member joined (it orders the member
/// list) and `record` the msgpack array `[name, color, node, joinedAt]` the
/// relay packed. join.lua only prefixes the counter, so no script packs or
/// (on the hot path) unpacks msgpack. Records of an older layout (a msgpack
/// map `{name, color, node, joinedAt, seq}`, first byte not a digit) are
/// still read.
pub fn members(room_id: &str) -> String {
    of_room(room_id, "members")
}

/// How many of a room's members each relay node holds (hash): node id ->
/// count. Tells a leave whether it removed the node's last member of the
/// room, so the node's room set stays small.
pub fn room_nodes(room_id: &str) -> String {
    of_room(room_id, "nodes")
}

/// A listed room's recent chat messages (sorted set): score = unix ms,
/// member = a random token; trimmed to the 5-minute window and capped.
pub fn activity(room_id: &str) -> String {
    of_room(room_id, "activity")
}

/// A password room's guesses in the current window (string with a TTL):
/// wrong ones, and those being verified. Made only for a room that exists.
pub fn room_guesses(room_id: &str) -> String {
    of_room(room_id, "guesses")
}

/// One client's guesses on a password room in the current window (string
/// with a TTL); `client` is an client key (an IPv4 address or
/// an IPv6 /64).
pub fn room_client_guesses(room_id: &str, client: &str) -> String {
    format!("arthas:{{{room_id}}}:guesses:{client}")
}

/// What a room's bus channel starts with; the room id and `}` follow.
pub const CHANNEL_PREFIX: &str = "arthas:{";

/// The room's bus channel (PUBLISH/SUBSCRIBE, or SPUBLISH/SSUBSCRIBE on a
/// cluster, where the tag puts it in the room's slot).
pub fn channel(room_id: &str) -> String {
    [CHANNEL_PREFIX, room_id, "}"].concat()
}

/// The room id of a channel name made by [`channel`].
pub fn room_of_channel(channel: &[u8]) -> Option<&str> {
    let inner = channel
        .strip_prefix(CHANNEL_PREFIX.as_bytes())?
        .strip_suffix(b"}")?;
    std::str::from_utf8(inner).ok()
}

/// A relay's heartbeat (string with a TTL): its deadline in unix ms. For
/// operators; the sweep reads [`NODES`].
pub fn node(node_id: &str) -> String {
    format!("arthas:node:{{{node_id}}}")
}

/// Rooms where a relay node has (or recently had) members (set). Read by the
/// sweeper when the node dies.
pub fn node_rooms(node_id: &str) -> String {
    format!("arthas:node:{{{node_id}}}:rooms")
}

/// Whose state the store holds for a relay (string with a TTL): the token
/// of the engine that recorded it, or [`SWEPT`] after a sweep. Missing
/// means Redis lost it.
pub fn node_epoch(node_id: &str) -> String {
    format!("arthas:node:{{{node_id}}}:epoch")
}

/// The value [`node_epoch`] holds once the node was swept as dead.
pub const SWEPT: &str = "swept";

/// Every relay node known to be alive (sorted set): node id -> heartbeat
/// deadline in Redis server time (unix ms). One key, so a sweeper finds the
/// dead nodes with one range query on any topology.
pub const NODES: &str = "arthas:nodes";

/// Connections per relay (hash): node id -> WebSockets at its last
/// heartbeat. The `{arthas:nodes}` tag puts it in [`NODES`]'s slot, so one
/// script reads both.
pub const ONLINE: &str = "arthas:online{arthas:nodes}";

/// The public directory (hash): room id -> msgpack listing. `~` cannot occur
/// in a NanoID, so the tag never collides with a room's.
pub const LISTINGS: &str = "arthas:{~directory}:listings";

/// Listed rooms that are not daily topics (set): what `max_listed` counts.
pub const LISTED_REGULAR: &str = "arthas:{~directory}:regular";

/// The mark of UTC day `day`'s topic (string with a TTL): the listed room's
/// id. In the directory's slot, so one script sets it with the listing.
pub fn daily_topic(day: i64) -> String {
    format!("arthas:{{~directory}}:daily:{day}")
}

/// A fixed-window counter (string with a TTL).
pub fn counter(key: &str) -> String {
    format!("arthas:hit:{key}")
}

/// A claimed single-use token (string with a TTL).
pub fn claim(key: &str) -> String {
    format!("arthas:claim:{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip_to_room_ids() {
        let ch = channel("V1StGXR8_Z5jdHi6B-myT");
        assert_eq!(ch, "arthas:{V1StGXR8_Z5jdHi6B-myT}");
        assert_eq!(
            room_of_channel(ch.as_bytes()),
            Some("V1StGXR8_Z5jdHi6B-myT")
        );
        assert_eq!(room_of_channel(b"other:{x}"), None);
    }

    #[test]
    fn every_key_of_a_room_carries_its_hash_tag() {
        for key in [
            room("R"),
            members("R"),
            room_nodes("R"),
            activity("R"),
            room_guesses("R"),
            room_client_guesses("R", "2001:db8::/64"),
        ] {
            assert!(key.starts_with("arthas:{R}:"), "{key}");
        }
        assert_eq!(room("R"), "arthas:{R}:room");
        assert_eq!(members("R"), "arthas:{R}:members");
        assert_eq!(room_nodes("R"), "arthas:{R}:nodes");
        assert_eq!(activity("R"), "arthas:{R}:activity");
        assert_eq!(room_guesses("R"), "arthas:{R}:guesses");
    }
}
