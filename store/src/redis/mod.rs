//! The Redis engines: [`RedisEngine`] implements [`RoomStore`](crate::RoomStore) and [`Bus`]
//! on a standalone Redis ([`RedisMode::Standalone`]) or a Redis Cluster
//! ([`RedisMode::Cluster`]), so any number of relays share rooms, presence
//! and one channel per room.
//!
//! # Redis layout
//!
//! Every key and channel, its type, what it holds and its lifetime are
//! described in one place: [`keys`].
//!
//! Nothing here ever stores a message: ciphertext only passes through the
//! channels.
//!
//! # The bus
//!
//! Standalone ([`bus`]): SUBSCRIBE, PUBLISH, the message pushes and the
//! EVALSHA of the join and leave scripts share our own RESP3 connection
//! (`subscriber`; RESP3 lets a subscribed connection run any command),
//! read by a minimal strict reader ([`resp`]) that parses every push and
//! answer of a read in one pass and hands each payload to the relay's
//! [`BusSink`] copied once into its own `Bytes`, synchronously, in arrival
//! order. A supervisor task notices a loss (the connection ends, or a PING
//! probe fails), fails publishes fast meanwhile, opens a new connection and
//! subscribes every hosted room on it.
//!
//! Sentinel ([`RedisMode::Sentinel`]): the same bus and command pool, aimed
//! at the master the sentinels name (`sentinel`). Pool connections ask the
//! sentinels when they are opened and are discarded on a connection error or
//! READONLY; the bus supervisor follows a failover (after a loss, and on a
//! periodic check) by retiring its connection, opening one to the new master
//! and resubscribing every hosted room.
//!
//! Cluster ([`cluster_bus`]): commands go through the redis-rs cluster
//! client, except the join and leave scripts; those, SSUBSCRIBE, SPUBLISH
//! and the message pushes use our own connections, one per master, read by
//! the same reader (an SPUBLISH or a script the slot's connection cannot
//! take, or answered MOVED, goes through the cluster client). The supervisor
//! follows the slot map (`CLUSTER SLOTS`): it subscribes each room's channel
//! on the master serving its slot, one channel per command, and resubscribes
//! after a lost connection, a slot migration (an unrequested SUNSUBSCRIBE)
//! or a failover (the slots' masters changed).

pub mod bus;
pub mod cluster_bus;
mod commands;
pub mod keys;
mod limits;
pub mod resp;
mod scripts;
mod sentinel;
mod store;
mod subscriber;

#[doc(hidden)]
pub use store::read_replies_for_fuzzing;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::{IntoConnectionInfo, ProtocolVersion, Value};
use tokio::sync::{mpsc, watch};

use crate::bus::{Bus, BusError, BusMessage, BusSink};
use crate::linger::RoomLinger;
use crate::room::StoreError;
use commands::Commands;

/// Where Redis is. Every mode speaks TLS with `rediss://` URLs (see
/// [`RedisTls`] for the CA and a client certificate).
#[derive(Debug, Clone)]
pub enum RedisMode {
    /// One server (or a primary behind one stable address):
    /// `redis://[user:pass@]host:port[/db]`, `rediss://` for TLS.
    Standalone { url: String },
    /// A Redis Cluster (7+, sharded pub/sub): any subset of its nodes as
    /// `redis://host:port` (`rediss://`: every node over TLS, as the
    /// cluster announces with `tls-cluster yes`); the rest is discovered.
    Cluster { nodes: Vec<String> },
    /// A primary with replicas under Redis Sentinel: the sentinels'
    /// addresses (`redis://host:26379`) and the name they monitor the
    /// primary under. Connections go to whatever master the sentinels name;
    /// after a failover the command pool and the bus follow it. With
    /// `rediss://` sentinels, the master is reached over TLS too.
    Sentinel {
        sentinels: Vec<String>,
        master_name: String,
    },
}

