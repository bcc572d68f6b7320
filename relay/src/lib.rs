//! The relay: accepts WebSockets, speaks the Arthas protocol, keeps the
//! local room index and fans messages out through the bus.
//!
//! - [`server`]: HTTP front, `/ws` upgrade, origin policy;
//! - [`admission`]: connections and handshakes per client address;
//! - [`budget`]: rate budgets (GCRA in 8 bytes);
//! - [`message_budgets`]: per-connection budgets of reactions, typing, room
//!   changes and file bytes;
//! - [`connection`]: one socket's task (read, write, ping, deadlines);
//! - [`transport`]: the socket under a WebSocket, plain TCP or TLS;
//! - [`websocket`]: RFC 6455 framing;
//! - [`session`]: the protocol state machine of one connection;
//! - [`join_gate`]: at most `max_joins_in_flight` joins at once, failed
//!   joins rolled back;
//! - [`hub`]: the local room index and the bus fan-out;
//! - [`publish`]: the one path that publishes to a room's bus channel;
//! - [`reach`]: whether a publish reached every relay holding members;
//! - [`peer`]: what of a connection the rest of the relay touches (its
//!   queue, its file transfers);
//! - [`transfer`]: a connection's file-transfer state;
//! - [`outbox`]: the bounded per-connection queue;
//! - [`owner`]: the room-owner extension (kick across relays, directed
//!   messages);
//! - [`slot`]: the connection limit, given back by a guard;
//! - [`expiry`]: per-node expiry warnings and closes;
//! - [`presence`]: heartbeats, and the sweep of dead relays' members;
//! - [`heal`]: re-asserting this relay's rooms and members when the store
//!   lost them (Redis came back empty, or this relay was swept);
//! - [`metrics`]: Prometheus counters;
//! - [`admin`]: health, readiness and metrics on the admin port;
//! - `testing` (feature `testing`, tests only): fault injection, an echo
//!   endpoint for RFC 6455 conformance, a raw WebSocket client.
//!
//! The relay does not know which engine runs behind [`store::RoomStore`] and
//! [`store::Bus`], nor whether the gateway ([`gateway::Authority`]) is in
//! process or remote.

pub mod admin;
pub mod admission;
pub mod budget;
pub mod config;
pub mod connection;
pub mod expiry;
pub mod heal;
pub mod hub;
pub mod join_gate;
pub mod message_budgets;
pub mod metrics;
pub mod outbox;
pub mod owner;
pub mod peer;
pub mod presence;
pub mod publish;
pub mod reach;
pub mod server;
pub mod session;
pub mod slot;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transfer;
pub mod transport;
pub mod websocket;

use std::sync::{Arc, OnceLock};

