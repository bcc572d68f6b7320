//! The standalone bus: SUBSCRIBE and PUBLISH on our own RESP3 connection.
//!
//! One connection ([`subscriber`](super::subscriber)) carries the relay's
//! subscriptions, its publishes and the message pushes, read with the
//! minimal RESP3 reader ([`resp`](super::resp)) and handed to the relay's
//! sink in arrival order (Redis orders a channel's messages for every
//! subscriber, whichever connection published them, so every relay sees one
//! order per room).
//!
//! Faults: when the connection drops (or fails a PING probe), the bus is
//! marked down so publishes fail at once instead of queueing; the
//! supervisor here opens a new connection (with backoff), subscribes every
//! hosted room on it and only then marks the bus up again.
//!
//! Sentinel mode: the connection goes to the master the sentinels name.
//! After a loss the supervisor asks the sentinels first and, when the master
//! moved, retires the connection (UNSUBSCRIBE and PING on the demoted
//! master, every push that arrives before the PONG delivered: each one
//! Redis counted for this relay; publishes already written are answered
//! too; see `Subscriber::retire`) before connecting to the new master and
//! resubscribing; it also asks every `sentinel_check_interval` and does the
//! same when the answer changes. The bus stays down (publishes fail fast)
//! until the sentinels name a master that answers.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::sentinel::{self, MasterLocator};
use super::subscriber::{Channels, Connector, Subscriber};
use super::{keys, lock, next_backoff, BusEvent, BusShared, RedisConfig};
use crate::bus::{BusError, BusMessage};
use crate::room::StoreError;

/// Where the bus connects.
pub(crate) enum BusTarget {
    /// One server.
    Fixed(Box<redis::Client>),
    /// The master the sentinels name.
    Sentinel(Arc<MasterLocator>),
}

/// The connection in use (subscriptions, publishes and message pushes):
/// `None` from a loss or a Sentinel failover until the supervisor opened a
/// new one.
type Slot = Arc<Mutex<Option<Subscriber>>>;

/// The standalone bus connection.
pub(crate) struct StandaloneBus {
    slot: Slot,
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
        subscriber
            .ping(config.connect_timeout + config.command_timeout)
            .await
            .map_err(|e| StoreError(format!("redis bus: ping: {e}")))?;
        let slot = Arc::new(Mutex::new(Some(subscriber)));
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
        lock(&self.slot).clone()
    }

    /// The open connection, for a store script (see
    /// [`RedisEngine::script_on_bus`](super::RedisEngine)).
    pub(crate) fn connection(&self) -> Option<Subscriber> {
        self.subscriber().filter(|s| !s.is_closed())
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
        message: &BusMessage,
    ) -> Result<u64, BusError> {
        if !shared.is_up() {
            return Err(BusError("reconnecting to redis".into()));
        }
        let Some(connection) = self.subscriber() else {
            return Err(BusError("reconnecting to redis".into()));
        };
        match connection
            .publish(room_id, message, config.publish_timeout)
            .await
        {
            // This relay subscribes to every room it hosts on this very
            // connection, so at least one receiver; none: the subscription
            // is gone without a word, the sender is told.
            Ok(0) if shared.rooms().contains(room_id) => Err(BusError(
                "publish: nobody subscribed, not even this relay".into(),
            )),
            Ok(n) => Ok(u64::try_from(n).unwrap_or(0)),
            Err(e) => Err(BusError(format!("publish: {e}"))),
        }
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
    /// Points the slot at the master the sentinels name now, retiring the
    /// connection when it moved (it unsubscribes on the demoted master and
    /// delivers what that master counted for it, then closes).
    async fn follow(&mut self, slot: &Slot) -> Result<(), BusError> {
        let client = self
            .locator
            .master()
            .await
            .map_err(|e| BusError(format!("sentinel: {e}")))?;
        let master = sentinel::address(&client);
        if master == self.master {
            return Ok(());
        }
        let retired = lock(slot).take();
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
        lock(&self.slot).clone()
    }

    /// Closes the connection (it is suspected).
    async fn retire(&self) {
        let old = lock(&self.slot).take();
        if let Some(old) = old {
            old.retire().await;
        }
    }

    /// One recovery attempt: follows the master (Sentinel), opens a new
    /// connection if the one in use ended and subscribes every wanted room
    /// on it.
    async fn recover(&mut self) -> Result<usize, BusError> {
        let client = match &mut self.source {
            Source::Fixed(client) => client.clone(),
            Source::Sentinel(f) => {
                f.follow(&self.slot).await?;
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
                let replaced = lock(&self.slot).replace(s.clone());
                if let Some(old) = replaced {
                    old.retire().await;
                }
                s
            }
        };
        resubscribe_all(&subscriber, &self.config, &self.shared).await
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