/// TLS material for `rediss://` connections, PEM text (read at start-up).
#[derive(Clone, Default)]
pub struct RedisTls {
    /// The CA bundle servers' certificates must chain to (`None`: the
    /// system's roots, honouring `SSL_CERT_FILE`).
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain and its key, for servers started with
    /// `tls-auth-clients yes`.
    pub client_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client_pem.is_some())
            .finish()
    }
}

impl RedisTls {
    /// What redis-rs takes, or `None` when nothing is configured (then a
    /// `rediss://` URL uses the system's roots and no client certificate).
    pub(crate) fn certificates(&self) -> Option<redis::TlsCertificates> {
        if self.ca_pem.is_none() && self.client_pem.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self
                .client_pem
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca_pem.clone(),
        })
    }

    /// A client for `info`, with the configured certificates when the URL
    /// is `rediss://`; certificates for a `redis://` URL are refused.
    pub(crate) fn client(&self, info: redis::ConnectionInfo) -> Result<redis::Client, StoreError> {
        match self.certificates() {
            None => redis::Client::open(info),
            Some(certificates) => {
                if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
                    return Err(StoreError(
                        "redis: TLS certificates are configured but the URL is not rediss://"
                            .into(),
                    ));
                }
                redis::Client::build_with_tls(info, certificates)
            }
        }
        .map_err(|e| StoreError(format!("redis url: {e}")))
    }
}

/// Named limits of the Redis engines.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Shared multiplexed connections for store commands (standalone and
    /// Sentinel); commands go round-robin over them.
    pub pool_size: usize,
    /// Most store commands in flight at once (waiting for a connection
    /// included); more wait, within `command_timeout`.
    pub max_in_flight: usize,
    /// Longest any store command may take, pool wait included.
    pub command_timeout: Duration,
    /// Longest a publish may take before the sender is told the bus is down.
    pub publish_timeout: Duration,
    /// Longest a subscribe or unsubscribe may wait for its confirmation.
    pub subscribe_timeout: Duration,
    /// Longest one connection attempt may take.
    pub connect_timeout: Duration,
    /// First delay between reconnection attempts; it doubles per attempt.
    pub reconnect_backoff_min: Duration,
    /// Longest delay between reconnection attempts.
    pub reconnect_backoff_max: Duration,
    /// How long an expired room's keys outlive `expiresAt`: joins answer
    /// E007 during it and E001 after.
    pub expired_room_grace: Duration,
    /// How long a relay that joined members but never heartbeated counts as
    /// alive (its first heartbeat replaces this deadline).
    pub unannounced_node_ttl: Duration,
    /// How often the bus PINGs its subscriber connections (standalone: one;
    /// cluster: one per master) to notice a silent loss, and the cluster bus
    /// reads `CLUSTER SLOTS` to notice a failover.
    pub bus_probe_interval: Duration,
    /// Channels per SUBSCRIBE in a standalone resubscription pass.
    pub resubscribe_batch: usize,
    /// Single-channel SSUBSCRIBEs in flight on each master's subscriber
    /// connection during a cluster resubscription (the masters' connections
    /// side by side). 1 by default, chosen when SSUBSCRIBE still went through
    /// the redis-rs cluster client, which wedged with 64 in flight (~0.4 ms
    /// per room one at a time).
    pub resubscribe_concurrency: usize,
    /// Most dead relays one sweep handles (the rest wait for the next).
    pub sweep_max_nodes: usize,
    /// Cluster only: when `CLUSTER SLOTS` has failed for this long (from the
    /// start of the first failed attempt), the cluster connection (commands,
    /// SPUBLISH, `CLUSTER SLOTS`) is rebuilt (redis-rs can wedge after all
    /// masters restart at once or every connection is killed). Well below a
    /// relay's heartbeat TTL: the rebuild must come before the other relays
    /// sweep this one's members (3 s: the second timed-out `CLUSTER SLOTS`,
    /// about 4 s after the loss).
    pub cluster_rebuild_after: Duration,
    /// Sentinel only: how often the bus asks the sentinels which server is
    /// master, to follow a failover it was not disconnected by.
    pub sentinel_check_interval: Duration,
    /// Sentinel only: longest one master lookup may take (asking the
    /// sentinels, then `ROLE` on the master they name).
    pub sentinel_lookup_timeout: Duration,
    /// The relay's room linger ([`crate::linger`]): a room stays in a node's
    /// room set this long after the node's last member of it left (removed
    /// by a later heartbeat); off removes it at once.
    pub room_linger: RoomLinger,
    /// How long a relay's epoch mark (whose state Redis holds for it, or
    /// that it was swept) outlives the relay's last check of it.
    pub node_epoch_ttl: Duration,
    /// CA and client certificate for `rediss://` URLs.
    pub tls: RedisTls,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            pool_size: 4,
            max_in_flight: 1024,
            command_timeout: Duration::from_secs(2),
            publish_timeout: Duration::from_millis(500),
            subscribe_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            expired_room_grace: Duration::from_secs(60),
            unannounced_node_ttl: Duration::from_secs(60),
            bus_probe_interval: Duration::from_secs(2),
            resubscribe_batch: 500,
            resubscribe_concurrency: 1,
            sweep_max_nodes: 16,
            cluster_rebuild_after: Duration::from_secs(3),
            sentinel_check_interval: Duration::from_secs(1),
            sentinel_lookup_timeout: Duration::from_secs(2),
            room_linger: RoomLinger::OFF,
            node_epoch_ttl: Duration::from_secs(24 * 3600),
            tls: RedisTls::default(),
        }
    }
}

