//! The one path by which anything on this relay publishes to a room's bus
//! channel (a session's frames, expiry cancels and closes, the presence
//! sweep's MemberLeft), counted and timed in the same metrics.

use std::time::Instant;

use bytes::Bytes;
use protocol::reject::texts;
use protocol::Reject;
use store::warn_limit::WarnLimit;
use store::{BusMessage, Target};

use crate::hub::LocalRoom;
use crate::Relay;

impl Relay {
    /// Publishes one frame on room `room_id`'s channel; a bus failure
    /// becomes an error for the sender to see (never silence).
    pub async fn publish(&self, room_id: &str, target: Target, frame: Bytes) -> Result<(), Reject> {
        self.publish_counted(room_id, target, frame).await.map(drop)
    }

    /// Publishes a member's frame in a room this relay hosts: as
    /// [`Relay::publish`], and the member is also told when the frame may
    /// not have reached every relay holding members ([`crate::reach`]).
    pub async fn publish_from_member(
        &self,
        room: &LocalRoom,
        target: Target,
        frame: Bytes,
    ) -> Result<(), Reject> {
        let receivers = self.publish_counted(&room.id, target, frame).await?;
        room.reach.check(self, &room.id, receivers).await
    }

    /// Publishes; returns how many relays received the frame, when the bus
    /// can tell.
    async fn publish_counted(
        &self,
        room_id: &str,
        target: Target,
        frame: Bytes,
    ) -> Result<Option<u64>, Reject> {
        static PUBLISH_FAILED: WarnLimit = WarnLimit::new();
        self.metrics.publishes.inc();
        let started = Instant::now();
        let published = self
            .bus
            .publish(room_id, BusMessage { target, frame })
            .await;
        self.metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
        published.map_err(|e| {
            self.metrics.publish_errors.inc();
            if let Some(suppressed) = PUBLISH_FAILED.check() {
                tracing::warn!(room = %room_id, error = %e, suppressed, "publish failed");
            }
            texts::UNAVAILABLE
        })
    }
}
