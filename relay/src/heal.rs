//! Self-healing presence: when the store lost what this relay recorded in
//! it, the relay writes back everything it holds.
//!
//! After each heartbeat the relay asks the store whether it still holds
//! this relay's state ([`store::RoomStore::node_state`]: on Redis, a
//! per-relay epoch key written with this engine's token):
//!
//! - **lost** (Redis restarted empty, failed over to an empty replica, or
//!   the keys were flushed): nobody was told anything, so the relay
//!   silently re-asserts each live room it hosts — the record with its
//!   expiry, capacity, ephemeral setting, listing flag and password
//!   verifier, the directory entry of a listed room, its own members, its
//!   node-room set and registration ([`store::RoomStore::restore_room`]).
//!   Every relay does the same for its own members, so the member list
//!   comes back whole; the bus resubscribes by itself.
//! - **swept** (this relay was cut off from Redis past the heartbeat TTL and
//!   another relay removed its members, announcing MemberLeft): the relay
//!   re-joins its members properly, announcing MemberJoined for each member
//!   it put back, so the others see them again.
//!
//! Whoever recreates a room's record also asks the other relays hosting it
//! (`Target::RestoreRoom` on the room's channel) to put their members back:
//! on a Redis Cluster one master may lose its data while the relays' epoch
//! keys live on others. A join that finds a room missing which its relay
//! hosts restores it at once ([`restore_hosted`]).
//!
//! Members that cannot be put back (the room filled up meanwhile, or their
//! id was taken) get an error frame and their connection is closed with
//! 1013 (try again later): the client reconnects and joins again. A room
//! whose record cannot be written back (repeated failures while the store
//! answers) is closed for its local members with an error frame and
//! RoomClosed `lost`, never left as a zombie nobody can join. An expired
//! room is not restored; the expiry sweep closes it.
//!
//! The relays do not restore at once: each waits a random delay below
//! `heal_jitter` first, and restores at most [`CONCURRENT_RESTORES`] rooms
//! at a time, so a Redis that just came back is not hit by every relay's
//! every room in the same millisecond.
//!
//! The room's secrets (the argon2id password verifier and, extension, the
//! owner hash, a SHA-256 of the owner's secret): join.lua already hands
//! each relay the verifier with every join answer, and relays read the
//! owner hash for every kick (they read Redis, where both live). After its
//! first local join of a room, a relay reads both again (aside, after it
//! subscribed to the room), and again each time the owner changes them
//! (SetRoomSecret succeeded: `Target::SecretsChanged` on the room's
//! channel, which carries no secret) ([`refresh_secrets`]). It keeps them
//! in memory for the rooms it hosts, writes them back only to Redis, and
//! never logs, exports or sends them anywhere else ([`RoomFacts`] prints no
//! secret). Relays hold no secret they could not read already; the
//! gateway's internal API still carries no hashes.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use protocol::kind;
use protocol::member::{member_color, MemberId};
use protocol::reject::texts;
use protocol::server::{self, MemberView, RoomClosed};
use store::{
    Listing, MemberRecord, MemberRestored, NodeState, RoomRecord, RoomRestore, RoomRestored,
    RoomSecrets, Target,
};

use crate::hub::LocalRoom;
use crate::websocket::close_code;
use crate::Relay;

/// Rooms restored at once by one relay.
pub const CONCURRENT_RESTORES: usize = 16;
/// Heal passes in a row in which a room's restore failed while the store
/// answered, before the room is closed for its local members.
pub const RESTORE_ATTEMPTS: u32 = 3;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a relay keeps about a room to write it back: the record its first
/// local join read, the room's current secrets, and the directory entry of
/// a listed room.
pub struct RoomFacts {
    record: RoomRecord,
    secrets: Mutex<Secrets>,
    /// Reads of the secrets started (each takes the next number; an answer
    /// older than the one kept is dropped).
    secret_reads: AtomicU64,
    /// The secrets were read after the first local join.
    secrets_read: AtomicBool,
    listing: Mutex<Option<Listing>>,
    /// Heal passes in a row whose restore of this room failed.
    failures: AtomicU32,
    /// Members put back whose MemberJoined could not be published yet.
    unannounced: Mutex<Vec<MemberId>>,
}

