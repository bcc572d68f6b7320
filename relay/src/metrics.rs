//! Prometheus metrics of a relay. Labels carry message kinds, codes and
//! reasons from closed sets, never room ids, member ids or anything a client
//! sent.
//!
//! Every labelled series exists from the start (a counter that has never
//! moved reads 0, so `rate()` and alerts see it), and the code that counts
//! holds pre-resolved handles: no label lookup happens per message. The
//! delivery path ([`Metrics::delivered`]) costs a few atomic additions and
//! one histogram observation per bus message, whatever the number of
//! recipients. The names and help texts are listed in docs/OPERATIONS.md
//! ("Metrics reference"); the repository's `tests/observability.rs` scrapes
//! a relay and a gateway and compares.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use protocol::client::MessageType;
use protocol::{kind, ErrorCode};

/// Close codes a relay ends connections with (`code` label).
pub const CLOSE_CODES: [u16; 12] = [
    1000, 1001, 1002, 1005, 1006, 1007, 1009, 1011, 1013, 4001, 4002, 4003,
];

/// Why a WebSocket upgrade was refused (`reason` label).
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    /// `--max-connections` reached (503).
    Limit,
    /// The relay drains (503).
    Draining,
    /// The Origin is not allowed (403).
    Origin,
    /// `--max-connections-per-ip` reached for the client's address (429).
    IpLimit,
    /// `--handshakes-per-ip-per-sec` exceeded for the client's address (429).
    HandshakeRate,
    /// Every `--max-joins-in-flight` permit is taken (503).
    JoinsBusy,
}

/// Client message types (`type` label of `frames_in_total`), by the
/// index [`in_index`] gives.
const FRAME_IN_TYPES: [&str; 17] = [
    "create_room",
    "join_room",
    "send_message",
    "leave_room",
    "typing",
    "pong",
    "send_reaction",
    "file_meta",
    "file_chunk",
    "file_complete",
    "file_cancel",
    "file_ack",
    "match",
    "unknown",
    "kick",
    "send_direct",
    "set_room_secret",
];

fn in_index(t: MessageType) -> usize {
    match t {
        MessageType::CreateRoom => 0,
        MessageType::JoinRoom => 1,
        MessageType::SendMessage => 2,
        MessageType::LeaveRoom => 3,
        MessageType::Typing => 4,
        MessageType::Pong => 5,
        MessageType::SendReaction => 6,
        MessageType::SendFileMeta => 7,
        MessageType::SendFileChunk => 8,
        MessageType::SendFileComplete => 9,
        MessageType::SendFileCancel => 10,
        MessageType::SendFileAck => 11,
        MessageType::Match(_) => 12,
        MessageType::Unknown(_) => 13,
        MessageType::Kick => 14,
        MessageType::SendDirect => 15,
        MessageType::SetRoomSecret => 16,
    }
}

/// Server frame types (`type` label of `frames_out_total`).
const FRAME_OUT_TYPES: [(u8, &str); 19] = [
    (kind::ROOM_CREATED, "room_created"),
    (kind::ROOM_JOINED, "room_joined"),
    (kind::MEMBER_JOINED, "member_joined"),
    (kind::MEMBER_LEFT, "member_left"),
    (kind::RELAY_MESSAGE, "relay_message"),
    (kind::MEMBER_TYPING, "member_typing"),
    (kind::ROOM_CLOSED, "room_closed"),
    (kind::ERROR, "error"),
    (kind::PING, "ping"),
    (kind::RELAY_REACTION, "relay_reaction"),
    (kind::RELAY_FILE_META, "file_meta"),
    (kind::RELAY_FILE_CHUNK, "file_chunk"),
    (kind::RELAY_FILE_COMPLETE, "file_complete"),
    (kind::RELAY_FILE_CANCEL, "file_cancel"),
    (kind::RELAY_FILE_ACK, "file_ack"),
    (kind::MATCH_ERROR, "match_error"),
    (kind::RELAY_DIRECT, "relay_direct"),
    (kind::ROOM_SECRET_SET, "room_secret_set"),
    (0xFF, "other"),
];

/// Every error code a relay can send (`code` label).
const ERROR_CODES: [ErrorCode; 11] = [
    ErrorCode::RoomNotFound,
    ErrorCode::RoomFull,
    ErrorCode::NotInRoom,
    ErrorCode::RateLimited,
    ErrorCode::Invalid,
    ErrorCode::WrongPassword,
    ErrorCode::RoomExpired,
    ErrorCode::NotOwner,
    ErrorCode::HubFull,
    ErrorCode::InvalidListing,
    ErrorCode::MatchDisabled,
];

