//! The standalone bus: PUBLISH/SUBSCRIBE on one RESP3 connection.
//!
//! One redis-rs `ConnectionManager` carries the relay's publishes, its
//! subscribe commands and the message pushes; pushes go straight to
//! [`PushDispatch`](super::PushDispatch), which hands them to the relay's
//! sink in arrival order (Redis orders a channel's messages, so every relay
//! sees one order per room).
//!
//! Faults: when the connection drops, the manager reconnects with backoff
//! and replays the subscriptions it confirmed. The supervisor here learns of
//! the loss from the `Disconnection` push (or a PING probe that fails), marks
//! the bus down so publishes fail at once instead of queueing, and once a
//! PING answers again subscribes every hosted room once more (idempotent on
//! the server) before marking the bus up: the replay's outcome is never
//! assumed.
//!
//! Sentinel mode: the connection goes to the master the sentinels name. The
//! manager alone would reconnect to the old address, a demoted master where
//! PUBLISH still answers but reaches nobody on the new one, so after a loss
//! the supervisor asks the sentinels first and, when the master moved,
//! replaces the manager by one for the new master before resubscribing; it
//! also asks every `sentinel_check_interval` and does the same when the
//! answer changes. The bus stays down (publishes fail fast) until the
//! sentinels name a master that answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, MissedTickBehavior};

use super::sentinel::{self, MasterLocator};
use super::{keys, lock, next_backoff, BusEvent, BusShared, PushDispatch, RedisConfig};
use crate::bus::BusError;
use crate::room::StoreError;

/// Where the bus connects.
pub(crate) enum BusTarget {
    /// One server (the manager reconnects to it).
    Fixed(Box<redis::Client>),
    /// The master the sentinels name (RESP3 connections).
    Sentinel(Arc<MasterLocator>),
}

/// The manager in use, and the flag that retires its push sender; replaced
/// when a Sentinel failover moved the master.
type ManagerSlot = Arc<Mutex<(ConnectionManager, Arc<AtomicBool>)>>;

/// The standalone bus connection.
pub(crate) struct StandaloneBus {
    /// Commands and pushes on one reconnecting RESP3 connection.
    manager: ManagerSlot,
}

fn new_manager(
    client: redis::Client,
    config: &RedisConfig,
    shared: &Arc<BusShared>,
) -> Result<(ConnectionManager, Arc<AtomicBool>), redis::RedisError> {
    let (sender, live) = PushDispatch::retirable(shared.clone());
    let manager_config = ConnectionManagerConfig::new()
        .set_push_sender(sender)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.subscribe_timeout))
        .set_min_delay(config.reconnect_backoff_min)
        .set_max_delay(config.reconnect_backoff_max)
        // Never give up: every caller's wait is bounded by our timeouts.
        .set_number_of_retries(usize::MAX);
    Ok((
        ConnectionManager::new_lazy_with_config(client, manager_config)?,
        live,
    ))
}

