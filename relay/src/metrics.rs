//! Prometheus metrics of a relay. Labels carry message kinds and outcomes,
//! never room ids, member ids or anything a client sent.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// The relay's counters and gauges, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Open WebSocket connections.
    pub connections: IntGauge,
    /// WebSocket connections accepted since start.
    pub connections_total: IntCounter,
    /// Client frames received, by message type name.
    pub frames_in: IntCounterVec,
    /// Error frames sent, by code.
    pub errors_out: IntCounterVec,
    /// Frames queued to local members from the bus (one per recipient).
    pub deliveries: IntCounter,
    /// Messages published on the bus.
    pub publishes: IntCounter,
    /// Publishes that failed (bus down).
    pub publish_errors: IntCounter,
    /// Members disconnected because their outbound queue overflowed.
    pub slow_consumers: IntCounter,
    /// Connections closed, by close code.
    pub closes: IntCounterVec,
    /// Rooms this relay is subscribed to (with local members, or lingering).
    pub local_rooms: IntGauge,
    /// The configured `--max-connections` (for ratio alerts).
    pub max_connections: IntGauge,
    /// WebSocket upgrades refused, by reason (limit, draining, origin,
    /// ip_limit, handshake_rate).
    pub connections_rejected: IntCounterVec,
    /// 1 while the bus (Redis pub/sub) is connected.
    pub bus_up: IntGauge,
    /// 1 once the relay drains (readiness is false).
    pub draining: IntGauge,
    /// Connection tasks and HTTP requests that panicked (a bug; what they
    /// held was given back).
    pub panics: IntCounter,
}

impl Metrics {
    /// Creates and registers every metric under the `arthas_relay_` prefix.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(format!("arthas_relay_{name}"), help)
                .expect("metric names are valid");
            registry
                .register(Box::new(g.clone()))
                .expect("metrics register once");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(format!("arthas_relay_{name}"), help)
                .expect("metric names are valid");
            registry
                .register(Box::new(c.clone()))
                .expect("metrics register once");
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(format!("arthas_relay_{name}"), help), &[label])
                .expect("metric names are valid");
            registry
                .register(Box::new(c.clone()))
                .expect("metrics register once");
            c
        };
        Metrics {
            connections: gauge("connections", "Open WebSocket connections"),
            connections_total: counter("connections_total", "WebSocket connections accepted"),
            frames_in: counter_vec("frames_in_total", "Client frames received, by type", "type"),
            errors_out: counter_vec("errors_out_total", "Error frames sent, by code", "code"),
            deliveries: counter(
                "deliveries_total",
                "Frames queued to local members from the bus",
            ),
            publishes: counter("publishes_total", "Messages published on the bus"),
            publish_errors: counter("publish_errors_total", "Bus publishes that failed"),
            slow_consumers: counter(
                "slow_consumers_total",
                "Members closed because their queue overflowed",
            ),
            closes: counter_vec("closes_total", "Connections closed, by close code", "code"),
            local_rooms: gauge(
                "local_rooms",
                "Rooms this relay is subscribed to (with local members, or lingering after the last left)",
            ),
            max_connections: gauge("max_connections", "The configured connection limit"),
            connections_rejected: counter_vec(
                "connections_rejected_total",
                "WebSocket upgrades refused, by reason",
                "reason",
            ),
            bus_up: gauge("bus_up", "1 while the bus is connected"),
            draining: gauge("draining", "1 once the relay drains"),
            panics: counter(
                "panics_total",
                "Connection tasks and HTTP requests that panicked (cleaned up and counted)",
            ),
            registry,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
