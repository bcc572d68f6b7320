//! Whether a publish reached every relay holding members of its room.
//!
//! Redis answers PUBLISH (SPUBLISH) with how many subscriptions received
//! the message. A relay is subscribed to a room's channel while it holds
//! members there (and for the linger after its last one left), so normally
//! that answer is at least the number of relays holding members. Fewer means
//! a subscription is missing although its relay still holds members: a
//! failover moved the publishes to a server where that relay has not
//! resubscribed yet, or its subscriber connection dropped. Those members
//! never get the message, and the sender is told ([`texts::MAYBE_UNDELIVERED`])
//! instead of the message being lost in silence.
//!
//! Asking Redis for the number of relays on every publish would double the
//! hot path's commands. Each room keeps the highest answer seen instead (its
//! `floor`, starting from the relays named in the join's member list); only a
//! publish that reached fewer relays than that asks the store
//! ([`store::RoomStore::relays_holding`]). A relay that left the room makes
//! the answer smaller for good and the store agrees; a lost subscription does
//! not, and the store says so.
//!
//! What it cannot see: a lost subscription hidden by a relay that lingers
//! subscribed without members (each counts one), and a subscription that was
//! lost before this relay saw it counted (a relay joins the room and loses
//! its subscription before anyone publishes).

use std::sync::atomic::{AtomicU64, Ordering};

use protocol::reject::texts;
use protocol::Reject;
use store::warn_limit::WarnLimit;
use store::MemberRecord;

use crate::Relay;

/// The relays a room's publishes are expected to reach.
#[derive(Debug, Default)]
pub struct Reach {
    /// The highest number of receiving relays seen, or the store's count
    /// after a publish reached fewer.
    floor: AtomicU64,
}

impl Reach {
    /// A member joined through this relay: the relays holding the room's
    /// members (the joiner's own relay included) should all receive.
    pub fn joined(&self, members: &[MemberRecord]) {
        self.floor
            .fetch_max(store::relays_of(members), Ordering::Relaxed);
    }

    /// Whether a publish in room `room_id` that `receivers` relays received
    /// (`None`: the bus cannot lose a subscriber) reached every relay
    /// holding members; if it may not have, the sender is told.
    pub async fn check(
        &self,
        relay: &Relay,
        room_id: &str,
        receivers: Option<u64>,
    ) -> Result<(), Reject> {
        static NOT_CHECKED: WarnLimit = WarnLimit::new();
        let Some(receivers) = receivers else {
            return Ok(());
        };
        if receivers >= self.floor.fetch_max(receivers, Ordering::Relaxed) {
            return Ok(());
        }
        match relay.store.relays_holding(room_id).await {
            Ok(holding) => {
                self.floor.store(holding.max(receivers), Ordering::Relaxed);
                if receivers >= holding {
                    return Ok(());
                }
                relay.metrics.publishes_short.inc();
                tracing::debug!(room = %room_id, receivers, holding, "publish reached fewer relays than hold members");
                Err(texts::MAYBE_UNDELIVERED)
            }
            Err(e) => {
                relay.metrics.publishes_short.inc();
                if let Some(suppressed) = NOT_CHECKED.check() {
                    tracing::warn!(room = %room_id, error = %e, suppressed, "publish reached fewer relays than before; the relays holding members could not be counted");
                }
                Err(texts::MAYBE_UNDELIVERED)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: &str) -> MemberRecord {
        MemberRecord {
            id: protocol::member::MemberId::from_random(7),
            name: "m".into(),
            color: "#000000".into(),
            node: node.into(),
            joined_at: 0,
        }
    }

    #[test]
    fn a_join_expects_each_relay_of_the_member_list_once() {
        let reach = Reach::default();
        reach.joined(&[member("a"), member("b"), member("a"), member("c")]);
        assert_eq!(reach.floor.load(Ordering::Relaxed), 3);
        reach.joined(&[member("a")]);
        assert_eq!(
            reach.floor.load(Ordering::Relaxed),
            3,
            "never lowered by a join"
        );
    }
}
