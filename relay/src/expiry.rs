//! Room expiry, per relay: each node warns and closes its own members of an
//! expiring room at the right time (no cross-node coordination).
//!
//! On expiry the node cancels its members' active file transfers for
//! everyone (`TransferEnded`), then publishes RoomClosed as a `CloseRoom` bus message so every
//! relay clears the room locally (duplicates from several relays are
//! harmless: the second finds the room gone). Rooms carry the same TTL in
//! the store.

use std::sync::Arc;

use protocol::kind;
use protocol::server::{self, Relayed, RoomClosed};
use store::Target;
use tokio::time::{interval, MissedTickBehavior};

use crate::hub::LocalRoom;
use crate::Relay;

/// The warning's sender id and name, and its sentinel ciphertext.
const SYSTEM_SENDER: &str = "system";
const SYSTEM_NAME: &str = "System";
const EXPIRY_WARNING: &str = "__SYSTEM_EXPIRY_WARNING__";

/// Runs the sweep every `expiry_sweep_interval` until shutdown.
pub async fn run(relay: Arc<Relay>) {
    let mut tick = interval(relay.config.expiry_sweep_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => sweep(&relay).await,
            _ = relay.shutdown.cancelled() => return,
        }
    }
}

/// One pass over this node's rooms.
pub async fn sweep(relay: &Relay) {
    let now = relay.config.clock.now_secs();
    let lead = relay.config.expiry_warning_lead.as_secs() as i64;
    for room in relay.hub.rooms() {
        // A lingering room without local members is no business of ours.
        if room.expires_at == 0 || room.members().is_empty() {
            continue;
        }
        if now > room.expires_at {
            expire(relay, &room).await;
        } else if room.expires_at - now > 0
            && room.expires_at - now <= lead
            && !room.warned.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let warning = server::encode(
                kind::RELAY_MESSAGE,
                &Relayed {
                    sender_id: SYSTEM_SENDER,
                    sender_name: SYSTEM_NAME,
                    iv: "",
                    ciphertext: EXPIRY_WARNING,
                    t: now * 1000,
                },
            );
            relay.hub.push_local(&room, &warning);
        }
    }
}

async fn expire(relay: &Relay, room: &Arc<LocalRoom>) {
    tracing::info!(room = %room.id, "room expired");
    for member in room.members().iter() {
        // The transfer ends where the cancel is delivered, in the bus order:
        // if another relay's CloseRoom overtakes it, `Hub::close_local` finds
        // the transfer still active and cancels it locally instead, so the
        // sender's relay cancels exactly once, before RoomClosed.
        let Some(transfer_id) = member.peer.transfers.active().map(|t| t.id().to_owned()) else {
            continue;
        };
        let cancel = server::file_cancel(member.id.as_str(), &transfer_id);
        let target = Target::TransferEnded {
            sender: member.id,
            transfer_id,
        };
        let _ = relay.publish(&room.id, target, cancel).await;
    }
    let closed = server::encode(kind::ROOM_CLOSED, &RoomClosed { reason: "expired" });
    if relay
        .publish(&room.id, Target::CloseRoom, closed.clone())
        .await
        .is_err()
    {
        // The bus is down: close our own members anyway.
        if let Some(room) = relay.hub.close_local(&room.id, &closed) {
            relay
                .hub
                .unsubscribe_closed(relay.bus.as_ref(), &room)
                .await;
        }
    }
    if let Err(e) = relay.store.destroy(&room.id).await {
        tracing::warn!(room = %room.id, error = %e, "expired room not destroyed in the store");
    }
}
