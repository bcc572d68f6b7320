//! Every Redis key and channel name the engines use, in one place.
//!
//! All keys of a room share the hash tag `{roomId}`, so a Lua script that
//! touches a room's keys touches one cluster slot. Structures that span
//! rooms or nodes live under their own tags and are only ever updated by
//! separate commands (never from inside a room's script).

/// A room's record (hash): `created`, `expiresAt`, `ephemeral`, `password`,
/// `capacity`, `listed`, `inDirectory`, `keepEmpty` (survives having no
/// members: a daily topic), and `seq` (the join counter that orders the
/// member list).
pub fn room(room_id: &str) -> String {
    format!("arthas:{{{room_id}}}:room")
}

/// A room's members (hash): member id -> msgpack
/// `{name, color, node, joinedAt, seq}`.
pub fn members(room_id: &str) -> String {
    format!("arthas:{{{room_id}}}:members")
}

/// How many of a room's members each relay node holds (hash): node id ->
/// count. Tells a leave whether it removed the node's last member of the
/// room, so the node's room set stays small.
pub fn room_nodes(room_id: &str) -> String {
    format!("arthas:{{{room_id}}}:nodes")
}

/// A listed room's recent chat messages (sorted set): score = unix ms,
/// member = a random token; trimmed to the 5-minute window and capped.
pub fn activity(room_id: &str) -> String {
    format!("arthas:{{{room_id}}}:activity")
}

/// The room's bus channel (PUBLISH/SUBSCRIBE, or SPUBLISH/SSUBSCRIBE on a
/// cluster, where the tag puts it in the room's slot).
pub fn channel(room_id: &str) -> String {
    format!("arthas:{{{room_id}}}")
}

/// The room id of a channel name made by [`channel`].
pub fn room_of_channel(channel: &[u8]) -> Option<&str> {
    let inner = channel.strip_prefix(b"arthas:{")?.strip_suffix(b"}")?;
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
        for key in [room("R"), members("R"), room_nodes("R"), activity("R")] {
            assert!(key.starts_with("arthas:{R}:"), "{key}");
        }
    }
}
