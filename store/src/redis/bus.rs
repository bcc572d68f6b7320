//! The standalone bus: SUBSCRIBE on our own RESP3 connection, PUBLISH on
//! redis-rs.
//!
//! Pushes arrive on the subscriber connection ([`subscriber`](super::subscriber)),
//! read with the minimal RESP3 reader ([`resp`](super::resp)) and handed to
//! the relay's sink in arrival order (Redis orders a channel's messages for
//! every subscriber, whichever connection published them, so every relay
//! sees one order per room). Publishes go through a redis-rs
//! `ConnectionManager` (reconnecting by itself).
//!
//! Faults: when the subscriber connection drops (or fails a PING probe),
//! the bus is marked down so publishes fail at once instead of queueing; the
//! supervisor here opens a new connection (with backoff), subscribes every
//! hosted room on it and only then marks the bus up again.
//!
//! Sentinel mode: both connections go to the master the sentinels name.
//! After a loss the supervisor asks the sentinels first and, when the master
//! moved, replaces the publisher and retires the subscriber connection
//! (UNSUBSCRIBE and PING on the demoted master, every push that arrives
//! before the PONG delivered: each one Redis counted for this relay; see
//! `Subscriber::retire`) before connecting to the new master and
//! resubscribing; it also asks every `sentinel_check_interval` and does the
//! same when the answer changes. The bus stays down (publishes fail fast)
//! until the sentinels name a master that answers.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, MissedTickBehavior};

use super::sentinel::{self, MasterLocator};
use super::subscriber::{Channels, Connector, Subscriber};
use super::{keys, lock, next_backoff, BusEvent, BusShared, RedisConfig};
use crate::bus::BusError;
use crate::room::StoreError;

/// Where the bus connects.
pub(crate) enum BusTarget {
    /// One server.
    Fixed(Box<redis::Client>),
    /// The master the sentinels name.
    Sentinel(Arc<MasterLocator>),
}

/// The connections in use: replaced when a Sentinel failover moved the
/// master (both) or the subscriber connection was lost (that one).
struct Connections {
    /// Publishes (reconnects by itself).
    publisher: ConnectionManager,
    /// Subscriptions and message pushes; `None` until the supervisor opened
    /// a new one after a loss.
    subscriber: Option<Subscriber>,
}

type Slot = Arc<Mutex<Connections>>;

/// The standalone bus connection.
pub(crate) struct StandaloneBus {
    slot: Slot,
}

fn new_publisher(
    client: redis::Client,
    config: &RedisConfig,
) -> Result<ConnectionManager, redis::RedisError> {
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.publish_timeout))
        .set_min_delay(config.reconnect_backoff_min)
        .set_max_delay(config.reconnect_backoff_max)
        // Never give up: every caller's wait is bounded by our timeouts.
        .set_number_of_retries(usize::MAX);
    ConnectionManager::new_lazy_with_config(client, manager_config)
}