/// Latency buckets of the relay's own paths (delivery, publish), seconds:
/// 50 µs to 1 s (the budget is p99 ≤ 2 ms end to end).
const FAST_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Round-trip buckets (client networks), seconds: 5 ms to 10 s.
const RTT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The relay's metrics, registered in one registry. Cheap to clone (every
/// handle is reference-counted).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Open WebSocket connections.
    pub connections: IntGauge,
    /// WebSocket connections accepted since start.
    pub connections_accepted: IntCounter,
    /// WebSocket upgrades refused, by reason (limit, draining, origin).
    rejected: [IntCounter; 6],
    /// Client frames received, by message type ([`FRAME_IN_TYPES`]).
    frames_in: Vec<IntCounter>,
    /// Frames sent to clients, by message type, indexed by type number
    /// (unknown numbers share the `other` counter).
    frames_out: Vec<IntCounter>,
    /// The `other` counter of `frames_out`.
    frames_out_other: IntCounter,
    /// Error frames sent, by code ([`ERROR_CODES`] order).
    errors_out: Vec<IntCounter>,
    /// Frames queued to local members from the bus (one per recipient).
    pub deliveries: IntCounter,
    /// Time from a bus message reaching the relay to its frame being
    /// written to (or queued for) every local recipient's socket.
    pub delivery_seconds: Histogram,
    /// Messages published on the bus.
    pub publishes: IntCounter,
    /// Publishes that failed (bus down).
    pub publish_errors: IntCounter,
    pub publishes_short: IntCounter,
    /// Time one publish took (the Redis round trip).
    pub publish_seconds: Histogram,
    /// Application Ping to matching Pong, per connection and ping.
    pub ping_rtt_seconds: Histogram,
    /// WebSocket bytes read from clients.
    pub received_bytes: IntCounter,
    /// WebSocket bytes of the frames handed to client sockets.
    pub sent_bytes: IntCounter,
    /// Members disconnected because their outbound queue overflowed.
    pub slow_consumers: IntCounter,
    /// Connections closed, by close code ([`CLOSE_CODES`] order; other
    /// codes are counted as 1006).
    closes: Vec<IntCounter>,
    /// Rooms this relay is subscribed to (with local members, or lingering).
    pub local_rooms: IntGauge,
    /// The configured `--max-connections` (for ratio alerts).
    pub max_connections: IntGauge,
    /// 1 while the bus (Redis pub/sub) is connected.
    pub bus_up: IntGauge,
    /// 1 once the relay drains (readiness is false).
    pub draining: IntGauge,
    /// Connection tasks and HTTP requests that panicked (a bug; what they
    /// held was given back).
    pub panics: IntCounter,
    /// Relays alive according to the heartbeats in Redis, as this relay
    /// last read them.
    pub live_relays: IntGauge,
    /// Times the store was found to have lost this relay's state (Redis
    /// came back empty, or this relay was swept as dead) after the start.
    pub store_losses: IntCounter,
    /// Members this relay put back into the store after such a loss.
    pub restored_members: IntCounter,
    /// Reads of a room's secrets kept for a restore (after the room's
    /// first local join here, and after its owner changed them).
    pub room_secret_reads: IntCounter,
    /// Joins (and creations) refused because `max_joins_in_flight` were
    /// running.
    pub joins_refused: IntCounter,
    /// Rollbacks of failed joins by outcome, indexed like
    /// [`crate::join_gate::ROLLBACK_OUTCOMES`] (removed, absent, failed,
    /// dropped: the queue of second rollbacks was full).
    pub join_rollbacks: Vec<IntCounter>,
    /// Second rollbacks of failed joins waiting in the relay's queue.
    pub join_rollback_queue: IntGauge,
    /// `arthas_build_info{version, commit}`: 1 for the running build.
    build_info: IntGaugeVec,
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric name is registered once");
    metric
}

fn labelled(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    values: &[&str],
) -> Vec<IntCounter> {
    let vec = register(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric name"),
    );
    values.iter().map(|v| vec.with_label_values(&[v])).collect()
}