/// What the bus supervisor reports (for readiness, metrics and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusHealth {
    /// The bus connection is believed usable; publishes fail fast while not.
    pub up: bool,
    /// Completed recoveries: a connection loss or dropped channel noticed,
    /// and every hosted room confirmed subscribed again.
    pub recoveries: u64,
    /// How long the last recovery took, from noticing the loss to the last
    /// confirmation.
    pub last_recovery: Option<Duration>,
    /// Rooms re-subscribed by the last recovery.
    pub last_recovery_rooms: usize,
}

/// What the subscriber connections (and a publish) tell the bus supervisor.
#[derive(Debug)]
pub(crate) enum BusEvent {
    /// A connection carrying subscriptions closed.
    ConnectionLost,
    /// The server unsubscribed a room we still host (a slot moved away).
    ChannelDropped(String),
}

/// The bus state shared by the engine, the subscriber connections' readers
/// and the supervisor task.
pub(crate) struct BusShared {
    /// The relay's sink, set once by [`RedisEngine::attach`].
    sink: OnceLock<Arc<dyn BusSink>>,
    /// Rooms this relay wants messages of (subscribed, or being resubscribed).
    rooms: Mutex<HashSet<String>>,
    /// Rooms given up while their UNSUBSCRIBE could not be sent: the next
    /// recovery unsubscribes them.
    stale: Mutex<HashSet<String>>,
    /// The connection is believed usable.
    up: AtomicBool,
    /// Push payloads that were not ours (wrong shape or version).
    malformed: AtomicU64,
    /// Health as published to observers.
    health: watch::Sender<BusHealth>,
    /// Wakes the supervisor (bounded; see [`BusShared::report`]).
    events: mpsc::Sender<BusEvent>,
    /// Events were dropped because the queue was full: the supervisor must
    /// treat it as a lost connection and resubscribe every room.
    events_overflowed: AtomicBool,
    /// Subscribe and unsubscribe commands hold it shared; the supervisor
    /// holds it exclusively while it unsubscribes rooms nobody wants, so it
    /// never undoes a subscription made meanwhile.
    pub(crate) gate: tokio::sync::RwLock<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The sets stay consistent under a panic elsewhere: keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BusShared {
    fn new() -> (Arc<BusShared>, mpsc::Receiver<BusEvent>) {
        let (events, rx) = mpsc::channel(BUS_EVENT_QUEUE);
        let shared = Arc::new(BusShared {
            sink: OnceLock::new(),
            rooms: Mutex::new(HashSet::new()),
            stale: Mutex::new(HashSet::new()),
            up: AtomicBool::new(true),
            malformed: AtomicU64::new(0),
            health: watch::Sender::new(BusHealth {
                up: true,
                ..BusHealth::default()
            }),
            events,
            events_overflowed: AtomicBool::new(false),
            gate: tokio::sync::RwLock::new(()),
        });
        (shared, rx)
    }

    pub(crate) fn rooms(&self) -> MutexGuard<'_, HashSet<String>> {
        lock(&self.rooms)
    }

