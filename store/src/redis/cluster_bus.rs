//! The cluster bus: sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7+).
//!
//! A room's channel `arthas:{R}` lives in the slot of `{R}`, so a room's
//! messages pass through one shard in one order. Every store command goes
//! through the redis-rs cluster client ([`SharedCluster`]); SSUBSCRIBE,
//! SUNSUBSCRIBE, SPUBLISH and the message pushes go through our own
//! connections ([`subscriber`](super::subscriber), one per master,
//! [`Channels::Sharded`]), read by the minimal RESP3 reader
//! ([`resp`](super::resp)) as the standalone bus reads its pushes; an
//! SPUBLISH with no connection to its master yet, or answered MOVED or ASK,
//! goes through the cluster client instead. The slot
//! map (`CLUSTER SLOTS`, read through the cluster client) says which
//! master, hence which connection, serves a room: the slot is the CRC16 of
//! the hash tag ([`slot_of`]); one channel per SSUBSCRIBE (several would be
//! refused with CROSSSLOT unless they share a slot).
//!
//! Faults (the tests cause each of them, and check that delivery resumes in
//! every room, except a master answering again while its replica serves it
//! and the cluster client wedging, which happens in some runs only:
//! `store/tests/bus.rs`, `tests/cluster.rs`, `tests/resilience.rs`):
//!
//! - A subscriber connection closes (CLIENT KILL, a master restarted or
//!   lost, a malformed frame) or fails a PING probe: the supervisor opens a
//!   new one to that master and resubscribes every hosted room.
//! - A slot migrates: the old owner sends an unrequested SUNSUBSCRIBE; the
//!   reader reports the room ([`BusEvent::ChannelDropped`]) and the
//!   supervisor resubscribes it on the new owner. An SSUBSCRIBE answered
//!   `MOVED` (a stale slot map) makes the supervisor read `CLUSTER SLOTS`
//!   again and retry with backoff; a join's SSUBSCRIBE is retried once on
//!   the master the answer names when a connection to it is open.
//! - A failover (CLUSTER FAILOVER, a master lost) hands the slots to a
//!   replica that never had the shard's subscriptions, and the old master
//!   does not always send SUNSUBSCRIBE (Redis 7.0): the supervisor reads
//!   `CLUSTER SLOTS` every `bus_probe_interval`; when a slot's master
//!   changed it retires the connections of nodes that are no longer masters
//!   (every push their server counted for this relay is delivered first:
//!   `Subscriber::retire`), opens connections to the new masters and
//!   resubscribes the rooms whose master changed. Until then a publish
//!   nobody received in a room this relay hosts fails (the sender is told)
//!   and resubscribes that room.
//! - A master is lost (killed, unreachable): the other masters' rooms are
//!   resubscribed at once; its rooms are subscribed on one of its replicas
//!   (a replica serves its master's shard channels, SSUBSCRIBE and the
//!   SPUBLISHes the cluster client then sends it alike), and the supervisor
//!   keeps retrying the master with backoff (the bus reads down meanwhile).
//!   When the replica takes the slots, its connection serves them as their
//!   master's; when the master answers again, the replica's connection is
//!   retired before the rooms are subscribed on the master.
//! - The redis-rs cluster client wedges (after every master restarted at
//!   once, or every connection was killed): when `CLUSTER SLOTS` has failed
//!   for `cluster_rebuild_after`, the supervisor swaps in a fresh cluster
//!   connection ([`SharedCluster`]). The subscriber connections do not need
//!   it: meanwhile they reconnect to the masters of the last slot map read.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, Value};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::timeout;

use super::subscriber::{Channels, Connector, Subscriber};
use super::{keys, lock, next_backoff, BusEvent, BusShared, RedisConfig};
use crate::bus::{BusError, BusMessage};
use crate::room::StoreError;

/// Most retries the cluster client makes for one request (MOVED, ASK,
/// reconnects); the caller's timeout bounds the total anyway.
const CLUSTER_CLIENT_RETRIES: u32 = 8;

/// Hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// The cluster connection, replaceable. redis-rs 1.8's cluster client can
/// wedge when every master restarts at once: its slot refresh then fails in
/// a tight loop ("ClusterConnectionNotFound") and never reconnects (it
/// happens after a CLIENT KILL of every connection too: then the client's
/// "reconnect to initial nodes" never completes). The supervisor notices
/// `CLUSTER SLOTS` failing for `cluster_rebuild_after` and swaps in a fresh
/// connection from the same client (which drops the wedged one once no
/// request holds it).
#[derive(Clone)]
pub(crate) struct SharedCluster {
    client: Arc<ClusterClient>,
    conn: Arc<std::sync::RwLock<ClusterConnection>>,
}