impl StandaloneBus {
    /// Opens the connection and starts the supervisor.
    pub(crate) async fn connect(
        target: BusTarget,
        config: &RedisConfig,
        shared: Arc<BusShared>,
        events: mpsc::Receiver<BusEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<StandaloneBus, StoreError> {
        let client = match &target {
            BusTarget::Fixed(client) => (**client).clone(),
            BusTarget::Sentinel(locator) => locator
                .master()
                .await
                .map_err(|e| StoreError(format!("redis bus: sentinel: {e}")))?,
        };
        let master = sentinel::address(&client);
        let manager = new_manager(client, config, &shared)
            .map_err(|e| StoreError(format!("redis bus: {e}")))?;
        ping(&manager.0, config)
            .await
            .map_err(|e| StoreError(format!("redis bus: {}", e.0)))?;
        let slot = Arc::new(Mutex::new(manager));
        let locator = match target {
            BusTarget::Fixed(_) => None,
            BusTarget::Sentinel(locator) => Some(Follow { locator, master }),
        };
        tokio::spawn(supervise(
            slot.clone(),
            locator,
            config.clone(),
            shared,
            events,
            shutdown,
        ));
        Ok(StandaloneBus { manager: slot })
    }

    fn manager(&self) -> ConnectionManager {
        lock(&self.manager).0.clone()
    }

    pub(crate) async fn subscribe(
        &self,
        config: &RedisConfig,
        shared: &BusShared,
        room_id: &str,
    ) -> Result<(), BusError> {
        if !shared.is_up() {
            return Err(BusError("reconnecting to redis".into()));
        }
        let _gate = shared.gate.read().await;
        shared.want(room_id);
        let mut manager = self.manager();
        // Returns once Redis confirmed the subscription.
        match timeout(
            config.subscribe_timeout,
            manager.subscribe(keys::channel(room_id)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            outcome => {
                shared.unwant(room_id);
                shared.stale().insert(room_id.to_owned());
                Err(BusError(failure("subscribe", outcome)))
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
        let mut manager = self.manager();
        match timeout(
            config.subscribe_timeout,
            manager.unsubscribe(keys::channel(room_id)),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            outcome => {
                shared.stale().insert(room_id.to_owned());
                Err(BusError(failure("unsubscribe", outcome)))
            }
        }
    }

    /// Hot path: one PUBLISH, bounded by the publish timeout.
    pub(crate) async fn publish(
        &self,
        config: &RedisConfig,
        shared: &BusShared,
        room_id: &str,
        wire: &[u8],
    ) -> Result<(), BusError> {
        if !shared.is_up() {
            return Err(BusError("reconnecting to redis".into()));
        }
        let mut manager = self.manager();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(keys::channel(room_id)).arg(wire);
        match timeout(
            config.publish_timeout,
            cmd.query_async::<Value>(&mut manager),
        )
        .await
        {
            // This relay subscribes to every room it hosts, so at least one
            // receiver; none: its subscription is not on this server (a
            // failover moved the commands first), the sender is told.
            Ok(Ok(Value::Int(0))) if shared.rooms().contains(room_id) => Err(BusError(
                "publish: nobody subscribed, not even this relay".into(),
            )),
            Ok(Ok(_)) => Ok(()),
            outcome => Err(BusError(failure("publish", outcome))),
        }
    }
}

fn failure<T>(
    what: &str,
    outcome: Result<Result<T, redis::RedisError>, tokio::time::error::Elapsed>,
) -> String {
    match outcome {
        Ok(Err(e)) => format!("{what}: {e}"),
        Err(_) => format!("{what}: no answer in time"),
        Ok(Ok(_)) => format!("{what}: ok"),
    }
}

async fn ping(manager: &ConnectionManager, config: &RedisConfig) -> Result<(), BusError> {
    let mut manager = manager.clone();
    let wait = config.connect_timeout + config.command_timeout;
    match timeout(wait, redis::cmd("PING").query_async::<Value>(&mut manager)).await {
        Ok(Ok(_)) => Ok(()),
        outcome => Err(BusError(failure("ping", outcome))),
    }
}

/// Sentinel mode: the supervisor's view of the master.
struct Follow {
    /// Asks the sentinels.
    locator: Arc<MasterLocator>,
    /// `host:port` of the master the manager in use connects to.
    master: String,
}

impl Follow {
    /// Points the slot at the master the sentinels name now, replacing the
    /// manager when it moved; the old one unsubscribes everything (best
    /// effort, in the background) and its pushes are ignored from now on, so a
    /// demoted master delivers nothing twice.
    async fn follow(
        &mut self,
        slot: &ManagerSlot,
        config: &RedisConfig,
        shared: &Arc<BusShared>,
    ) -> Result<(), BusError> {
        let client = self
            .locator
            .master()
            .await
            .map_err(|e| BusError(format!("sentinel: {e}")))?;
        let master = sentinel::address(&client);
        if master == self.master {
            return Ok(());
        }
        let manager = new_manager(client, config, shared)
            .map_err(|e| BusError(format!("sentinel: new master {master}: {e}")))?;
        let (mut old, retired) = std::mem::replace(&mut *lock(slot), manager);
        // Nothing from the old connection reaches the relay any more.
        retired.store(false, Ordering::Release);
        tracing::info!(from = %self.master, to = %master, "redis bus: following the new master");
        self.master = master;
        let channels: Vec<String> = shared.rooms().iter().map(|r| keys::channel(r)).collect();
        let wait = config.subscribe_timeout;
        tokio::spawn(async move {
            let _ = timeout(wait, old.unsubscribe(channels)).await;
        });
        Ok(())
    }

    /// Whether the sentinels name another master than the one in use (a
    /// failed lookup is not a change).
    async fn moved(&self) -> bool {
        match self.locator.master().await {
            Ok(client) => sentinel::address(&client) != self.master,
            Err(e) => {
                tracing::debug!(error = %e, "redis bus: sentinel check failed");
                false
            }
        }
    }
}

/// Watches the connection: notices losses (and, with Sentinel, a moved
/// master), resubscribes, reports health.
async fn supervise(
    slot: ManagerSlot,
    mut follow: Option<Follow>,
    config: RedisConfig,
    shared: Arc<BusShared>,
    mut events: mpsc::Receiver<BusEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let current = |slot: &ManagerSlot| lock(slot).0.clone();
    let mut probe = tokio::time::interval(config.bus_probe_interval);
    probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(config.sentinel_check_interval);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut lost_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            event = events.recv() => match event {
                None => return,
                Some(event) => {
                    tracing::debug!(?event, "redis bus: resubscribing");
                    lost_at.get_or_insert_with(Instant::now);
                }
            },
            _ = probe.tick(), if lost_at.is_none() => {
                if let Err(e) = ping(&current(&slot), &config).await {
                    tracing::warn!(error = %e.0, "redis bus: probe failed");
                    shared.set_down();
                    lost_at = Some(Instant::now());
                }
            }
            _ = check.tick(), if lost_at.is_none() && follow.is_some() => {
                if let Some(f) = &follow {
                    if f.moved().await {
                        tracing::warn!("redis bus: the sentinels name another master");
                        shared.set_down();
                        lost_at = Some(Instant::now());
                    }
                }
            }
        }
        let Some(since) = lost_at else { continue };
        shared.set_down();
        // Events queued (or dropped) so far are covered by the pass below.
        while events.try_recv().is_ok() {}
        shared.take_overflow();
        let mut delay = config.reconnect_backoff_min;
        loop {
            let followed = match follow.as_mut() {
                Some(f) => f.follow(&slot, &config, &shared).await,
                None => Ok(()),
            };
            let outcome = match followed {
                Ok(()) => resubscribe_all(&current(&slot), &config, &shared).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(rooms) => {
                    let took = since.elapsed();
                    tracing::info!(
                        rooms,
                        took_ms = took.as_millis() as u64,
                        "redis bus: recovered"
                    );
                    shared.recovered(Some(took), rooms);
                    lost_at = None;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e.0, "redis bus: still down");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = next_backoff(delay, &config);
                }
            }
        }
    }
}

/// Subscribes every wanted room again and unsubscribes the stale ones.
async fn resubscribe_all(
    manager: &ConnectionManager,
    config: &RedisConfig,
    shared: &BusShared,
) -> Result<usize, BusError> {
    ping(manager, config).await?;
    let rooms: Vec<String> = shared.rooms().iter().cloned().collect();
    let mut m = manager.clone();
    for chunk in rooms.chunks(config.resubscribe_batch.max(1)) {
        let channels: Vec<String> = chunk.iter().map(|r| keys::channel(r)).collect();
        let outcome = timeout(config.subscribe_timeout, m.subscribe(channels)).await;
        if !matches!(outcome, Ok(Ok(()))) {
            return Err(BusError(failure("resubscribe", outcome)));
        }
    }
    // Rooms given up meanwhile, or while their UNSUBSCRIBE failed.
    let _gate = shared.gate.write().await;
    let gone = shared.unwanted(&rooms);
    for chunk in gone.chunks(config.resubscribe_batch.max(1)) {
        let channels: Vec<String> = chunk.iter().map(|r| keys::channel(r)).collect();
        let outcome = timeout(config.subscribe_timeout, m.unsubscribe(channels)).await;
        let done = matches!(outcome, Ok(Ok(())));
        {
            let mut stale = shared.stale();
            for room in chunk {
                if done {
                    stale.remove(room);
                } else {
                    stale.insert(room.clone());
                }
            }
        }
        if !done {
            return Err(BusError(failure("unsubscribe stale", outcome)));
        }
    }
    Ok(rooms.len())
}