    pub(crate) fn stale(&self) -> MutexGuard<'_, HashSet<String>> {
        lock(&self.stale)
    }

    /// Queues an event for the supervisor without blocking; when the queue
    /// is full the event degrades to "resubscribe everything".
    pub(crate) fn report(&self, event: BusEvent) {
        if self.events.try_send(event).is_err() {
            self.events_overflowed.store(true, Ordering::Release);
        }
    }

    /// Whether events were dropped since the last call (then every hosted
    /// room must be resubscribed).
    pub(crate) fn take_overflow(&self) -> bool {
        self.events_overflowed.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(crate) fn set_down(&self) {
        self.up.store(false, Ordering::Release);
        self.health
            .send_if_modified(|h| std::mem::replace(&mut h.up, false));
    }

    /// Marks a recovery as complete.
    pub(crate) fn recovered(&self, took: Option<Duration>, rooms: usize) {
        self.up.store(true, Ordering::Release);
        self.health.send_modify(|h| {
            h.up = true;
            if let Some(took) = took {
                h.recoveries += 1;
                h.last_recovery = Some(took);
                h.last_recovery_rooms = rooms;
            }
        });
    }

    /// A room id starts being wanted; false if it already was.
    pub(crate) fn want(&self, room_id: &str) -> bool {
        self.stale().remove(room_id);
        self.rooms().insert(room_id.to_owned())
    }

    /// A room id stops being wanted.
    pub(crate) fn unwant(&self, room_id: &str) {
        self.rooms().remove(room_id);
    }

    /// Stale rooms, and rooms of `snapshot` no longer wanted: what a
    /// recovery must unsubscribe (call with the gate held exclusively).
    pub(crate) fn unwanted(&self, snapshot: &[String]) -> Vec<String> {
        let wanted = self.rooms();
        let mut stale = self.stale();
        stale.retain(|r| !wanted.contains(r));
        let mut gone: Vec<String> = stale.iter().cloned().collect();
        gone.extend(
            snapshot
                .iter()
                .filter(|r| !wanted.contains(*r) && !stale.contains(*r))
                .cloned(),
        );
        gone
    }

    /// Hot path: one message, delivered to the sink in arrival order.
    pub(crate) fn deliver(&self, channel: &[u8], payload: Bytes) {
        let Some(room_id) = keys::room_of_channel(channel) else {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("bus: a message on a foreign channel was ignored");
            return;
        };
        if !self.rooms().contains(room_id) {
            return; // unsubscribed meanwhile
        }
        let message = match BusMessage::from_wire(payload) {
            Ok(m) => m,
            Err(_) => {
                self.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(room = room_id, "bus: a malformed message was ignored");
                return;
            }
        };
        if let Some(sink) = self.sink.get() {
            sink.deliver(room_id, message);
        }
    }
}

/// The two bus implementations.
enum BusConn {
    Standalone(bus::StandaloneBus),
    Cluster(cluster_bus::ClusterBus),
}

