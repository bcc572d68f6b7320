//! The room-owner extension on the relay (PROTOCOL.md §2.9, "Room owner,
//! kick and directed messages"; the design is docs/SECURITY.md §5):
//!
//! - a **kick** is checked on the owner's relay and published once on the
//!   room's bus channel ([`Target::Kick`], the frame is the kicked member's
//!   RoomClosed); the relay holding the member takes it out of its local
//!   index at once (no later frame of the room reaches it), sends the
//!   RoomClosed, and then, in a task of its own, cancels the member's active
//!   transfer for the others, removes it from the room record and announces
//!   MemberLeft with the reason (only if it was still a member, so a kick
//!   racing a disconnect is announced once);
//! - a **directed message** goes to one member ([`Target::Member`]), on
//!   whichever relay holds it;
//! - the owner secret is compared with the room record's hash here (Kick)
//!   or by the gateway (SetRoomSecret), in constant time.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use protocol::client::KickReason;
use protocol::kind;
use protocol::member::MemberId;
use protocol::server::{self, MemberLeft};
use store::Target;
use subtle::ConstantTimeEq;

use crate::hub::LocalRoom;
use crate::peer::Peer;
use crate::Relay;

/// Which room a peer was kicked from (its session forgets that room the
/// next time it looks).
#[derive(Debug, Default)]
pub struct KickedFrom(Mutex<Option<Arc<str>>>);

impl KickedFrom {
    fn lock(&self) -> MutexGuard<'_, Option<Arc<str>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that the peer was kicked from `room_id`.
    pub fn set(&self, room_id: Arc<str>) {
        *self.lock() = Some(room_id);
    }

    /// Whether the peer was kicked from `room_id`; forgets it when so.
    pub fn take_if(&self, room_id: &str) -> bool {
        let mut kicked = self.lock();
        let hit = kicked.as_deref() == Some(room_id);
        if hit {
            *kicked = None;
        }
        hit
    }
}

/// Whether `secret` hashes to `stored` (a non-empty owner hash), in
/// constant time.
pub fn owns(stored: &str, secret: &str) -> bool {
    let hash = gateway::rooms::owner_hash_of(secret);
    !stored.is_empty() && bool::from(stored.as_bytes().ct_eq(hash.as_bytes()))
}

/// Delivers a kick on this relay: if `member` is local in `room`, it leaves
/// the local index now and gets `frame` (RoomClosed with the reason); the
/// rest runs in a task of the relay (`finish_kick`).
pub fn deliver_kick(
    room: Arc<LocalRoom>,
    member: MemberId,
    reason: KickReason,
    frame: &Bytes,
    relay: Option<Arc<Relay>>,
) -> bool {
    let Some(peer) = room.take_member(member) else {
        return false;
    };
    peer.kicked.set(room.id.clone());
    // A full queue closes the connection; its disconnect finds no room.
    let _ = peer.outbox.push(frame.clone());
    if let Some(relay) = relay {
        let tasks = relay.tasks.clone();
        tasks.spawn(async move { finish_kick(relay, room, member, reason, peer).await });
    }
    true
}

/// The kicked member's active transfer is cancelled for the others, the
/// member leaves the room record, and MemberLeft with the reason goes to
/// the others if it was still a member.
async fn finish_kick(
    relay: Arc<Relay>,
    room: Arc<LocalRoom>,
    member: MemberId,
    reason: KickReason,
    peer: Arc<Peer>,
) {
    let others = Target::Room {
        except: Some(member),
    };
    let cancelled = peer.transfers.active().map(|active| active.cancel());
    if let Some(transfer_id) = cancelled {
        let frame = server::file_cancel(member.as_str(), &transfer_id);
        // A failure is counted and logged by the publish path.
        let _ = relay.publish(&room.id, others.clone(), frame).await;
    }
    relay.hub.leave(relay.bus.as_ref(), &room, member).await;
    match relay
        .store
        .leave(&room.id, member, &relay.config.node_id)
        .await
    {
        Ok(left) if left.was_member && !left.destroyed => {
            let frame = server::encode(
                kind::MEMBER_LEFT,
                &MemberLeft {
                    id: member.as_str(),
                    reason: reason.as_str(),
                },
            );
            let _ = relay.publish(&room.id, others, frame).await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(room = %room.id, error = %e, "kick not recorded"),
    }
    tracing::info!(room = %room.id, member = %member, reason = reason.as_str(), "member kicked");
}
