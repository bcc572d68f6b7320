//! The relay's limits and timings, each a named value (documented in the
//! README's configuration table; binaries fill it from flags and `ARTHAS_*`
//! environment variables).

use std::time::Duration;

/// Everything a relay node is configured with.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// This node's id (presence entries, logs).
    pub node_id: String,
    /// Allowed `Origin` values for the WebSocket upgrade, raw comma list
    /// (empty: every origin, including none, is allowed).
    pub allowed_origins: String,
    /// Proxies whose X-Forwarded-For entries are believed (none: the TCP
    /// peer is the client).
    pub trusted_proxies: edge::TrustedProxies,
    /// Largest inbound message; larger ones close the connection with 1009.
    pub max_message_bytes: usize,
    /// A message whose first byte arrived must be complete within this
    /// (fragmented or slow); otherwise the connection closes with 4003.
    pub message_timeout: Duration,
    /// Limits on HTTP request heads, the WebSocket handshake included
    /// (header read timeout against slowloris, head size cap).
    pub http: edge::http::HttpLimits,
    /// Longest file transfer id a client may use (it is kept while the
    /// transfer runs and travels in bus headers), bytes; at most
    /// [`store::MAX_TRANSFER_ID_BYTES`] (a larger value acts as that).
    pub max_transfer_id_bytes: usize,
    /// Largest directed message (extension SendDirect: iv and ciphertext
    /// together), bytes; larger is E005 "direct message too large".
    pub max_direct_bytes: usize,
    /// How often the server sends a WebSocket ping and an application Ping.
    pub ping_interval: Duration,
    /// A connection with no WebSocket pong for this long is closed (4002).
    pub read_timeout: Duration,
    /// Longest time one frame may take to write.
    pub write_timeout: Duration,
    /// Most payload bytes queued to one connection; overflow closes it (4001).
    pub max_outbound_queue_bytes: usize,
    /// Accepted chat messages (SendMessage) per window per connection.
    pub chat_rate_limit: usize,
    /// The chat rate window.
    pub chat_rate_window: Duration,
    /// How often this node checks its rooms for expiry and the warning.
    pub expiry_sweep_interval: Duration,
    /// The expiry warning goes out this long before `expiresAt`.
    pub expiry_warning_lead: Duration,
    /// An active file transfer older than this is forgotten.
    pub file_transfer_stale: Duration,
    /// On shutdown, connections are closed (1001) spread over this window.
    pub drain_window: Duration,
    /// Most open WebSocket connections on this node; more get HTTP 503.
    pub max_connections: usize,
    /// Most open WebSocket connections per client key (IPv4 address, IPv6
    /// /64) on this node; more get HTTP 429.
    pub max_connections_per_ip: usize,
    /// WebSocket handshakes per client key per second (as many at once);
    /// more get HTTP 429.
    pub handshakes_per_ip_per_sec: u64,
    /// Most CreateRoom/JoinRoom requests worked on at once on this node;
    /// more are refused with E005 (retry), and while all are taken new
    /// WebSocket handshakes get HTTP 503 with `Retry-After`.
    pub max_joins_in_flight: usize,
    /// Most second rollbacks of failed joins waiting on this node (each
    /// runs `join_gate::ROLLBACK_RECHECK` after its join failed); beyond
    /// it they are dropped, counted and logged.
    pub join_rollback_queue: usize,
    /// The per-connection budgets of client messages beyond chat.
    pub budgets: MessageBudgets,
    /// How often this node heartbeats and sweeps dead nodes.
    pub heartbeat_interval: Duration,
    /// A node whose heartbeat is older than this is dead: its members are
    /// removed and announced as gone.
    pub heartbeat_ttl: Duration,
    /// After the store lost this relay's state, the relay waits a random
    /// delay below this before writing back its rooms and members (so
    /// relays do not all hit a Redis that just came back at once).
    pub heal_jitter: Duration,
    /// The room linger ([`store::linger`]): a room stays subscribed (and, on
    /// Redis, recorded in this node's room set: the relay hands the same
    /// value to its engine) this long after its last local member left, so
    /// members who leave and come back cost no round trips; off lets it go
    /// at once.
    pub room_linger: store::RoomLinger,
    /// Where "now" comes from (room expiry, message timestamps); the system
    /// clock but in tests.
    pub clock: store::SharedClock,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            node_id: "local".into(),
            allowed_origins: String::new(),
            trusted_proxies: edge::TrustedProxies::none(),
            max_message_bytes: 102_400,
            message_timeout: Duration::from_secs(30),
            http: edge::http::HttpLimits::default(),
            max_transfer_id_bytes: 64,
            max_direct_bytes: 65_536,
            ping_interval: Duration::from_secs(25),
            read_timeout: Duration::from_secs(40),
            write_timeout: Duration::from_secs(10),
            max_outbound_queue_bytes: 8 * 1024 * 1024,
            chat_rate_limit: 10,
            chat_rate_window: Duration::from_secs(10),
            room_linger: store::RoomLinger::new(Duration::from_secs(5)),
            expiry_sweep_interval: Duration::from_secs(1),
            expiry_warning_lead: Duration::from_secs(300),
            file_transfer_stale: Duration::from_secs(90),
            drain_window: Duration::ZERO,
            max_connections: 19_000,
            max_connections_per_ip: 100,
            handshakes_per_ip_per_sec: 20,
            max_joins_in_flight: 128,
            join_rollback_queue: 4096,
            budgets: MessageBudgets::default(),
            heartbeat_interval: Duration::from_secs(3),
            heartbeat_ttl: Duration::from_secs(10),
            heal_jitter: Duration::from_secs(1),
            clock: store::clock::system(),
        }
    }
}

