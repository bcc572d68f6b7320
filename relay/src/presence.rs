//! Node presence: this relay's heartbeat, and the sweep that removes the
//! members of relays that died without leaving (SIGKILL, crash, partition).
//!
//! Every relay heartbeats and every relay sweeps; the store hands each
//! departure to exactly one sweeper, which announces MemberLeft to the room.

use std::sync::Arc;
use std::time::Duration;

use protocol::kind;
use protocol::server::{self, MemberLeft};
use store::warn_limit::WarnLimit;
use store::Target;
use tokio::time::{interval, MissedTickBehavior};

use crate::Relay;

/// While heartbeats fail, they are retried this often (at most), so a
/// Redis that comes back is noticed (and healed, see [`crate::heal`])
/// quickly.
const RETRY_FAILED_HEARTBEAT: Duration = Duration::from_millis(250);
/// How often the bus's recoveries are looked at (a cheap read): when the bus
/// recovered (Redis restarted, or a partition ended), the relay heartbeats
/// and checks its state in the store at once rather than at the next tick.
const BUS_WATCH: Duration = Duration::from_millis(100);

/// Heartbeats every `heartbeat_interval` and sweeps dead nodes as often,
/// until shutdown; after each heartbeat, checks whether the store lost this
/// relay's state ([`crate::heal::check`]).
pub async fn run(relay: Arc<Relay>) {
    let period = relay.config.heartbeat_interval;
    let ttl = relay.config.heartbeat_ttl;
    let mut tick = interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut watch = interval(BUS_WATCH);
    watch.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut recoveries = relay.bus.recoveries();
    // While heartbeats fail: when to try again.
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let retry = tokio::time::sleep_until(
            retry_at.unwrap_or_else(|| tokio::time::Instant::now() + period),
        );
        tokio::select! {
            _ = tick.tick() => {}
            _ = retry, if retry_at.is_some() => {}
            _ = watch.tick() => {
                let now = relay.bus.recoveries();
                let recovered = now != recoveries;
                recoveries = now;
                if !recovered {
                    continue;
                }
            }
            _ = relay.shutdown.cancelled() => return,
        }
        let connections = relay.metrics.connections.get().max(0) as u64;
        static HEARTBEAT_FAILED: WarnLimit = WarnLimit::new();
        match relay
            .store
            .heartbeat(&relay.config.node_id, ttl, connections)
            .await
        {
            Ok(()) => {
                retry_at = None;
                crate::heal::check(&relay).await;
            }
            Err(e) => {
                retry_at = Some(tokio::time::Instant::now() + RETRY_FAILED_HEARTBEAT.min(period));
                if let Some(suppressed) = HEARTBEAT_FAILED.check() {
                    tracing::warn!(error = %e, suppressed, "heartbeat failed");
                }
                continue;
            }
        }
        if let Ok(live) = relay.store.live_nodes().await {
            relay.metrics.live_relays.set(live as i64);
        }
        sweep(&relay).await;
    }
}

/// Announces every member the store removed for a dead node.
pub async fn sweep(relay: &Relay) {
    let departures = match relay.store.sweep_dead_nodes().await {
        Ok(d) => d,
        Err(e) => {
            static SWEEP_FAILED: WarnLimit = WarnLimit::new();
            if let Some(suppressed) = SWEEP_FAILED.check() {
                tracing::warn!(error = %e, suppressed, "presence sweep failed");
            }
            return;
        }
    };
    for departure in departures {
        if departure.room_destroyed {
            tracing::info!(room = %departure.room_id, "room destroyed: its last members' relay died");
            continue;
        }
        tracing::info!(room = %departure.room_id, member = %departure.member_id, "member of a dead relay removed");
        let frame = server::encode(
            kind::MEMBER_LEFT,
            &MemberLeft {
                id: departure.member_id.as_str(),
                reason: "",
            },
        );
        // Not to the member itself: its relay may only have been cut off
        // from Redis (it re-joins it, crate::heal), and this message may
        // reach it when the partition ends.
        let target = Target::Room {
            except: Some(departure.member_id),
        };
        if relay
            .publish(&departure.room_id, target, frame)
            .await
            .is_err()
        {
            // The publish path counted and logged the failure.
            tracing::debug!(room = %departure.room_id, "MemberLeft for a dead relay's member not sent");
        }
    }
}