impl StandaloneBus {
    /// Opens both connections and starts the supervisor.
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
        let connector = Arc::new(Connector::new(config.tls.clone()));
        let subscriber = connector
            .connect(
                client.get_connection_info(),
                Channels::Plain,
                config.connect_timeout,
                config.publish_timeout,
                shared.clone(),
            )
            .await
            .map_err(|e| StoreError(format!("redis bus: {}", e.0)))?;
        let publisher = new_publisher(client.clone(), config)
            .map_err(|e| StoreError(format!("redis bus: {e}")))?;
        ping(&publisher, config)
            .await
            .map_err(|e| StoreError(format!("redis bus: {}", e.0)))?;
        let slot = Arc::new(Mutex::new(Connections {
            publisher,
            subscriber: Some(subscriber),
        }));
        let source = match target {
            BusTarget::Fixed(_) => Source::Fixed(client),
            BusTarget::Sentinel(locator) => Source::Sentinel(Follow {
                locator,
                master: sentinel::address(&client),
                client,
            }),
        };
        tokio::spawn(supervise(
            Supervisor {
                slot: slot.clone(),
                source,
                connector,
                config: config.clone(),
                shared,
            },
            events,
            shutdown,
        ));
        Ok(StandaloneBus { slot })
    }

    fn subscriber(&self) -> Option<Subscriber> {
        lock(&self.slot).subscriber.clone()
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
        // Returns once Redis confirmed the subscription.
        let outcome = match self.subscriber() {
            Some(s) => {
                s.subscribe(vec![keys::channel(room_id)], config.subscribe_timeout)
                    .await
            }
            None => Err("reconnecting to redis".into()),
        };
        outcome.map_err(|e| {
            shared.unwant(room_id);
            shared.stale().insert(room_id.to_owned());
            BusError(format!("subscribe: {e}"))
        })
    }

    pub(crate) async fn unsubscribe(
        &self,
        config: &RedisConfig,
        shared: &BusShared,
        room_id: &str,
    ) -> Result<(), BusError> {
        let _gate = shared.gate.read().await;
        shared.unwant(room_id);
        let outcome = match self.subscriber() {
            Some(s) => {
                s.unsubscribe(vec![keys::channel(room_id)], config.subscribe_timeout)
                    .await
            }
            None => Err("reconnecting to redis".into()),
        };
        outcome.map_err(|e| {
            shared.stale().insert(room_id.to_owned());
            BusError(format!("unsubscribe: {e}"))
        })
    }

    /// Hot path: one PUBLISH, bounded by the publish timeout; returns how
    /// many subscriptions (relays) received it.
    pub(crate) async fn publish(
        &self,
        config: &RedisConfig,
        shared: &BusShared,
        room_id: &str,
        wire: &[u8],
    ) -> Result<u64, BusError> {
        if !shared.is_up() {
            return Err(BusError("reconnecting to redis".into()));
        }
        let mut publisher = lock(&self.slot).publisher.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(keys::channel(room_id)).arg(wire);
        match timeout(
            config.publish_timeout,
            cmd.query_async::<Value>(&mut publisher),
        )
        .await
        {
            // This relay subscribes to every room it hosts, so at least one
            // receiver; none: its subscription is not on this server (a
            // failover moved the commands first), the sender is told.
            Ok(Ok(Value::Int(0))) if shared.rooms().contains(room_id) => Err(BusError(
                "publish: nobody subscribed, not even this relay".into(),
            )),
            Ok(Ok(Value::Int(n))) => Ok(u64::try_from(n).unwrap_or(0)),
            Ok(Ok(other)) => Err(BusError(format!("publish: unexpected reply {other:?}"))),
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

/// Which server the supervisor connects to.
enum Source {
    Fixed(redis::Client),
    Sentinel(Follow),
}

/// Sentinel mode: the supervisor's view of the master.
struct Follow {
    /// Asks the sentinels.
    locator: Arc<MasterLocator>,
    /// `host:port` of the master the connections in use go to.
    master: String,
    /// That master.
    client: redis::Client,
}

impl Follow {
    /// Points the slot at the master the sentinels name now, replacing the
    /// publisher and retiring the subscriber connection when it moved (it
    /// unsubscribes on the demoted master and delivers what that master
    /// counted for it, then closes).
    async fn follow(&mut self, slot: &Slot, config: &RedisConfig) -> Result<(), BusError> {
        let client = self
            .locator
            .master()
            .await
            .map_err(|e| BusError(format!("sentinel: {e}")))?;
        let master = sentinel::address(&client);
        if master == self.master {
            return Ok(());
        }
        let publisher = new_publisher(client.clone(), config)
            .map_err(|e| BusError(format!("sentinel: new master {master}: {e}")))?;
        let retired = {
            let mut connections = lock(slot);
            connections.publisher = publisher;
            connections.subscriber.take()
        };
        if let Some(old) = retired {
            old.retire().await;
        }
        tracing::info!(from = %self.master, to = %master, "redis bus: following the new master");
        self.master = master;
        self.client = client;
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

/// What the supervisor task owns.
struct Supervisor {
    slot: Slot,
    source: Source,
    connector: Arc<Connector>,
    config: RedisConfig,
    shared: Arc<BusShared>,
}

impl Supervisor {
    fn subscriber(&self) -> Option<Subscriber> {
        lock(&self.slot).subscriber.clone()
    }

    /// Closes the subscriber connection (it is suspected).
    async fn retire(&self) {
        let old = lock(&self.slot).subscriber.take();
        if let Some(old) = old {
            old.retire().await;
        }
    }

    /// One recovery attempt: follows the master (Sentinel), opens a new
    /// subscriber connection if the one in use ended, subscribes every
    /// wanted room on it, and checks that the publisher answers.
    async fn recover(&mut self) -> Result<usize, BusError> {
        let client = match &mut self.source {
            Source::Fixed(client) => client.clone(),
            Source::Sentinel(f) => {
                f.follow(&self.slot, &self.config).await?;
                f.client.clone()
            }
        };
        let subscriber = match self.subscriber() {
            Some(s) if !s.is_closed() => s,
            _ => {
                let s = self
                    .connector
                    .connect(
                        client.get_connection_info(),
                        Channels::Plain,
                        self.config.connect_timeout,
                        self.config.publish_timeout,
                        self.shared.clone(),
                    )
                    .await?;
                let replaced = lock(&self.slot).subscriber.replace(s.clone());
                if let Some(old) = replaced {
                    old.retire().await;
                }
                s
            }
        };
        let rooms = resubscribe_all(&subscriber, &self.config, &self.shared).await?;
        // Publishes work again too before the bus is marked up (the
        // publisher reconnects by itself; this waits for it).
        let publisher = lock(&self.slot).publisher.clone();
        ping(&publisher, &self.config).await?;
        Ok(rooms)
    }
}

/// Watches the connection: notices losses (and, with Sentinel, a moved
/// master), reconnects, resubscribes, reports health.
async fn supervise(
    mut sup: Supervisor,
    mut events: mpsc::Receiver<BusEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = sup.config.clone();
    let mut probe = tokio::time::interval(config.bus_probe_interval);
    probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(config.sentinel_check_interval);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut lost_at: Option<Instant> = None;
    loop {
        let sentinel = matches!(sup.source, Source::Sentinel(_));
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
                let wait = config.connect_timeout + config.command_timeout;
                let outcome = match sup.subscriber() {
                    Some(s) => s.ping(wait).await,
                    None => Err("no connection".into()),
                };
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "redis bus: probe failed");
                    sup.shared.set_down();
                    sup.retire().await;
                    lost_at = Some(Instant::now());
                }
            }
            _ = check.tick(), if lost_at.is_none() && sentinel => {
                if let Source::Sentinel(f) = &sup.source {
                    if f.moved().await {
                        tracing::warn!("redis bus: the sentinels name another master");
                        sup.shared.set_down();
                        lost_at = Some(Instant::now());
                    }
                }
            }
        }
        let Some(since) = lost_at else { continue };
        sup.shared.set_down();
        // Events queued (or dropped) so far are covered by the pass below.
        while events.try_recv().is_ok() {}
        sup.shared.take_overflow();
        let mut delay = config.reconnect_backoff_min;
        loop {
            match sup.recover().await {
                Ok(rooms) => {
                    let took = since.elapsed();
                    tracing::info!(
                        rooms,
                        took_ms = took.as_millis() as u64,
                        "redis bus: recovered"
                    );
                    sup.shared.recovered(Some(took), rooms);
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
    subscriber: &Subscriber,
    config: &RedisConfig,
    shared: &BusShared,
) -> Result<usize, BusError> {
    let fail = |what: &str, e: String| BusError(format!("{what}: {e}"));
    subscriber
        .ping(config.command_timeout)
        .await
        .map_err(|e| fail("ping", e))?;
    let rooms: Vec<String> = shared.rooms().iter().cloned().collect();
    for chunk in rooms.chunks(config.resubscribe_batch.max(1)) {
        let channels: Vec<String> = chunk.iter().map(|r| keys::channel(r)).collect();
        subscriber
            .subscribe(channels, config.subscribe_timeout)
            .await
            .map_err(|e| fail("resubscribe", e))?;
    }
    // Rooms given up meanwhile, or while their UNSUBSCRIBE failed.
    let _gate = shared.gate.write().await;
    let gone = shared.unwanted(&rooms);
    for chunk in gone.chunks(config.resubscribe_batch.max(1)) {
        let channels: Vec<String> = chunk.iter().map(|r| keys::channel(r)).collect();
        let outcome = subscriber
            .unsubscribe(channels, config.subscribe_timeout)
            .await;
        {
            let mut stale = shared.stale();
            for room in chunk {
                if outcome.is_ok() {
                    stale.remove(room);
                } else {
                    stale.insert(room.clone());
                }
            }
        }
        outcome.map_err(|e| fail("unsubscribe stale", e))?;
    }
    Ok(rooms.len())
}
