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
//! was lost or came too late): the session rolls it back at once, itself
//! (while it still holds its join permit, so at most `max_joins_in_flight`
//! rollbacks run at once), and queues a second rollback for
//! [`ROLLBACK_RECHECK`] later (a script still in flight may run after the
//! first). The session takes a new member id, so the second rollback can
//! only remove the phantom, never a later join.
//!
//! The second rollbacks wait in one bounded queue per relay
//! (`join_rollback_queue` entries) and one task works them off in order, so
//! a storm of failing joins costs a fixed amount of memory and one task,
//! never a task per join. When the queue is full the second rollback is
//! dropped (counted, logged): a phantom then remains only if that join's
//! script reached Redis after the first rollback, and it goes with the room
//! (its expiry) or with this relay (when it stops, another relay's presence
//! sweep removes its members).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::member::MemberId;
use store::warn_limit::WarnLimit;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::Relay;

/// When the second rollback of a failed join runs.
pub const ROLLBACK_RECHECK: Duration = Duration::from_secs(10);

/// A second rollback waiting in the queue.
#[derive(Debug)]
pub struct Recheck {
    room_id: String,
    member: MemberId,
    due: Instant,
}

/// The joins-in-flight limit of one relay, and its queue of second
/// rollbacks.
#[derive(Debug)]
pub struct JoinGate {
    permits: Arc<Semaphore>,
    rechecks: mpsc::Sender<Recheck>,
    /// Taken by the task that works the queue off ([`run_rechecks`]).
    queued: Mutex<Option<mpsc::Receiver<Recheck>>>,
}

impl JoinGate {
    /// At most `max` joins at once (at least one), and at most `queue`
    /// second rollbacks waiting (at least one).
    pub fn new(max: usize, queue: usize) -> JoinGate {
        let (rechecks, queued) = mpsc::channel(queue.clamp(1, Semaphore::MAX_PERMITS));
        JoinGate {
            permits: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            rechecks,
            queued: Mutex::new(Some(queued)),
        }
    }

    /// The receiving end of the queue, once (for [`run_rechecks`]).
    pub fn take_queue(&self) -> Option<mpsc::Receiver<Recheck>> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Second rollbacks waiting.
    pub fn rechecks_waiting(&self) -> usize {
        self.rechecks.max_capacity() - self.rechecks.capacity()
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
/// removes the member now (awaited by the session, which still holds its
/// join permit) and queues the second removal for [`ROLLBACK_RECHECK`]
/// later. Idempotent: a member that was never written is not there to
/// remove.
pub async fn roll_back(relay: &Arc<Relay>, room_id: &str, member: MemberId) {
    remove(relay, room_id, member).await;
    let recheck = Recheck {
        room_id: room_id.to_owned(),
        member,
        due: Instant::now() + ROLLBACK_RECHECK,
    };
    match relay.joins.rechecks.try_send(recheck) {
        Ok(()) => relay
            .metrics
            .join_rollback_queue
            .set(relay.joins.rechecks_waiting() as i64),
        Err(TrySendError::Full(_)) => {
            relay.metrics.join_rollbacks[DROPPED].inc();
            // A storm of failing joins fills it at once: one line per interval, not per join.
            static QUEUE_FULL: WarnLimit = WarnLimit::new();
            let Some(suppressed) = QUEUE_FULL.check() else {
                return;
            };
            tracing::warn!(
                room = %room_id,
                member = %member,
                suppressed,
                capacity = relay.joins.rechecks.max_capacity(),
                "the join rollback queue is full: the second rollback of a failed join is dropped; \
                 a phantom member left by a late join script goes with the room's expiry or this relay's stop"
            );
        }
        // The relay is stopping: its members are swept once its heartbeat ends.
        Err(TrySendError::Closed(_)) => relay.metrics.join_rollbacks[DROPPED].inc(),
    }
}

/// `arthas_relay_join_rollbacks_total{outcome}` labels, in this order.
pub const ROLLBACK_OUTCOMES: [&str; 4] = ["removed", "absent", "failed", "dropped"];
const REMOVED: usize = 0;
const ABSENT: usize = 1;
const FAILED: usize = 2;
const DROPPED: usize = 3;

/// One removal of a failed join's member.
async fn remove(relay: &Relay, room_id: &str, member: MemberId) {
    match relay
        .store
        .leave(room_id, member, &relay.config.node_id)
        .await
    {
        Ok(left) if left.was_member => {
            relay.metrics.join_rollbacks[REMOVED].inc();
            tracing::info!(room = %room_id, member = %member, "a join that failed had been written: rolled back");
        }
        Ok(_) => relay.metrics.join_rollbacks[ABSENT].inc(),
        Err(e) => {
            relay.metrics.join_rollbacks[FAILED].inc();
            tracing::warn!(room = %room_id, member = %member, error = %e, "a failed join not rolled back yet")
        }
    }
}

/// Works off the queue of second rollbacks, in order (each is due
/// [`ROLLBACK_RECHECK`] after it was queued), until shutdown.
pub async fn run_rechecks(relay: Arc<Relay>, mut queue: mpsc::Receiver<Recheck>) {
    loop {
        let recheck = tokio::select! {
            next = queue.recv() => match next {
                Some(recheck) => recheck,
                None => return,
            },
            _ = relay.shutdown.cancelled() => return,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(recheck.due) => {}
            _ = relay.shutdown.cancelled() => return,
        }
        remove(&relay, &recheck.room_id, recheck.member).await;
        relay
            .metrics
            .join_rollback_queue
            .set(relay.joins.rechecks_waiting() as i64);
    }
}
