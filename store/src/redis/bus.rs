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

use std::sync::Arc;
use std::time::Instant;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, MissedTickBehavior};

use super::{keys, next_backoff, BusEvent, BusShared, PushDispatch, RedisConfig};
use crate::bus::BusError;
use crate::room::StoreError;

/// The standalone bus connection.
pub(crate) struct StandaloneBus {
    /// Commands and pushes on one reconnecting RESP3 connection.
    manager: ConnectionManager,
}

impl StandaloneBus {
    /// Opens the connection and starts the supervisor.
    pub(crate) async fn connect(
        client: redis::Client,
        config: &RedisConfig,
        shared: Arc<BusShared>,
        events: mpsc::Receiver<BusEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<StandaloneBus, StoreError> {
        let manager_config = ConnectionManagerConfig::new()
            .set_push_sender(PushDispatch(shared.clone()))
            .set_automatic_resubscription()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.subscribe_timeout))
            .set_min_delay(config.reconnect_backoff_min)
            .set_max_delay(config.reconnect_backoff_max)
            // Never give up: every caller's wait is bounded by our timeouts.
            .set_number_of_retries(usize::MAX);
        let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| StoreError(format!("redis bus: {e}")))?;
        ping(&manager, config)
            .await
            .map_err(|e| StoreError(format!("redis bus: {}", e.0)))?;
        tokio::spawn(supervise(
            manager.clone(),
            config.clone(),
            shared,
            events,
            shutdown,
        ));
        Ok(StandaloneBus { manager })
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
        let mut manager = self.manager.clone();
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
        let mut manager = self.manager.clone();
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
        let mut manager = self.manager.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(keys::channel(room_id)).arg(wire);
        match timeout(
            config.publish_timeout,
            cmd.query_async::<Value>(&mut manager),
        )
        .await
        {
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

/// Watches the connection: notices losses, resubscribes, reports health.
async fn supervise(
    manager: ConnectionManager,
    config: RedisConfig,
    shared: Arc<BusShared>,
    mut events: mpsc::Receiver<BusEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut probe = tokio::time::interval(config.bus_probe_interval);
    probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
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
                if let Err(e) = ping(&manager, &config).await {
                    tracing::warn!(error = %e.0, "redis bus: probe failed");
                    shared.set_down();
                    lost_at = Some(Instant::now());
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
            match resubscribe_all(&manager, &config, &shared).await {
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