impl SharedCluster {
    /// The current connection (a cheap handle).
    pub(crate) fn get(&self) -> ClusterConnection {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn open(
        client: &ClusterClient,
        config: &RedisConfig,
    ) -> Result<ClusterConnection, StoreError> {
        match timeout(
            config.connect_timeout + config.command_timeout,
            client.get_async_connection(),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(StoreError(format!("redis cluster: {e}"))),
            Err(_) => Err(StoreError("redis cluster: no answer in time".into())),
        }
    }

    /// Replaces the connection with a fresh one.
    async fn rebuild(&self, config: &RedisConfig) -> Result<(), StoreError> {
        let fresh = Self::open(&self.client, config).await?;
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }
}

/// The hash slot of a key or channel: the CRC16 (XMODEM) of its hash tag
/// (the text between the first `{` and the next `}`, when not empty) or of
/// the whole name, modulo 16384 (the Redis Cluster specification).
fn slot_of(key: &[u8]) -> u16 {
    let tag = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tag.unwrap_or(key)) % SLOTS
}

/// The slot of `room_id`'s channel (`arthas:{R}`, whose hash tag is the room
/// id itself), without building the channel name: the hot path's routing.
fn room_slot(room_id: &str) -> u16 {
    if room_id.is_empty() || room_id.contains('}') {
        // Not a tag of its own (never a valid room id): as Redis reads it.
        return slot_of(keys::channel(room_id).as_bytes());
    }
    crc16(room_id.as_bytes()) % SLOTS
}

/// CRC16-CCITT (XMODEM), table-driven, as Redis Cluster hashes keys.
fn crc16(bytes: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(bytes)
}

/// A master's address, as `CLUSTER SLOTS` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Node {
    host: String,
    port: u16,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One range of `CLUSTER SLOTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SlotRange {
    first: u16,
    last: u16,
    master: Node,
    replicas: Vec<Node>,
}

/// Which master (and replicas) serve which slots, sorted by first slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SlotMap(Vec<SlotRange>);

impl SlotMap {
    /// The master serving `slot`.
    fn master_of(&self, slot: u16) -> Option<&Node> {
        let after = self.0.partition_point(|r| r.first <= slot);
        let range = self.0.get(after.checked_sub(1)?)?;
        (range.first <= slot && slot <= range.last).then_some(&range.master)
    }

    /// The master serving `room_id`'s channel.
    fn master_of_room(&self, room_id: &str) -> Option<&Node> {
        self.master_of(room_slot(room_id))
    }

    fn masters(&self) -> BTreeSet<&Node> {
        self.0.iter().map(|r| &r.master).collect()
    }

    /// The replicas of `master`.
    fn replicas_of(&self, master: &Node) -> BTreeSet<&Node> {
        self.0
            .iter()
            .filter(|r| r.master == *master)
            .flat_map(|r| &r.replicas)
            .collect()
    }

    /// Reads a `CLUSTER SLOTS` reply: one array per range, `[first, last,
    /// [host, port, id, ...], replicas...]`. A node listed with an empty
    /// host does not know its own address (a lone node that never met
    /// another: a cluster of one master answers so): it is `seed_host`, the
    /// host of the first node URL, which is where such a cluster is
    /// reached.
    fn parse(reply: Value, seed_host: &str) -> Result<SlotMap, String> {
        let Value::Array(ranges) = reply else {
            return Err("not an array".into());
        };
        let mut map = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(parts) = range else {
                return Err("a range is not an array".into());
            };
            let slot = |v: Option<&Value>| match v {
                Some(Value::Int(n)) => u16::try_from(*n).ok().filter(|n| *n < SLOTS),
                _ => None,
            };
            let (Some(first), Some(last)) = (slot(parts.first()), slot(parts.get(1))) else {
                return Err("a range without its slots".into());
            };
            if first > last {
                return Err(format!("a range from {first} to {last}"));
            }
            let node = |v: &Value| node(v, seed_host);
            let Some(master) = parts.get(2).and_then(node) else {
                return Err(format!("the range from {first} without a usable master"));
            };
            // A replica whose address is unknown is left out.
            let replicas = parts.iter().skip(3).filter_map(node).collect();
            map.push(SlotRange {
                first,
                last,
                master,
                replicas,
            });
        }
        map.sort_by_key(|r| r.first);
        Ok(SlotMap(map))
    }
}

/// A node of a `CLUSTER SLOTS` range (`[host, port, id, ...]`), an empty
/// host read as `seed_host`; `None` when its address is unknown (`"?"`).
fn node(value: &Value, seed_host: &str) -> Option<Node> {
    let Value::Array(parts) = value else {
        return None;
    };
    let host = match parts.first()? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
        Value::SimpleString(s) => s.clone(),
        _ => return None,
    };
    let port = match parts.get(1)? {
        Value::Int(p) => u16::try_from(*p).ok()?,
        _ => return None,
    };
    if host == "?" {
        return None;
    }
    if host.is_empty() {
        return Some(Node {
            host: seed_host.to_owned(),
            port,
        });
    }
    Some(Node { host, port })
}

/// Whether `error` sends the command elsewhere (MOVED, or ASK during a
/// slot migration): it did not run here, and the slot map is stale.
pub(crate) fn redirected(error: &str) -> bool {
    moved_to(error).is_some() || error.starts_with("ASK ")
}