/// A room's secrets as last read (never printed).
struct Secrets {
    /// The password verifier and the owner hash ("" when none).
    stored: RoomSecrets,
    /// The read these came from ([`RoomFacts::secret_reads`]; 0: the join
    /// answer).
    read: u64,
}

impl std::fmt::Debug for RoomFacts {
    /// Never prints the password verifier or the owner hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets = lock(&self.secrets);
        f.debug_struct("RoomFacts")
            .field("has_password", &!secrets.stored.password_hash.is_empty())
            .field("has_owner", &!secrets.stored.owner_hash.is_empty())
            .field("listed", &self.record.listed)
            .finish()
    }
}

impl RoomFacts {
    /// The facts of a room as a join answer gave them.
    pub fn new(record: RoomRecord) -> RoomFacts {
        RoomFacts {
            secrets: Mutex::new(Secrets {
                stored: RoomSecrets {
                    password_hash: record.password_hash.clone(),
                    owner_hash: String::new(),
                },
                read: 0,
            }),
            secret_reads: AtomicU64::new(0),
            secrets_read: AtomicBool::new(false),
            record,
            listing: Mutex::new(None),
            failures: AtomicU32::new(0),
            unannounced: Mutex::new(Vec::new()),
        }
    }

    fn unannounced(&self, id: MemberId) -> bool {
        lock(&self.unannounced).contains(&id)
    }

    fn set_unannounced(&self, id: MemberId, pending: bool) {
        let mut ids = lock(&self.unannounced);
        ids.retain(|m| *m != id);
        if pending {
            ids.push(id);
        }
    }

    /// Whether a listed room's directory entry still has to be read.
    pub fn needs_listing(&self) -> bool {
        self.record.listed && lock(&self.listing).is_none()
    }

    /// Keeps the directory entry (read after the first local join).
    pub fn set_listing(&self, listing: Listing) {
        *lock(&self.listing) = Some(listing);
    }

    fn listing(&self) -> Option<Listing> {
        lock(&self.listing).clone()
    }

    /// Whether the secrets are still to be read after the first local join
    /// (true once: the caller reads them).
    pub fn first_secrets_read(&self) -> bool {
        !self.secrets_read.swap(true, Ordering::AcqRel)
    }

    /// The record and owner hash to write back: the first local join's
    /// record with the latest secrets read.
    fn to_restore(&self) -> (RoomRecord, String) {
        let secrets = lock(&self.secrets);
        let mut record = self.record.clone();
        record.password_hash = secrets.stored.password_hash.clone();
        (record, secrets.stored.owner_hash.clone())
    }
}

/// Reads the room's current secrets (password verifier, owner hash) from
/// the store and keeps them for a restore: after the relay's first local
/// join of the room, and whenever the owner changed them
/// (`Target::SecretsChanged`). A room the store does not hold keeps what
/// the relay had (the store lost it: this is what comes back).
pub async fn refresh_secrets(relay: &Relay, room: &LocalRoom) {
    let facts = &room.facts;
    let read = facts.secret_reads.fetch_add(1, Ordering::AcqRel) + 1;
    match relay.store.secrets(&room.id).await {
        Ok(Some(stored)) => {
            relay.metrics.room_secret_reads.inc();
            let mut secrets = lock(&facts.secrets);
            if read > secrets.read {
                *secrets = Secrets { stored, read };
            }
        }
        Ok(None) => relay.metrics.room_secret_reads.inc(),
        Err(e) => {
            tracing::debug!(room = %room.id, error = %e, "room secrets not read");
        }
    }
}

/// The relay's healing state.
#[derive(Default)]
pub struct Healing {
    /// A loss was detected and not every room is restored yet: the next
    /// pass retries even if the store answers "known".
    pending: AtomicBool,
    /// The pending loss was a sweep: put-back members are announced.
    announce: AtomicBool,
    /// The first check ran (a new relay's first check always finds
    /// nothing: it is no loss).
    checked: AtomicBool,
    /// When the last loss was detected (for the logs and the tests).
    last_loss: Mutex<Option<Instant>>,
}

impl Healing {
    /// When this relay last found its state lost or swept.
    pub fn last_loss(&self) -> Option<Instant> {
        *lock(&self.last_loss)
    }
}

