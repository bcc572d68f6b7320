//! Node presence: this relay's heartbeat, and the sweep that removes the
//! members of relays that died without leaving (SIGKILL, crash, partition).
//!
//! Every relay heartbeats and every relay sweeps; the store hands each
//! departure to exactly one sweeper, which announces MemberLeft to the room.

use std::sync::Arc;

use protocol::kind;
use protocol::server::{self, MemberLeft};
use store::warn_limit::WarnLimit;
use store::Target;
use tokio::time::{interval, MissedTickBehavior};

use crate::Relay;

/// Heartbeats every `heartbeat_interval` and sweeps dead nodes as often,
/// until shutdown.
pub async fn run(relay: Arc<Relay>) {
    let period = relay.config.heartbeat_interval;
    let ttl = relay.config.heartbeat_ttl;
    let mut tick = interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = relay.shutdown.cancelled() => return,
        }
        let connections = relay.metrics.connections.get().max(0) as u64;
        static HEARTBEAT_FAILED: WarnLimit = WarnLimit::new();
        if let Err(e) = relay
            .store
            .heartbeat(&relay.config.node_id, ttl, connections)
            .await
        {
            if let Some(suppressed) = HEARTBEAT_FAILED.check() {
                tracing::warn!(error = %e, suppressed, "heartbeat failed");
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
        let target = Target::Room { except: None };
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
