//! Admission control for joins: at most `max_joins_in_flight` CreateRoom
//! and JoinRoom requests are worked on at once on a relay (store scripts,
//! password checks through the gateway, subscriptions). A join beyond that
//! is refused before any work with E005 "service temporarily unavailable,
//! retry" (the web client retries with backoff), and while every permit is
//! taken new WebSocket handshakes are refused with HTTP 503 and
//! `Retry-After` (they would only queue joins). So a reconnect storm queues
//! at the clients, not in front of Redis, where joins would wait past the
//! command timeout after the work was done.
//!
//! A join whose store call failed may still have been written (the reply
//! was lost or came too late): it is rolled back, once at once and once
//! more after [`ROLLBACK_RECHECK`] (a script still in flight may run after
//! the first rollback), and the session takes a new member id, so the
//! second rollback can only remove the phantom, never a later join.

use std::sync::Arc;
use std::time::Duration;

use protocol::member::MemberId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Relay;

/// When the second rollback of a failed join runs.
pub const ROLLBACK_RECHECK: Duration = Duration::from_secs(10);

/// The joins-in-flight limit of one relay.
#[derive(Debug)]
pub struct JoinGate {
    permits: Arc<Semaphore>,
}

impl JoinGate {
    /// At most `max` joins at once (at least one).
    pub fn new(max: usize) -> JoinGate {
        JoinGate {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }

    /// A permit for one join, or `None` when `max` are running.
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Every permit is taken: new handshakes are refused.
    pub fn is_saturated(&self) -> bool {
        self.permits.available_permits() == 0
    }
}

/// Takes back a join whose store call failed (it may have been written):
/// removes the member now and again after [`ROLLBACK_RECHECK`]. Idempotent:
/// a member that was never written is not there to remove.
pub fn roll_back(relay: &Arc<Relay>, room_id: &str, member: MemberId) {
    let (relay2, room_id) = (relay.clone(), room_id.to_owned());
    relay.tasks.spawn(async move {
        let relay = relay2;
        for delay in [Duration::ZERO, ROLLBACK_RECHECK] {
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = relay.shutdown.cancelled() => return,
                }
            }
            match relay
                .store
                .leave(&room_id, member, &relay.config.node_id)
                .await
            {
                Ok(left) if left.was_member => {
                    relay.metrics.joins_rolled_back.inc();
                    tracing::info!(room = %room_id, member = %member, "a join that failed had been written: rolled back");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(room = %room_id, member = %member, error = %e, "a failed join not rolled back yet")
                }
            }
        }
    });
}