/// Checks the store's view of this relay and heals it if needed; runs after
/// each heartbeat.
pub async fn check(relay: &Relay) {
    let state = match relay.store.node_state(&relay.config.node_id).await {
        Ok(state) => state,
        Err(e) => {
            tracing::debug!(error = %e, "node state not checked");
            return;
        }
    };
    let heal = &relay.heal;
    let first = !heal.checked.swap(true, Ordering::AcqRel);
    match state {
        NodeState::Known if !heal.pending.load(Ordering::Acquire) => return,
        NodeState::Known => {}
        NodeState::Lost | NodeState::Swept => {
            let swept = state == NodeState::Swept;
            if !first || swept {
                tracing::warn!(
                    swept,
                    rooms = relay.hub.rooms().len(),
                    "the store lost this relay's rooms and members; restoring them"
                );
                relay.metrics.store_losses.inc();
            }
            *lock(&heal.last_loss) = Some(Instant::now());
            heal.pending.store(true, Ordering::Release);
            if swept {
                heal.announce.store(true, Ordering::Release);
            }
        }
    }
    if !relay.bus.is_up() {
        // Put back members are announced over the bus: wait for it (its
        // recovery triggers the next check).
        return;
    }
    let jitter = relay.config.heal_jitter;
    if !jitter.is_zero() {
        let ms = rand::random_range(0..jitter.as_millis().clamp(1, u64::MAX as u128) as u64);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = relay.shutdown.cancelled() => return,
        }
    }
    let announce = if heal.announce.load(Ordering::Acquire) {
        Announce::Everyone
    } else {
        Announce::JoinedSinceLoss
    };
    if restore_all(relay, announce).await {
        heal.pending.store(false, Ordering::Release);
        heal.announce.store(false, Ordering::Release);
    }
}

/// Rooms other relays asked to be written back, waiting (more are dropped:
/// the next check heals them anyway).
pub const RESTORE_REQUEST_QUEUE: usize = 1024;

/// A join found no record of `room_id`, which this relay hosts with live
/// members: the store lost it (on a Redis Cluster, maybe only the master
/// holding that room, which relays whose epoch key lives elsewhere do not
/// notice). Writes the room back now (which asks the other relays hosting
/// it to do the same with theirs, `Target::RestoreRoom`), and marks the
/// loss so the next check writes back every other room too. Returns whether the
/// room was hosted here (then the join is worth trying again).
pub async fn restore_hosted(relay: &Relay, room_id: &str) -> bool {
    let Some(room) = relay.hub.live_room(room_id) else {
        return false;
    };
    tracing::warn!(
        room = room_id,
        "a room hosted here is missing from the store; restoring it"
    );
    relay.metrics.store_losses.inc();
    relay.heal.pending.store(true, Ordering::Release);
    restore_room(relay, &room, Announce::JoinedSinceLoss).await
}

/// Writes back the rooms other relays asked for (`Target::RestoreRoom`),
/// until shutdown.
pub async fn serve_requests(relay: Arc<Relay>, mut requests: tokio::sync::mpsc::Receiver<String>) {
    loop {
        let room_id = tokio::select! {
            next = requests.recv() => match next {
                Some(room_id) => room_id,
                None => return,
            },
            _ = relay.shutdown.cancelled() => return,
        };
        if let Some(room) = relay.hub.live_room(&room_id) {
            restore_room(&relay, &room, Announce::JoinedSinceLoss).await;
        }
    }
}

/// Who is told about a member put back into the store.
#[derive(Debug, Clone, Copy)]
pub enum Announce {
    /// Everyone in the room (they were told it left: this relay was swept).
    Everyone,
    /// The members who joined since the store lost the room (the store
    /// tells which): their member lists were read while it was missing.
    /// Nobody else was told anything.
    JoinedSinceLoss,
}

/// Restores every room this relay hosts; returns whether all were.
pub async fn restore_all(relay: &Relay, announce: Announce) -> bool {
    let rooms: Vec<Arc<LocalRoom>> = relay
        .hub
        .rooms()
        .into_iter()
        .filter(|r| !r.is_closed() && !r.members().is_empty())
        .collect();
    let started = Instant::now();
    let results: Vec<bool> = stream::iter(rooms)
        .map(|room| async move { restore_room(relay, &room, announce).await })
        .buffer_unordered(CONCURRENT_RESTORES)
        .collect()
        .await;
    let restored = results.iter().filter(|ok| **ok).count();
    if !results.is_empty() {
        tracing::info!(
            rooms = results.len(),
            restored,
            took_ms = started.elapsed().as_millis() as u64,
            "rooms re-asserted in the store"
        );
    }
    restored == results.len()
}