/// The node `MOVED <slot> <host>:<port>` names.
fn moved_to(error: &str) -> Option<Node> {
    let mut words = error.strip_prefix("MOVED ")?.split(' ');
    let (host, port) = words.nth(1)?.rsplit_once(':')?;
    if host.is_empty() {
        return None;
    }
    Some(Node {
        host: host.to_owned(),
        port: port.parse().ok()?,
    })
}

/// The connection serving a master's slots.
struct Shard {
    /// The node it goes to: the master, or one of its replicas while the
    /// master cannot be reached (a replica serves its master's shard
    /// channels, SSUBSCRIBE and SPUBLISH alike).
    node: Node,
    subscriber: Subscriber,
}

/// The slot map and a subscriber connection per master.
#[derive(Default)]
struct Routes {
    slots: SlotMap,
    /// By master.
    subscribers: HashMap<Node, Shard>,
}

impl Routes {
    /// The live connection serving `master`'s slots.
    fn at(&self, master: &Node) -> Option<Subscriber> {
        self.subscribers
            .get(master)
            .filter(|s| !s.subscriber.is_closed())
            .map(|s| s.subscriber.clone())
    }

    /// The live connection to `node` itself, whichever master it serves.
    fn to(&self, node: &Node) -> Option<Subscriber> {
        self.subscribers
            .values()
            .find(|s| s.node == *node && !s.subscriber.is_closed())
            .map(|s| s.subscriber.clone())
    }

    /// The master serving `room_id` and the live connection to it.
    fn route(&self, room_id: &str) -> Result<(&Node, Subscriber), String> {
        let node = self
            .slots
            .master_of_room(room_id)
            .ok_or("no master known for the room's slot")?;
        match self.at(node) {
            Some(s) => Ok((node, s)),
            None => Err(format!("reconnecting to {node}")),
        }
    }
}

/// The subscriber connections, shared by the bus and its supervisor.
struct Shards {
    /// Credentials and TLS (`rediss://`) of the first node URL, as the
    /// cluster client uses them for every node.
    base: ConnectionInfo,
    /// The first node URL's host: a node `CLUSTER SLOTS` lists without a
    /// host of its own is there ([`SlotMap::parse`]).
    seed_host: String,
    connector: Connector,
    routes: Mutex<Routes>,
    /// Asks the supervisor to read `CLUSTER SLOTS` now (a MOVED answer).
    refresh: Notify,
}

impl Shards {
    /// The live connection to the master serving `room_id`.
    fn route(&self, room_id: &str) -> Result<Subscriber, String> {
        lock(&self.routes).route(room_id).map(|(_, s)| s)
    }

    /// SSUBSCRIBE on the master serving the room, confirmed. A MOVED answer
    /// asks the supervisor for a fresh slot map and, when a connection to the
    /// named master is open, is retried there once.
    async fn ssubscribe(&self, config: &RedisConfig, room_id: &str) -> Result<(), String> {
        let subscriber = self.route(room_id)?;
        let channel = keys::channel(room_id);
        let wait = config.subscribe_timeout;
        let error = match subscriber.subscribe(vec![channel.clone()], wait).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let Some(node) = moved_to(&error) else {
            return Err(error);
        };
        self.refresh.notify_one();
        let elsewhere = lock(&self.routes).to(&node);
        match elsewhere {
            Some(s) => s.subscribe(vec![channel], wait).await,
            None => Err(error),
        }
    }

    /// SUNSUBSCRIBE on the master serving the room, confirmed.
    async fn sunsubscribe(&self, config: &RedisConfig, room_id: &str) -> Result<(), String> {
        let subscriber = self.route(room_id)?;
        subscriber
            .unsubscribe(vec![keys::channel(room_id)], config.subscribe_timeout)
            .await
    }
}

/// The cluster bus connection.
pub(crate) struct ClusterBus {
    /// The cluster client's routing connection (shared with store commands).
    conn: SharedCluster,
    /// The subscriber connections.
    shards: Arc<Shards>,
}

impl ClusterBus {
    /// The open connection to the master of `room_id`'s slot (a replica's
    /// while the master is unreachable), for a store script.
    pub(crate) fn connection_for(&self, room_id: &str) -> Option<Subscriber> {
        self.shards.route(room_id).ok().filter(|s| !s.is_closed())
    }

    /// A command sent by [`connection_for`](Self::connection_for)'s route
    /// was redirected: read the slot map now, not at the next probe.
    pub(crate) fn redirected(&self) {
        self.shards.refresh.notify_one();
    }

