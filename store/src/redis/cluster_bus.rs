//! The cluster bus: sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7+).
//!
//! The redis-rs cluster client keeps one RESP3 connection per shard and
//! carries commands, SSUBSCRIBE and the pushes on it; a room's channel
//! `arthas:{R}` lives in the room's slot, so a room's messages pass through
//! one shard in one order.
//!
//! The client (redis 1.8) has two bugs this module works around: after a
//! node connection drops it resubscribes all of that node's channels in one
//! SSUBSCRIBE, which Redis refuses with CROSSSLOT, so those rooms go silent;
//! and when a slot migrates, the old owner sends SUNSUBSCRIBE and the client
//! forgets the channel. Tests cause both faults and check that delivery
//! resumes in every room (`store/tests/bus.rs`, `tests/cluster.rs`). The
//! push handler turns a `Disconnection` push into "resubscribe every hosted
//! room" and an unrequested SUNSUBSCRIBE into "resubscribe this room"; the
//! supervisor here re-issues SSUBSCRIBE one channel per command (bounded
//! concurrency), retrying with backoff until each is confirmed or no longer
//! wanted.
//!
//! A failover (CLUSTER FAILOVER, a master lost) hands the slots to a replica
//! that never had the shard's subscriptions, and the old master does not
//! always send SUNSUBSCRIBE (Redis 7.0): the supervisor reads `CLUSTER
//! SLOTS` every `bus_probe_interval` and resubscribes every hosted room when
//! the slots' masters changed. Until then a publish nobody received in a
//! room this relay hosts fails (the sender is told) and resubscribes that
//! room (`tests/resilience.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use super::{keys, next_backoff, BusEvent, BusShared, PushDispatch, RedisConfig};
use crate::bus::BusError;
use crate::room::StoreError;

/// Most retries the cluster client makes for one request (MOVED, ASK,
/// reconnects); the caller's timeout bounds the total anyway.
const CLUSTER_CLIENT_RETRIES: u32 = 8;

/// The cluster connection, replaceable. redis-rs 1.8's cluster client can
/// wedge when every master restarts at once: its slot refresh then fails in
/// a tight loop ("ClusterConnectionNotFound") and never reconnects. The
/// supervisor notices subscriptions failing for `cluster_rebuild_after` (it
/// happens after a CLIENT KILL of every connection too: then the client's
/// "reconnect to initial nodes" never completes) and swaps in a fresh connection from the same client (which drops the
/// wedged one once no request holds it).
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

/// The cluster bus connection.
pub(crate) struct ClusterBus {
    /// The cluster client's routing connection (shared with store commands).
    conn: SharedCluster,
}