impl BusConn {
    /// The bus connection to the server that holds `room_id`'s keys.
    fn connection_for(&self, room_id: &str) -> Option<subscriber::Subscriber> {
        match self {
            BusConn::Standalone(b) => b.connection(),
            BusConn::Cluster(b) => b.connection_for(room_id),
        }
    }

    /// A command on [`connection_for`](Self::connection_for)'s connection
    /// was answered `error`; a redirection makes a Cluster bus read the slot
    /// map now.
    fn refused(&self, error: &str) {
        if let BusConn::Cluster(b) = self {
            if cluster_bus::redirected(error) {
                b.redirected();
            }
        }
    }
}

/// Room state and the bus on Redis. Build with [`RedisEngine::connect`],
/// then [`attach`](RedisEngine::attach) the relay's sink.
pub struct RedisEngine {
    /// The named limits.
    config: RedisConfig,
    /// Where store commands go.
    commands: Commands,
    /// Publish and subscribe.
    bus: BusConn,
    /// Subscribed rooms, the sink and health, shared with the subscriber
    /// connections and the supervisor.
    shared: Arc<BusShared>,
    /// Tells the bus supervisor to stop when the engine is dropped.
    shutdown: watch::Sender<bool>,
    /// (node, room) pairs this engine put in a node's room set, with since
    /// when the node has had no member there (None: it has members).
    node_rooms: Mutex<HashMap<(String, String), Option<Instant>>>,
    /// Relay node -> until when (this process's clock) it is surely in
    /// `arthas:nodes` with a deadline ahead, from its last heartbeat or
    /// registration through this engine; a join skips registering it until
    /// then.
    registered_until: Mutex<HashMap<String, Instant>>,
    /// This engine's incarnation, written to each relay's epoch key
    /// ([`keys::node_epoch`]): a different value there means Redis lost it.
    epoch: String,
}