use gateway::Authority;
use store::{Bus, BusSink, RoomStore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{MessageBudgets, OriginPolicy, RelayConfig};
use hub::{Hub, HubSink};
use metrics::Metrics;

/// A relay node: its configuration and the parts every connection shares.
pub struct Relay {
    pub config: RelayConfig,
    pub origins: OriginPolicy,
    pub store: Arc<dyn RoomStore>,
    pub bus: Arc<dyn Bus>,
    pub authority: Arc<dyn Authority>,
    pub hub: Arc<Hub>,
    pub metrics: Metrics,
    /// Connections and handshakes per client address.
    pub admission: Arc<admission::Admission>,
    /// The message budgets' rates, from `config.budgets`.
    pub rates: message_budgets::Rates,
    /// Cancelled when the node shuts down or drains.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Open connections, against `max_connections`.
    pub slots: slot::ConnectionSlots,
    /// Whether the store lost this relay's state and it is being restored.
    pub heal: heal::Healing,
    /// Joins in flight, against `max_joins_in_flight`.
    pub joins: join_gate::JoinGate,
    /// Rooms other relays asked to write back (taken by the background
    /// task that serves them).
    restore_requests: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<String>>>,
    /// Faults a test injects (the `testing` feature only).
    #[cfg(feature = "testing")]
    pub faults: testing::Faults,
}

/// The first half of building a relay: the bus needs the relay's sink before
/// the relay can have the bus.
pub struct RelayBuilder {
    metrics: Metrics,
    sink: Arc<HubSink>,
    restore_requests: tokio::sync::mpsc::Receiver<String>,
}

impl RelayBuilder {
    /// Creates the local room index and its sink.
    pub fn new() -> RelayBuilder {
        let metrics = Metrics::new();
        let hub = Arc::new(Hub::new(metrics.clone()));
        let (requests, restore_requests) = tokio::sync::mpsc::channel(heal::RESTORE_REQUEST_QUEUE);
        RelayBuilder {
            metrics,
            sink: Arc::new(HubSink {
                hub,
                bus: OnceLock::new(),
                restore_requests: requests,
                relay: OnceLock::new(),
            }),
            restore_requests,
        }
    }

    /// Where the bus engine delivers.
    pub fn sink(&self) -> Arc<dyn BusSink> {
        self.sink.clone()
    }

    /// Completes the relay.
    pub fn build(
        self,
        config: RelayConfig,
        store: Arc<dyn RoomStore>,
        bus: Arc<dyn Bus>,
        authority: Arc<dyn Authority>,
    ) -> Arc<Relay> {
        let _ = self.sink.bus.set(bus.clone());
        self.sink.hub.set_linger(config.room_linger);
        self.metrics
            .max_connections
            .set(config.max_connections as i64);
        let relay = Arc::new(Relay {
            origins: OriginPolicy::parse(&config.allowed_origins),
            admission: Arc::new(admission::Admission::new(
                config.max_connections_per_ip,
                config.handshakes_per_ip_per_sec,
            )),
            rates: message_budgets::Rates::new(&config.budgets),
            joins: join_gate::JoinGate::new(config.max_joins_in_flight, config.join_rollback_queue),
            config,
            store,
            bus,
            authority,
            hub: self.sink.hub.clone(),
            metrics: self.metrics,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            slots: slot::ConnectionSlots::default(),
            heal: heal::Healing::default(),
            restore_requests: std::sync::Mutex::new(Some(self.restore_requests)),
            #[cfg(feature = "testing")]
            faults: testing::Faults::default(),
        });
        // A kick delivered here is finished by the relay (store, publish).
        let _ = self.sink.relay.set(Arc::downgrade(&relay));
        relay
    }
}

impl Default for RelayBuilder {
    fn default() -> Self {
        RelayBuilder::new()
    }
}

impl Relay {
    /// Starts the node's background work (expiry sweep, presence).
    pub fn start_background(self: &Arc<Self>) {
        self.tasks.spawn(expiry::run(self.clone()));
        self.tasks.spawn(presence::run(self.clone()));
        let requests = self
            .restore_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(requests) = requests {
            self.tasks
                .spawn(heal::serve_requests(self.clone(), requests));
        }
        if let Some(queue) = self.joins.take_queue() {
            self.tasks
                .spawn(join_gate::run_rechecks(self.clone(), queue));
        }
        if !self.config.room_linger.is_off() {
            self.tasks.spawn(retire_idle_rooms(self.clone()));
        }
    }

    /// Shuts down: stop accepting, close every connection with 1001 (spread
    /// over the drain window), and wait at most `grace` for them to finish.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over with connections still open");
        }
    }
}

/// The shortest period of the idle-room check, however short the linger.
const MIN_RETIRE_PERIOD: std::time::Duration = std::time::Duration::from_millis(10);

/// Ends the subscriptions of rooms that lingered `room_linger` without a
/// local member, checking twice per linger, until shutdown.
async fn retire_idle_rooms(relay: Arc<Relay>) {
    let period = (relay.config.room_linger.duration() / 2).max(MIN_RETIRE_PERIOD);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                relay.hub.retire_idle(relay.bus.as_ref()).await;
            }
            _ = relay.shutdown.cancelled() => return,
        }
    }
}