    /// Connects to the cluster, opens a subscriber connection to every
    /// master and starts the supervisor; the cluster connection is also the
    /// store's command path.
    pub(crate) async fn connect(
        nodes: &[String],
        config: &RedisConfig,
        shared: Arc<BusShared>,
        events: mpsc::Receiver<BusEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(SharedCluster, ClusterBus), StoreError> {
        let base = nodes
            .first()
            .ok_or_else(|| StoreError("redis cluster: no node given".into()))?
            .as_str()
            .into_connection_info()
            .map_err(|e| StoreError(format!("redis url: {e}")))?;
        let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str));
        if let Some(certificates) = config.tls.certificates() {
            builder = builder.certs(certificates);
        }
        let client = builder
            .use_protocol(ProtocolVersion::RESP3)
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.command_timeout)
            .retries(CLUSTER_CLIENT_RETRIES)
            .min_retry_wait(config.reconnect_backoff_min.as_millis() as u64)
            .max_retry_wait(config.reconnect_backoff_max.as_millis() as u64)
            .build()
            .map_err(|e| StoreError(format!("redis cluster: {e}")))?;
        let conn = SharedCluster::open(&client, config).await?;
        let conn = SharedCluster {
            client: Arc::new(client),
            conn: Arc::new(std::sync::RwLock::new(conn)),
        };
        let seed_host = match base.addr() {
            ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
            _ => String::new(),
        };
        let shards = Arc::new(Shards {
            base,
            seed_host,
            connector: Connector::new(config.tls.clone()),
            routes: Mutex::new(Routes::default()),
            refresh: Notify::new(),
        });
        let supervisor = Supervisor {
            cluster: conn.clone(),
            shards: shards.clone(),
            config: config.clone(),
            shared,
        };
        // A subscriber connection to every master now, so a refused
        // connection, a certificate or a password problem is reported as such.
        let slots = supervisor
            .slot_map()
            .await
            .map_err(|e| StoreError(format!("redis cluster bus: {}", e.0)))?;
        supervisor
            .follow(slots, &mut Pending::default())
            .await
            .map_err(|e| StoreError(format!("redis cluster bus: {}", e.0)))?;
        tokio::spawn(supervise(supervisor, events, shutdown));
        Ok((conn.clone(), ClusterBus { conn, shards }))
    }

    pub(crate) async fn subscribe(
        &self,
        config: &RedisConfig,
        shared: &BusShared,
        room_id: &str,
    ) -> Result<(), BusError> {
        let _gate = shared.gate.read().await;
        shared.want(room_id);
        match self.shards.ssubscribe(config, room_id).await {
            Ok(()) => Ok(()),
            Err(e) => {
                shared.unwant(room_id);
                shared.stale().insert(room_id.to_owned());
                Err(BusError(format!("ssubscribe: {e}")))
            }
        }
    }

    pub(crate) async fn unsubscribe(
        &self,
        config: &RedisConfig,
        shared: &BusShared,
        room_id: &str,
    ) -> Result<(), BusError> {
        let _gate = shared.gate.read().await;
        shared.unwant(room_id);
        match self.shards.sunsubscribe(config, room_id).await {
            Ok(()) => Ok(()),
            Err(e) => {
                shared.stale().insert(room_id.to_owned());
                Err(BusError(format!("sunsubscribe: {e}")))
            }
        }
    }

    /// Hot path: one SPUBLISH, bounded by the publish timeout.
    ///
    /// A room this relay hosts is subscribed by this relay itself, so the
    /// shard's master must count at least one receiver. None means the
    /// subscription is gone without a word (a replica that took over its
    /// master's slots by CLUSTER FAILOVER never had it): nobody got the
    /// message, so the publish fails (the sender is told) and the room is
    /// resubscribed.
    ///
    /// It goes on the subscriber connection serving the room's slot (RESP3
    /// lets a subscribed connection run SPUBLISH), read by our own reader.
    /// When there is no such connection, or it answers MOVED or ASK (the
    /// slot moved: the supervisor is asked for a fresh map), the redis-rs
    /// cluster client sends it instead, following redirections; an
    /// unanswered SPUBLISH is never sent twice.
    pub(crate) async fn publish(
        &self,
        config: &RedisConfig,
        shared: &BusShared,
        room_id: &str,
        message: &BusMessage,
    ) -> Result<u64, BusError> {
        let route = self.shards.route(room_id);
        let receivers = match route {
            Ok(subscriber) => {
                match subscriber
                    .publish(room_id, message, config.publish_timeout)
                    .await
                {
                    Ok(n) => u64::try_from(n).unwrap_or(0),
                    // Refused, so not run: the slot moved.
                    Err(e) if redirected(&e) => {
                        self.shards.refresh.notify_one();
                        self.publish_routed(config, room_id, message).await?
                    }
                    // Maybe run (no answer, the connection ended): never
                    // sent twice; the sender is told.
                    Err(e) => return Err(BusError(format!("spublish: {e}"))),
                }
            }
            // No connection to the room's master yet: not sent.
            Err(_) => self.publish_routed(config, room_id, message).await?,
        };
        if receivers == 0 && shared.rooms().contains(room_id) {
            shared.report(BusEvent::ChannelDropped(room_id.to_owned()));
            return Err(BusError(
                "spublish: nobody subscribed, not even this relay; resubscribing".into(),
            ));
        }
        Ok(receivers)
    }
}

impl ClusterBus {
    /// SPUBLISH through the redis-rs cluster client (MOVED and ASK followed).
    async fn publish_routed(
        &self,
        config: &RedisConfig,
        room_id: &str,
        message: &BusMessage,
    ) -> Result<u64, BusError> {
        let mut conn = self.conn.get();
        let mut cmd = redis::cmd("SPUBLISH");
        cmd.arg(keys::channel(room_id)).arg(&message.to_wire()[..]);
        let call = cmd.query_async::<Value>(&mut conn);
        match within("spublish", config.publish_timeout, call).await? {
            Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
            other => Err(BusError(format!("spublish: unexpected reply {other:?}"))),
        }
    }
}