impl RedisEngine {
    /// Connects (one round trip to prove Redis answers) and starts the bus
    /// supervisor. Fails if Redis is unreachable now; after this the engine
    /// reconnects by itself and never gives up.
    pub async fn connect(
        mode: RedisMode,
        config: RedisConfig,
    ) -> Result<Arc<RedisEngine>, StoreError> {
        // `rediss://` URLs need a process-wide rustls provider (ring); a
        // second engine finds it installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (shared, events) = BusShared::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        // Command connections (standalone and Sentinel).
        let connection = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout));
        let (commands, bus) = match mode {
            RedisMode::Standalone { url } => {
                let info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| StoreError(format!("redis url: {e}")))?;
                let settings = info.redis_settings().clone().set_skip_set_lib_name();
                let client = config
                    .tls
                    .client(info.clone().set_redis_settings(settings.clone()))?;
                // One direct connection first, so a refused connection, a TLS
                // certificate or a password problem is reported as such
                // (the bus would keep retrying and only time out).
                client
                    .get_multiplexed_async_connection_with_config(&connection)
                    .await
                    .map_err(|e| StoreError(format!("redis: {e}")))?;
                let commands = Commands::standalone(
                    commands::Target::Fixed(Box::new(client)),
                    connection,
                    config.pool_size,
                    config.max_in_flight,
                );
                let pubsub_client = config.tls.client(
                    info.set_redis_settings(settings.set_protocol(ProtocolVersion::RESP3)),
                )?;
                let bus = bus::StandaloneBus::connect(
                    bus::BusTarget::Fixed(Box::new(pubsub_client)),
                    &config,
                    shared.clone(),
                    events,
                    shutdown_rx,
                )
                .await?;
                (commands, BusConn::Standalone(bus))
            }
            RedisMode::Sentinel {
                sentinels,
                master_name,
            } => {
                let locator = |protocol| {
                    sentinel::MasterLocator::new(
                        &sentinels,
                        &master_name,
                        protocol,
                        config.sentinel_lookup_timeout,
                        &config.tls,
                    )
                    .map(Arc::new)
                };
                let commands = Commands::standalone(
                    commands::Target::Sentinel(locator(ProtocolVersion::RESP2)?),
                    connection,
                    config.pool_size,
                    config.max_in_flight,
                );
                let bus = bus::StandaloneBus::connect(
                    bus::BusTarget::Sentinel(locator(ProtocolVersion::RESP3)?),
                    &config,
                    shared.clone(),
                    events,
                    shutdown_rx,
                )
                .await?;
                (commands, BusConn::Standalone(bus))
            }
            RedisMode::Cluster { nodes } => {
                let (conn, bus) = cluster_bus::ClusterBus::connect(
                    &nodes,
                    &config,
                    shared.clone(),
                    events,
                    shutdown_rx,
                )
                .await?;
                (
                    Commands::cluster(conn, config.max_in_flight),
                    BusConn::Cluster(bus),
                )
            }
        };
        let engine = RedisEngine {
            config,
            commands,
            bus,
            shared,
            shutdown,
            node_rooms: Mutex::new(HashMap::new()),
            registered_until: Mutex::new(HashMap::new()),
            epoch: format!("{:016x}", rand::random::<u64>()),
        };
        // Prove the command path too.
        engine
            .commands
            .query::<Value>(engine.config.command_timeout, &redis::cmd("PING"))
            .await?;
        Ok(Arc::new(engine))
    }

    /// Connects the relay that receives bus messages (one per engine).
    pub fn attach(&self, sink: Arc<dyn BusSink>) {
        if self.shared.sink.set(sink).is_err() {
            tracing::warn!("redis bus: a second sink was attached and ignored");
        }
    }

    /// The bus supervisor's view: up or down, recoveries and their duration.
    pub fn bus_health(&self) -> watch::Receiver<BusHealth> {
        self.shared.health.subscribe()
    }

    /// Push payloads ignored because they were not valid bus messages.
    pub fn malformed_messages(&self) -> u64 {
        self.shared.malformed.load(Ordering::Relaxed)
    }

    /// Rooms this engine is subscribed to.
    pub fn subscribed_rooms(&self) -> usize {
        self.shared.rooms().len()
    }

    /// The limits this engine runs with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[async_trait]
impl Bus for RedisEngine {
    fn is_up(&self) -> bool {
        self.shared.is_up()
    }

    fn recoveries(&self) -> u64 {
        self.shared.health.borrow().recoveries
    }

    async fn subscribe(&self, room_id: &str) -> Result<(), BusError> {
        match &self.bus {
            BusConn::Standalone(b) => b.subscribe(&self.config, &self.shared, room_id).await,
            BusConn::Cluster(b) => b.subscribe(&self.config, &self.shared, room_id).await,
        }
    }

    async fn unsubscribe(&self, room_id: &str) -> Result<(), BusError> {
        match &self.bus {
            BusConn::Standalone(b) => b.unsubscribe(&self.config, &self.shared, room_id).await,
            BusConn::Cluster(b) => b.unsubscribe(&self.config, &self.shared, room_id).await,
        }
    }

    /// Hot path: one PUBLISH (SPUBLISH on a cluster) per chat message.
    async fn publish(&self, room_id: &str, message: BusMessage) -> Result<Option<u64>, BusError> {
        match &self.bus {
            BusConn::Standalone(b) => {
                b.publish(&self.config, &self.shared, room_id, &message)
                    .await
            }
            BusConn::Cluster(b) => {
                b.publish(&self.config, &self.shared, room_id, &message)
                    .await
            }
        }
        .map(Some)
    }
}

/// Supervisor events that may wait (connection losses, dropped channels).
const BUS_EVENT_QUEUE: usize = 1024;

/// Doubles a backoff delay up to its ceiling.
pub(crate) fn next_backoff(current: Duration, config: &RedisConfig) -> Duration {
    (current * 2).clamp(config.reconnect_backoff_min, config.reconnect_backoff_max)
}