impl Metrics {
    /// Creates and registers every metric (`arthas_relay_*`, the build
    /// info, and the process collector's `process_*` on Linux).
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let gauge = |name: &str, help: &str| {
            register(
                r,
                IntGauge::new(format!("arthas_relay_{name}"), help).expect("valid name"),
            )
        };
        let counter = |name: &str, help: &str| {
            register(
                r,
                IntCounter::new(format!("arthas_relay_{name}"), help).expect("valid name"),
            )
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let opts =
                HistogramOpts::new(format!("arthas_relay_{name}"), help).buckets(buckets.to_vec());
            register(r, Histogram::with_opts(opts).expect("valid histogram"))
        };
        let rejected = labelled(
            r,
            "arthas_relay_connections_rejected_total",
            "WebSocket upgrades refused, by reason",
            "reason",
            &[
                "limit",
                "draining",
                "origin",
                "ip_limit",
                "handshake_rate",
                "joins_busy",
            ],
        );
        let out_labels: Vec<&str> = FRAME_OUT_TYPES.iter().map(|(_, l)| *l).collect();
        let out = labelled(
            r,
            "arthas_relay_frames_out_total",
            "Frames sent to clients, by message type",
            "type",
            &out_labels,
        );
        let frames_out_other = out[out.len() - 1].clone();
        let mut frames_out = vec![frames_out_other.clone(); 0x30];
        for ((kind, _), counter) in FRAME_OUT_TYPES.iter().zip(&out) {
            if let Some(slot) = frames_out.get_mut(*kind as usize) {
                *slot = counter.clone();
            }
        }
        let error_labels: Vec<&str> = ERROR_CODES.iter().map(|c| c.as_str()).collect();
        let close_labels: Vec<String> = CLOSE_CODES.iter().map(u16::to_string).collect();
        let close_labels: Vec<&str> = close_labels.iter().map(String::as_str).collect();
        let build_info = register(
            r,
            IntGaugeVec::new(
                Opts::new(
                    "arthas_build_info",
                    "The running build: 1 for its version and commit",
                ),
                &["version", "commit"],
            )
            .expect("valid metric name"),
        );
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("the process collector is registered once");
        let rejected: [IntCounter; 6] = rejected.try_into().expect("six reasons");
        Metrics {
            connections: gauge("connections", "Open WebSocket connections"),
            connections_accepted: counter(
                "connections_accepted_total",
                "WebSocket connections accepted",
            ),
            rejected,
            frames_in: labelled(
                r,
                "arthas_relay_frames_in_total",
                "Client frames received, by message type",
                "type",
                &FRAME_IN_TYPES,
            ),
            frames_out,
            frames_out_other,
            errors_out: labelled(
                r,
                "arthas_relay_errors_out_total",
                "Error frames sent, by code",
                "code",
                &error_labels,
            ),
            deliveries: counter(
                "deliveries_total",
                "Frames queued to local members from the bus",
            ),
            delivery_seconds: histogram(
                "delivery_duration_seconds",
                "Time from a bus message reaching the relay to its frame written to (or queued for) every local recipient",
                &FAST_BUCKETS,
            ),
            publishes: counter("publishes_total", "Messages published on the bus"),
            publish_errors: counter("publish_errors_total", "Bus publishes that failed"),
            publishes_short: counter(
                "publishes_short_total",
                "Members' publishes that reached fewer relays than hold members of the room (a subscription missing during a Redis failover, or a relay that died and is not swept yet); each sender was told E005 \"message may not have reached every member, retry\"",
            ),
            publish_seconds: histogram(
                "publish_duration_seconds",
                "Time a bus publish took, failed ones included",
                &FAST_BUCKETS,
            ),
            ping_rtt_seconds: histogram(
                "ping_rtt_seconds",
                "Round trip of the application Ping to its Pong",
                &RTT_BUCKETS,
            ),
            received_bytes: counter("received_bytes_total", "WebSocket bytes read from clients"),
            sent_bytes: counter(
                "sent_bytes_total",
                "WebSocket bytes of the frames handed to client sockets",
            ),
            slow_consumers: counter(
                "slow_consumers_total",
                "Members closed because their queue overflowed",
            ),
            store_losses: counter(
                "store_losses_total",
                "Times the store had lost this relay's rooms and members (Redis came back empty, or the relay was swept as dead)",
            ),
            restored_members: counter(
                "restored_members_total",
                "Members this relay put back into the store after it lost them",
            ),
            room_secret_reads: counter(
                "room_secret_reads_total",
                "Reads of a room's password verifier and owner hash kept for a restore (after its first local join here, and after its owner changed them)",
            ),
            joins_refused: counter(
                "joins_refused_total",
                "Joins and creations refused because max_joins_in_flight were running",
            ),
            join_rollbacks: labelled(
                r,
                "arthas_relay_join_rollbacks_total",
                "Removals of failed joins' members (at once and again later): removed, absent (never written), failed (store error), dropped (the rollback queue was full)",
                "outcome",
                &crate::join_gate::ROLLBACK_OUTCOMES,
            ),
            join_rollback_queue: gauge(
                "join_rollback_queue",
                "Second rollbacks of failed joins waiting in this relay's queue (at most --join-rollback-queue)",
            ),
            closes: labelled(
                r,
                "arthas_relay_closes_total",
                "Connections closed, by close code",
                "code",
                &close_labels,
            ),
            local_rooms: gauge(
                "local_rooms",
                "Rooms this relay is subscribed to (with local members, or lingering after the last left)",
            ),
            max_connections: gauge("max_connections", "The configured connection limit"),
            bus_up: gauge("bus_up", "1 while the bus is connected"),
            draining: gauge("draining", "1 once the relay drains"),
            panics: counter(
                "panics_total",
                "Connection tasks and HTTP requests that panicked (cleaned up and counted)",
            ),
            live_relays: gauge(
                "live_relays",
                "Relays alive according to the heartbeats in Redis, as this relay sees them",
            ),
            build_info,
            registry,
        }
    }

    /// Sets `arthas_build_info{version, commit}` (the binaries know both).
    pub fn set_build_info(&self, version: &str, commit: &str) {
        self.build_info.reset();
        self.build_info.with_label_values(&[version, commit]).set(1);
    }

    /// The counter of WebSocket upgrades refused for `why`.
    pub fn rejected(&self, why: Rejection) -> &IntCounter {
        &self.rejected[why as usize]
    }

    /// The counter of received client frames of type `t`.
    pub fn frame_in(&self, t: MessageType) -> &IntCounter {
        &self.frames_in[in_index(t)]
    }

    /// The counter of error frames with `code`.
    pub fn error_out(&self, code: ErrorCode) -> &IntCounter {
        let i = ERROR_CODES.iter().position(|c| *c == code).unwrap_or(0);
        &self.errors_out[i]
    }

    /// The counter of connections closed with `code`.
    pub fn closed(&self, code: u16) -> &IntCounter {
        let abnormal = CLOSE_CODES.iter().position(|c| *c == 1006);
        let i = CLOSE_CODES.iter().position(|c| *c == code).or(abnormal);
        &self.closes[i.unwrap_or_default()]
    }

    /// Counts `n` copies of `frame` (an encoded envelope) handed to client
    /// sockets: frames out by type and bytes out.
    pub fn sent(&self, frame: &[u8], n: u64) {
        if n == 0 {
            return;
        }
        let counter = protocol::server::kind_of(frame)
            .and_then(|k| self.frames_out.get(k as usize))
            .unwrap_or(&self.frames_out_other);
        counter.inc_by(n);
        self.sent_bytes.inc_by(n * wire_len(frame.len()));
    }

    /// Hot path, once per bus message: `n` local recipients got `frame`,
    /// `took` after the message reached the relay.
    pub fn delivered(&self, frame: &[u8], n: u64, took: Duration) {
        if n == 0 {
            return;
        }
        self.deliveries.inc_by(n);
        self.sent(frame, n);
        self.delivery_seconds.observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// A binary frame's length on the wire (header + payload).
fn wire_len(payload: usize) -> u64 {
    let header = match payload {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    };
    (header + payload) as u64
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_labelled_series_exists_before_its_first_event() {
        let text = Metrics::new().render();
        for series in [
            "arthas_relay_frames_in_total{type=\"send_message\"} 0",
            "arthas_relay_frames_out_total{type=\"relay_message\"} 0",
            "arthas_relay_errors_out_total{code=\"E005\"} 0",
            "arthas_relay_closes_total{code=\"4001\"} 0",
            "arthas_relay_connections_rejected_total{reason=\"origin\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
    }

    #[test]
    fn frames_out_are_counted_by_their_type_and_bytes_by_their_wire_length() {
        let m = Metrics::new();
        let frame = protocol::server::encode(
            kind::MEMBER_LEFT,
            &protocol::server::MemberLeft {
                id: "0123abcd",
                reason: "",
            },
        );
        m.delivered(&frame, 3, Duration::from_micros(80));
        m.sent(b"not an envelope", 1);
        let text = m.render();
        assert!(
            text.contains("arthas_relay_frames_out_total{type=\"member_left\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("arthas_relay_frames_out_total{type=\"other\"} 1"),
            "{text}"
        );
        assert!(text.contains("arthas_relay_deliveries_total 3"), "{text}");
        let bytes = 3 * (frame.len() as u64 + 2) + 15 + 2;
        assert!(
            text.contains(&format!("arthas_relay_sent_bytes_total {bytes}")),
            "{text}"
        );
        assert!(
            text.contains("arthas_relay_delivery_duration_seconds_count 1"),
            "{text}"
        );
    }

    #[test]
    fn wire_lengths_follow_the_header_forms() {
        assert_eq!(wire_len(125), 127);
        assert_eq!(wire_len(126), 130);
        assert_eq!(wire_len(70_000), 70_010);
    }
}