/// Awaits a Redis call within `limit`, naming the call in the error.
async fn within<T>(
    what: &str,
    limit: std::time::Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, BusError> {
    match timeout(limit, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(BusError(format!("{what}: {e}"))),
        Err(_) => Err(BusError(format!("{what}: no answer in time"))),
    }
}

/// What one resubscription pass did.
struct Pass {
    /// Rooms confirmed subscribed.
    done: Vec<String>,
    /// Rooms to try again: those that failed, those not tried after a
    /// failure on their connection, those whose master has no connection.
    left: Vec<String>,
}

/// Resubscribes `batch` on the masters serving the rooms now, one channel
/// per command: the connections side by side, at most
/// `resubscribe_concurrency` in flight on each. A connection's part stops at
/// its first failure (a stale slot map or a dead connection fails the rest
/// too, the latter only after `subscribe_timeout` each).
async fn resubscribe_pass(shards: &Shards, config: &RedisConfig, batch: Vec<String>) -> Pass {
    let mut by_node: HashMap<Node, (Subscriber, Vec<String>)> = HashMap::new();
    let mut left = Vec::new();
    {
        let routes = lock(&shards.routes);
        for room in batch {
            match routes.route(&room) {
                Ok((node, subscriber)) => by_node
                    .entry(node.clone())
                    .or_insert_with(|| (subscriber, Vec::new()))
                    .1
                    .push(room),
                Err(_) => left.push(room),
            }
        }
    }
    let parts = by_node
        .into_iter()
        .map(|(node, (subscriber, rooms))| shard_pass(node, subscriber, config, rooms));
    let mut done = Vec::new();
    for (ok, failed) in join_all(parts).await {
        done.extend(ok);
        left.extend(failed);
    }
    Pass { done, left }
}

/// One connection's part of a pass: (confirmed, left).
async fn shard_pass(
    node: Node,
    subscriber: Subscriber,
    config: &RedisConfig,
    rooms: Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let mut done = Vec::new();
    {
        let subscriber = &subscriber;
        let mut results = stream::iter(rooms.iter().cloned())
            .map(|room| async move {
                let channel = vec![keys::channel(&room)];
                let result = subscriber
                    .subscribe(channel, config.subscribe_timeout)
                    .await;
                (room, result)
            })
            .buffer_unordered(config.resubscribe_concurrency.max(1));
        while let Some((room, result)) = results.next().await {
            match result {
                Ok(()) => done.push(room),
                Err(e) => {
                    tracing::debug!(room = %room, node = %node, error = %e, "redis cluster bus: resubscribe failed");
                    break;
                }
            }
        }
    }
    let confirmed: HashSet<&String> = done.iter().collect();
    let left = rooms
        .iter()
        .filter(|room| !confirmed.contains(room))
        .cloned()
        .collect();
    (done, left)
}

/// Rooms waiting to be resubscribed.
#[derive(Default)]
struct Pending {
    /// Every hosted room (a connection was lost).
    all: bool,
    /// Single rooms: dropped by the server, or whose master changed.
    rooms: HashSet<String>,
    /// When the oldest unresolved loss was noticed.
    since: Option<Instant>,
}

impl Pending {
    fn add(&mut self, event: BusEvent) {
        match event {
            BusEvent::ConnectionLost => self.all = true,
            BusEvent::ChannelDropped(room) => {
                self.rooms.insert(room);
            }
        }
        self.noticed();
    }

    /// Something needs repair (maybe no room: a master without a
    /// connection).
    fn noticed(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }
}

/// What the supervisor task owns.
struct Supervisor {
    cluster: SharedCluster,
    shards: Arc<Shards>,
    config: RedisConfig,
    shared: Arc<BusShared>,
}

impl Supervisor {
    /// `CLUSTER SLOTS`, through the cluster client.
    async fn slot_map(&self) -> Result<SlotMap, BusError> {
        let mut conn = self.cluster.get();
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let call = cmd.query_async::<Value>(&mut conn);
        let reply = within("cluster slots", self.config.command_timeout, call).await?;
        SlotMap::parse(reply, &self.shards.seed_host)
            .map_err(|e| BusError(format!("cluster slots: {e}")))
    }

    /// Whether the connections follow `slots`: the same map, and a live
    /// connection to every master itself.
    fn follows(&self, slots: &SlotMap) -> bool {
        let routes = lock(&self.shards.routes);
        routes.slots == *slots
            && slots.masters().into_iter().all(|m| {
                routes
                    .subscribers
                    .get(m)
                    .is_some_and(|s| s.node == *m && !s.subscriber.is_closed())
            })
    }

    /// Makes the connections follow `slots`: adds to `pending` the hosted
    /// rooms whose master changed; keeps a connection to a replica that is
    /// now its shard's master; retires the connections of nodes that no
    /// longer serve slots (and closed ones) before anything is subscribed
    /// elsewhere; then opens a connection to every master without one (or
    /// served by a replica) and adds the rooms it serves. A master that
    /// cannot be reached is served by one of its replicas meanwhile, and the
    /// call fails (the supervisor retries the master).
    async fn follow(&self, slots: SlotMap, pending: &mut Pending) -> Result<(), BusError> {
        let mut retired: Vec<Subscriber> = Vec::new();
        {
            // No subscribe may pick a connection about to be retired.
            let _gate = self.shared.gate.write().await;
            let wanted: Vec<String> = self.shared.rooms().iter().cloned().collect();
            let mut routes = lock(&self.shards.routes);
            if routes.slots != slots {
                let before = pending.rooms.len();
                for room in wanted {
                    if routes.slots.master_of_room(&room) != slots.master_of_room(&room) {
                        pending.rooms.insert(room);
                    }
                }
                tracing::info!(
                    moved_rooms = pending.rooms.len() - before,
                    "redis cluster bus: the slot map changed; resubscribing the rooms whose master changed"
                );
            }
            let masters: HashSet<Node> = slots.masters().into_iter().cloned().collect();
            let old: Vec<(Node, Shard)> = routes.subscribers.drain().collect();
            for (master, shard) in old {
                let key = if masters.contains(&master) {
                    master
                } else {
                    // A replica that took its master's slots keeps serving them.
                    shard.node.clone()
                };
                let keep = masters.contains(&key)
                    && !shard.subscriber.is_closed()
                    && !routes.subscribers.contains_key(&key);
                if keep {
                    routes.subscribers.insert(key, shard);
                } else {
                    retired.push(shard.subscriber);
                }
            }
            routes.slots = slots;
        }
        for old in retired {
            old.retire().await;
        }
        // Masters without a connection, or served by a replica (then true).
        let todo: Vec<(Node, bool, Vec<Node>)> = {
            let routes = lock(&self.shards.routes);
            routes
                .slots
                .masters()
                .into_iter()
                .filter_map(|m| match routes.subscribers.get(m) {
                    Some(s) if s.node == *m => None,
                    Some(_) => Some((m.clone(), true, Vec::new())),
                    None => Some((
                        m.clone(),
                        false,
                        routes.slots.replicas_of(m).into_iter().cloned().collect(),
                    )),
                })
                .collect()
        };
        let mut failure = None;
        for (master, degraded, replicas) in todo {
            match self.open(&master).await {
                Ok(subscriber) => {
                    let shard = Shard {
                        node: master.clone(),
                        subscriber,
                    };
                    let replaced = lock(&self.shards.routes)
                        .subscribers
                        .insert(master.clone(), shard);
                    // The replica's connection ends before its rooms are
                    // subscribed on the master: a message is counted by one
                    // of the two, never both.
                    if let Some(replaced) = replaced {
                        replaced.subscriber.retire().await;
                    }
                    self.add_rooms_of(&master, pending);
                    tracing::debug!(node = %master, "redis cluster bus: subscriber connection opened");
                }
                Err(e) => {
                    failure = Some(BusError(format!("{master}: {}", e.0)));
                    if degraded {
                        continue;
                    }
                    for replica in replicas {
                        let Ok(subscriber) = self.open(&replica).await else {
                            continue;
                        };
                        tracing::warn!(master = %master, replica = %replica, "redis cluster bus: a master is unreachable; its replica serves its rooms meanwhile");
                        let shard = Shard {
                            node: replica,
                            subscriber,
                        };
                        lock(&self.shards.routes)
                            .subscribers
                            .insert(master.clone(), shard);
                        self.add_rooms_of(&master, pending);
                        break;
                    }
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// A new subscriber connection to `node`.
    async fn open(&self, node: &Node) -> Result<Subscriber, BusError> {
        let info = node_info(&self.shards.base, node);
        self.shards
            .connector
            .connect(
                &info,
                Channels::Sharded,
                self.config.connect_timeout,
                self.config.publish_timeout,
                self.shared.clone(),
            )
            .await
    }

    /// Adds the hosted rooms `master` serves to `pending`.
    fn add_rooms_of(&self, master: &Node, pending: &mut Pending) {
        let wanted: Vec<String> = self.shared.rooms().iter().cloned().collect();
        let routes = lock(&self.shards.routes);
        pending.rooms.extend(
            wanted
                .into_iter()
                .filter(|r| routes.slots.master_of_room(r) == Some(master)),
        );
    }

    /// PINGs every connection; closes those that do not answer. Whether
    /// all answered.
    async fn probe(&self) -> bool {
        let subscribers: Vec<(Node, Subscriber)> = lock(&self.shards.routes)
            .subscribers
            .iter()
            .map(|(n, s)| (n.clone(), s.subscriber.clone()))
            .collect();
        let wait = self.config.command_timeout;
        let pings = subscribers.iter().map(|(_, s)| s.ping(wait));
        let outcomes = join_all(pings).await;
        let mut healthy = true;
        for ((master, subscriber), outcome) in subscribers.iter().zip(outcomes) {
            if let Err(e) = outcome {
                tracing::warn!(master = %master, error = %e, "redis cluster bus: probe failed");
                healthy = false;
                {
                    let mut routes = lock(&self.shards.routes);
                    if routes
                        .subscribers
                        .get(master)
                        .is_some_and(|s| s.subscriber.same(subscriber))
                    {
                        routes.subscribers.remove(master);
                    }
                }
                subscriber.retire().await;
            }
        }
        healthy
    }
}

/// `base` (credentials, TLS or not) aimed at `node`.
fn node_info(base: &ConnectionInfo, node: &Node) -> ConnectionInfo {
    let addr = match base.addr() {
        ConnectionAddr::TcpTls { insecure, .. } => ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure: *insecure,
            tls_params: None,
        },
        _ => ConnectionAddr::Tcp(node.host.clone(), node.port),
    };
    base.clone().set_addr(addr)
}

/// Follows the slot map, probes the connections and resubscribes what was
/// lost, one channel per command.
async fn supervise(
    sup: Supervisor,
    mut events: mpsc::Receiver<BusEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = sup.config.clone();
    let shared = sup.shared.clone();
    let mut pending = Pending::default();
    let mut probe = tokio::time::interval(config.bus_probe_interval);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slots_failing = SlotsFailing::default();
    loop {
        let ticked = tokio::select! {
            _ = shutdown.changed() => return,
            event = events.recv() => match event {
                None => return,
                Some(event) => {
                    pending.add(event);
                    false
                }
            },
            _ = probe.tick() => true,
            _ = sup.shards.refresh.notified() => true,
        };
        if ticked {
            // A failover (CLUSTER FAILOVER, a master lost) moves slots to a
            // replica that never had the shard's subscriptions, and the old
            // master does not always say so (no SUNSUBSCRIBE): follow the
            // slot map.
            let attempt = Instant::now();
            match sup.slot_map().await {
                Ok(slots) => {
                    slots_failing.note(true, attempt, &config);
                    if !sup.follows(&slots) {
                        tracing::debug!(
                            "redis cluster bus: the slot map changed or a master has no connection"
                        );
                        pending.noticed();
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e.0, "redis cluster bus: CLUSTER SLOTS failed");
                    if slots_failing.note(false, attempt, &config) {
                        rebuild(&sup).await;
                    }
                }
            }
            if pending.since.is_none() && !sup.probe().await {
                pending.add(BusEvent::ConnectionLost);
            }
        }
        let Some(since) = pending.since else { continue };
        shared.set_down();
        let mut delay = config.reconnect_backoff_min;
        let mut done: HashSet<String> = HashSet::new();
        loop {
            let attempt = Instant::now();
            while let Ok(event) = events.try_recv() {
                pending.add(event);
            }
            if shared.take_overflow() {
                pending.add(BusEvent::ConnectionLost);
            }
            let mut failed = false;
            let slots = match sup.slot_map().await {
                Ok(slots) => {
                    slots_failing.note(true, attempt, &config);
                    slots
                }
                Err(e) => {
                    tracing::warn!(error = %e.0, "redis cluster bus: CLUSTER SLOTS failed");
                    failed = true;
                    if slots_failing.note(false, attempt, &config) {
                        // The cluster client may be wedged.
                        rebuild(&sup).await;
                    }
                    // Reconnect what was lost where the slots were: the
                    // subscriber connections do not need the cluster client.
                    lock(&sup.shards.routes).slots.clone()
                }
            };
            if let Err(e) = sup.follow(slots, &mut pending).await {
                tracing::warn!(error = %e.0, "redis cluster bus: a master is unreachable");
                failed = true;
            }
            if std::mem::take(&mut pending.all) {
                pending.rooms.extend(shared.rooms().iter().cloned());
            }
            let batch: Vec<String> = {
                let wanted = shared.rooms();
                pending
                    .rooms
                    .drain()
                    .filter(|r| wanted.contains(r))
                    .collect()
            };
            let tried = !batch.is_empty();
            if tried || !failed {
                let pass = resubscribe_pass(&sup.shards, &config, batch).await;
                failed |= !pass.left.is_empty();
                done.extend(pass.done);
                pending.rooms.extend(pass.left);
            }
            if !failed {
                break;
            }
            tracing::warn!(
                left = pending.rooms.len(),
                "redis cluster bus: rooms not yet resubscribed; retrying"
            );
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = next_backoff(delay, &config);
        }
        {
            // Rooms given up meanwhile must not stay subscribed.
            let _gate = shared.gate.write().await;
            let done: Vec<String> = done.iter().cloned().collect();
            for room in shared.unwanted(&done) {
                if sup.shards.sunsubscribe(&config, &room).await.is_ok() {
                    shared.stale().remove(&room);
                } else {
                    shared.stale().insert(room);
                }
            }
        }
        pending.since = None;
        let took = since.elapsed();
        tracing::info!(
            rooms = done.len(),
            took_ms = took.as_millis() as u64,
            "redis cluster bus: subscriptions restored"
        );
        shared.recovered(Some(took), done.len());
    }
}

/// Since when `CLUSTER SLOTS` (through the cluster client) has failed.
#[derive(Default)]
struct SlotsFailing(Option<Instant>);

impl SlotsFailing {
    /// Notes the outcome of an attempt started at `attempt`; true when the
    /// failures have lasted `cluster_rebuild_after` (then the count starts
    /// over): the cluster connection should be rebuilt.
    fn note(&mut self, ok: bool, attempt: Instant, config: &RedisConfig) -> bool {
        if ok {
            self.0 = None;
            return false;
        }
        if self.0.get_or_insert(attempt).elapsed() >= config.cluster_rebuild_after {
            self.0 = None;
            return true;
        }
        false
    }
}

/// Swaps in a fresh cluster connection (commands, and SPUBLISH when a
/// master's own connection cannot take it).
async fn rebuild(sup: &Supervisor) {
    match sup.cluster.rebuild(&sup.config).await {
        Ok(()) => {
            tracing::warn!(
                "redis cluster bus: cluster connection rebuilt after failing CLUSTER SLOTS"
            )
        }
        Err(e) => tracing::warn!(error = %e.0, "redis cluster bus: rebuild failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn slots_are_the_crc16_of_the_hash_tag_as_redis_rs_computes_them() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot_of(b"foo"), 12182);
        for key in [
            "arthas:{room-1}",
            "arthas:{V1StGXR8_Z5jdHi6B-myT}",
            "arthas:room:{V1StGXR8_Z5jdHi6B-myT}:members",
            "{}x",
            "a{}{b}",
            "no tag",
            "{unclosed",
            "",
        ] {
            assert_eq!(
                Slot::new(slot_of(key.as_bytes())),
                Some(Slot::for_key(key)),
                "{key}"
            );
        }
        assert_eq!(
            slot_of(keys::channel("r").as_bytes()),
            slot_of(b"{r}"),
            "a room's channel is in the slot of its hash tag"
        );
    }

    #[test]
    fn a_rooms_slot_is_its_channels_slot() {
        for room in ["r", "V1StGXR8_Z5jdHi6B-myT", "room-1", "", "a}b", "}", "{x"] {
            assert_eq!(
                room_slot(room),
                slot_of(keys::channel(room).as_bytes()),
                "{room:?}"
            );
        }
    }

    #[test]
    fn the_slot_map_names_the_master_of_every_slot() {
        let node = |port| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = |first, last, port| {
            Value::Array(vec![
                Value::Int(first),
                Value::Int(last),
                node(port),
                node(port + 100),
            ])
        };
        let map = SlotMap::parse(
            Value::Array(vec![
                range(10923, 16383, 7003),
                range(0, 5460, 7001),
                range(5461, 10922, 7002),
            ]),
            "seed",
        )
        .expect("valid");
        let port = |slot| map.master_of(slot).map(|n| n.port);
        assert_eq!(port(0), Some(7001));
        assert_eq!(port(5460), Some(7001));
        assert_eq!(port(5461), Some(7002));
        assert_eq!(port(16383), Some(7003));
        assert_eq!(map.masters().len(), 3);
        let master = map.master_of(0).expect("a master").clone();
        let replicas: Vec<u16> = map.replicas_of(&master).iter().map(|n| n.port).collect();
        assert_eq!(replicas, vec![7101]);
        let gap = SlotMap::parse(
            Value::Array(vec![range(0, 99, 7001), range(200, 300, 7002)]),
            "seed",
        )
        .expect("valid");
        assert_eq!(gap.master_of(150), None);
        assert_eq!(gap.master_of(301), None);
        assert!(SlotMap::parse(Value::Array(vec![Value::Int(1)]), "seed").is_err());
        assert!(SlotMap::parse(Value::Array(vec![range(0, 16384, 7001)]), "seed").is_err());
    }

    #[test]
    fn a_lone_master_without_its_own_address_is_the_seed_host() {
        // What a cluster of one master answers (it never met another node).
        let lone = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(16383),
            Value::Array(vec![
                Value::BulkString(Vec::new()),
                Value::Int(7001),
                Value::BulkString(b"id".to_vec()),
            ]),
        ])]);
        let map = SlotMap::parse(lone, "redis-0.example").expect("valid");
        let master = map.master_of(42).expect("a master");
        assert_eq!(
            (master.host.as_str(), master.port),
            ("redis-0.example", 7001)
        );
        // An unknown address ("?") is never guessed.
        let unknown = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(16383),
            Value::Array(vec![Value::BulkString(b"?".to_vec()), Value::Int(7001)]),
        ])]);
        assert!(SlotMap::parse(unknown, "redis-0.example").is_err());
    }

    #[test]
    fn a_moved_answer_names_its_node() {
        assert_eq!(
            moved_to("MOVED 3999 127.0.0.1:6381"),
            Some(Node {
                host: "127.0.0.1".into(),
                port: 6381
            })
        );
        assert_eq!(moved_to("MOVED 3999 :6381"), None);
        assert_eq!(moved_to("ASK 3999 127.0.0.1:6381"), None);
        assert_eq!(
            moved_to("CROSSSLOT Keys in request don't hash to the same slot"),
            None
        );
    }
}