/// Per-connection budgets of the client messages the reference never
/// limited (PROTOCOL.md §8): each a sustained rate whose whole allowance may
/// be spent at once, far above what a normal client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBudgets {
    /// SendReaction per minute (E004 beyond).
    pub reactions_per_minute: u64,
    /// Typing per minute (E004 beyond).
    pub typing_per_minute: u64,
    /// CreateRoom and JoinRoom per minute (E004 beyond); a leave needs a
    /// join before it, so it is not counted.
    pub room_changes_per_minute: u64,
    /// File frames (meta, chunk, complete, cancel, ack), bytes per second
    /// sustained; beyond it the relay stops reading the connection until
    /// the rate allows (TCP back-pressure).
    pub file_bytes_per_sec: u64,
    /// File bytes that may arrive at once before pacing starts.
    pub file_burst_bytes: u64,
}

impl Default for MessageBudgets {
    fn default() -> Self {
        MessageBudgets {
            reactions_per_minute: 120,
            typing_per_minute: 120,
            room_changes_per_minute: 60,
            file_bytes_per_sec: 4 * 1024 * 1024,
            file_burst_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The origin allow-list, parsed once (PROTOCOL.md §1).
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Exact, case-sensitive entries; empty = allow everything.
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// Splits on commas, trims, drops empty entries, keeps order.
    pub fn parse(raw: &str) -> OriginPolicy {
        let allowed: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if allowed.is_empty() && !raw.trim().is_empty() {
            tracing::warn!("allowed origins has no usable entries: every origin is allowed");
        }
        OriginPolicy { allowed }
    }

    /// Whether an upgrade with this `Origin` header (or none) is allowed.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        if self.allowed.is_empty() {
            return true;
        }
        origin.is_some_and(|o| self.allowed.iter().any(|a| a == o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_follow_the_reference_rules() {
        let any = OriginPolicy::parse("");
        assert!(any.allows(None) && any.allows(Some("x")));
        let blank = OriginPolicy::parse(" , ,");
        assert!(blank.allows(None));
        let list = OriginPolicy::parse(" https://a.example , arthas-cli,");
        assert!(list.allows(Some("https://a.example")));
        assert!(list.allows(Some("arthas-cli")));
        assert!(!list.allows(Some("https://A.example")));
        assert!(!list.allows(Some("http://a.example")));
        assert!(!list.allows(None));
        let star = OriginPolicy::parse("*");
        assert!(star.allows(Some("*")) && !star.allows(Some("https://a.example")));
    }
}