impl ClusterBus {
    /// Connects to the cluster and starts the supervisor; the connection is
    /// also the store's command path.
    pub(crate) async fn connect(
        nodes: &[String],
        config: &RedisConfig,
        shared: Arc<BusShared>,
        events: mpsc::Receiver<BusEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(SharedCluster, ClusterBus), StoreError> {
        let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str));
        if let Some(certificates) = config.tls.certificates() {
            builder = builder.certs(certificates);
        }
        let client = builder
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(PushDispatch::new(shared.clone()))
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
        tokio::spawn(supervise(
            conn.clone(),
            config.clone(),
            shared,
            events,
            shutdown,
        ));
        Ok((conn.clone(), ClusterBus { conn }))
    }

    pub(crate) async fn subscribe(
        &self,
        config: &RedisConfig,
        shared: &BusShared,
        room_id: &str,
    ) -> Result<(), BusError> {
        let _gate = shared.gate.read().await;
        shared.want(room_id);
        match ssubscribe(&self.conn.get(), config, room_id).await {
            Ok(()) => Ok(()),
            Err(e) => {
                shared.unwant(room_id);
                shared.stale().insert(room_id.to_owned());
                Err(e)
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
        match sunsubscribe(&self.conn.get(), config, room_id).await {
            Ok(()) => Ok(()),
            Err(e) => {
                shared.stale().insert(room_id.to_owned());
                Err(e)
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
    pub(crate) async fn publish(
        &self,
        config: &RedisConfig,
        shared: &BusShared,
        room_id: &str,
        wire: &[u8],
    ) -> Result<u64, BusError> {
        let mut conn = self.conn.get();
        let mut cmd = redis::cmd("SPUBLISH");
        cmd.arg(keys::channel(room_id)).arg(wire);
        let call = cmd.query_async::<Value>(&mut conn);
        let receivers = match within("spublish", config.publish_timeout, call).await? {
            Value::Int(n) => u64::try_from(n).unwrap_or(0),
            other => return Err(BusError(format!("spublish: unexpected reply {other:?}"))),
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

/// One channel per command: a multi-channel SSUBSCRIBE across slots is
/// refused with CROSSSLOT.
async fn ssubscribe(
    conn: &ClusterConnection,
    config: &RedisConfig,
    room_id: &str,
) -> Result<(), BusError> {
    let mut conn = conn.clone();
    let call = conn.ssubscribe(keys::channel(room_id));
    within("ssubscribe", config.subscribe_timeout, call).await
}

async fn sunsubscribe(
    conn: &ClusterConnection,
    config: &RedisConfig,
    room_id: &str,
) -> Result<(), BusError> {
    let mut conn = conn.clone();
    let call = conn.sunsubscribe(keys::channel(room_id));
    within("sunsubscribe", config.subscribe_timeout, call).await
}

/// What one resubscription pass did.
struct Pass {
    /// Rooms confirmed subscribed.
    done: Vec<String>,
    /// Rooms to try again: the one that failed and those not tried after it.
    left: Vec<String>,
    /// Whether any subscription succeeded.
    progressed: bool,
}

/// Resubscribes `batch` one channel per command, at most
/// `resubscribe_concurrency` in flight, and stops at the first failure: when
/// the client is wedged every attempt would wait the whole
/// `subscribe_timeout`, and the rebuild that cures it must not wait for all
/// of them.
async fn resubscribe_pass(
    conn: &ClusterConnection,
    config: &RedisConfig,
    batch: Vec<String>,
) -> Pass {
    let mut done = Vec::new();
    {
        let mut results = stream::iter(batch.iter().cloned())
            .map(|room| async move {
                let result = ssubscribe(conn, config, &room).await;
                (room, result)
            })
            .buffer_unordered(config.resubscribe_concurrency.max(1));
        while let Some((room, result)) = results.next().await {
            match result {
                Ok(()) => done.push(room),
                Err(e) => {
                    tracing::debug!(room = %room, error = %e.0, "redis cluster bus: resubscribe failed");
                    break;
                }
            }
        }
    }
    let confirmed: HashSet<&String> = done.iter().collect();
    let left: Vec<String> = batch
        .iter()
        .filter(|room| !confirmed.contains(room))
        .cloned()
        .collect();
    Pass {
        progressed: !done.is_empty(),
        done,
        left,
    }
}

/// Which node is master of which slot range (`CLUSTER SLOTS`: the start of
/// each range and its master), sorted, to notice a failover.
async fn slot_masters(
    conn: &ClusterConnection,
    config: &RedisConfig,
) -> Result<Vec<String>, BusError> {
    let mut conn = conn.clone();
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    let call = cmd.query_async::<Value>(&mut conn);
    let Value::Array(ranges) = within("cluster slots", config.command_timeout, call).await? else {
        return Err(BusError("cluster slots: not an array".into()));
    };
    let mut masters: Vec<String> = ranges
        .iter()
        .map(|range| match range {
            Value::Array(parts) => format!("{:?} {:?}", parts.first(), parts.get(2)),
            other => format!("{other:?}"),
        })
        .collect();
    masters.sort();
    Ok(masters)
}

/// Rooms waiting to be resubscribed.
#[derive(Default)]
struct Pending {
    /// Every hosted room (a connection was lost; which shard is unknown).
    all: bool,
    /// Single rooms the server unsubscribed.
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
        self.since.get_or_insert_with(Instant::now);
    }
}

/// Resubscribes what the push handler reports lost, one channel per command.
async fn supervise(
    cluster: SharedCluster,
    config: RedisConfig,
    shared: Arc<BusShared>,
    mut events: mpsc::Receiver<BusEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pending = Pending::default();
    let mut probe = tokio::time::interval(config.bus_probe_interval);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut masters: Option<Vec<String>> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            event = events.recv() => match event {
                None => return,
                Some(event) => pending.add(event),
            },
            _ = probe.tick() => {
                // A failover (CLUSTER FAILOVER, a master lost) moves slots to
                // a replica that never had the shard's subscriptions, and the
                // old master does not always say so (no SUNSUBSCRIBE): when the
                // slots' masters change, resubscribe every hosted room.
                match slot_masters(&cluster.get(), &config).await {
                    Ok(now) => {
                        if masters.as_ref().is_some_and(|before| *before != now) {
                            tracing::info!("redis cluster bus: the slots' masters changed; resubscribing");
                            pending.add(BusEvent::ConnectionLost);
                        }
                        masters = Some(now);
                    }
                    Err(e) => tracing::debug!(error = %e.0, "redis cluster bus: CLUSTER SLOTS failed"),
                }
            }
        }
        let Some(since) = pending.since else { continue };
        shared.set_down();
        let mut delay = config.reconnect_backoff_min;
        let mut failing_since: Option<Instant> = None;
        let mut done: HashSet<String> = HashSet::new();
        loop {
            while let Ok(event) = events.try_recv() {
                pending.add(event);
            }
            if shared.take_overflow() {
                pending.add(BusEvent::ConnectionLost);
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
            if batch.is_empty() {
                break;
            }
            let pass_started = Instant::now();
            let pass = resubscribe_pass(&cluster.get(), &config, batch).await;
            let failed = !pass.left.is_empty();
            done.extend(pass.done);
            pending.rooms.extend(pass.left);
            if pass.progressed {
                failing_since = None;
            } else if failing_since.get_or_insert(pass_started).elapsed()
                >= config.cluster_rebuild_after
            {
                // Nothing gets through: the client may be wedged. Start over.
                match cluster.rebuild(&config).await {
                    Ok(()) => {
                        tracing::warn!(
                            "redis cluster bus: connection rebuilt after failing subscriptions"
                        );
                        pending.rooms.extend(shared.rooms().iter().cloned());
                    }
                    Err(e) => tracing::warn!(error = %e.0, "redis cluster bus: rebuild failed"),
                }
                failing_since = None;
            }
            if failed {
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
        }
        {
            // Rooms given up meanwhile must not stay subscribed.
            let _gate = shared.gate.write().await;
            let done: Vec<String> = done.iter().cloned().collect();
            let conn = cluster.get();
            for room in shared.unwanted(&done) {
                if sunsubscribe(&conn, &config, &room).await.is_ok() {
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