/// Restores one room; returns false if the store failed (the next pass
/// retries).
async fn restore_room(relay: &Relay, room: &Arc<LocalRoom>, announce: Announce) -> bool {
    let node = &relay.config.node_id;
    let locals = room.members();
    let members: Vec<MemberRecord> = locals
        .iter()
        .map(|m| MemberRecord {
            id: m.id,
            name: m.name.to_string(),
            color: member_color(m.id.as_str()),
            node: node.clone(),
            joined_at: m.joined_at,
        })
        .collect();
    let (record, owner_hash) = room.facts.to_restore();
    let restore = RoomRestore {
        record,
        owner_hash,
        listing: room.facts.listing(),
        members,
        node: node.clone(),
        now_secs: relay.config.clock.now_secs(),
    };
    let restored = match relay.store.restore_room(restore).await {
        Ok(r) => r,
        Err(e) => {
            let failures = room.facts.failures.fetch_add(1, Ordering::AcqRel) + 1;
            tracing::warn!(room = %room.id, error = %e, failures, "room not restored");
            if failures >= RESTORE_ATTEMPTS {
                close_lost(relay, room).await;
                return true;
            }
            return false;
        }
    };
    room.facts.failures.store(0, Ordering::Release);
    if restored.room == RoomRestored::Expired {
        // The expiry sweep closes it (its expiry has passed).
        return true;
    }
    if restored.room == RoomRestored::Recreated {
        // The other relays hosting the room may not have noticed the loss
        // (on a Redis Cluster only this room's master may have lost it):
        // ask them to put their members back too.
        if relay
            .publish(&room.id, Target::RestoreRoom, bytes::Bytes::new())
            .await
            .is_err()
        {
            // The publish path counted and logged the failure.
            tracing::debug!(room = %room.id, "the other relays were not asked to restore the room");
        }
    }
    let mut announced_all = true;
    for (id, outcome) in restored.members {
        match outcome {
            MemberRestored::Present | MemberRestored::Added => {
                let added = outcome == MemberRestored::Added;
                if added {
                    relay.metrics.restored_members.inc();
                }
                // Put back now, or earlier by a pass whose announcement failed.
                if !added && !room.facts.unannounced(id) {
                    continue;
                }
                let Some(member) = locals.iter().find(|m| m.id == id) else {
                    continue;
                };
                let color = member_color(id.as_str());
                let frame = server::encode(
                    kind::MEMBER_JOINED,
                    &MemberView {
                        id: id.as_str(),
                        name: &member.name,
                        color: &color,
                    },
                );
                let target = match announce {
                    Announce::Everyone => Target::Room { except: Some(id) },
                    Announce::JoinedSinceLoss if restored.joined_since_loss.is_empty() => continue,
                    Announce::JoinedSinceLoss => Target::Members {
                        ids: restored.joined_since_loss.clone(),
                    },
                };
                match relay.publish(&room.id, target, frame).await {
                    Ok(()) => room.facts.set_unannounced(id, false),
                    Err(_) => {
                        // The next pass announces it (the store has it already).
                        tracing::warn!(room = %room.id, "MemberJoined for a re-joined member not sent yet");
                        room.facts.set_unannounced(id, true);
                        announced_all = false;
                    }
                }
            }
            MemberRestored::Full | MemberRestored::IdTaken => {
                tracing::info!(room = %room.id, member = %id, ?outcome, "a member could not be put back; closing its connection");
                room.evict(
                    id,
                    server::error(&texts::UNAVAILABLE),
                    close_code::TRY_AGAIN_LATER,
                );
            }
        }
    }
    announced_all
}

/// Closes a room whose record could not be written back, for this relay's
/// members: an error frame, then RoomClosed `lost`.
async fn close_lost(relay: &Relay, room: &Arc<LocalRoom>) {
    tracing::warn!(room = %room.id, "room could not be restored; closing it for its members here");
    relay
        .hub
        .push_local(room, &server::error(&texts::UNAVAILABLE));
    let closed = server::encode(kind::ROOM_CLOSED, &RoomClosed { reason: "lost" });
    if let Some(room) = relay.hub.close_local(&room.id, &closed) {
        relay
            .hub
            .unsubscribe_closed(relay.bus.as_ref(), &room)
            .await;
    }
}
