//! The relay's local room index: which of this node's connections sit in
//! which room, and the fan-out of bus messages to them.
//!
//! Hot path (`HubSink::deliver`, the bus's [`BusSink`]): one map lookup
//! under a short lock, a clone of the room's copy-on-write member list
//! (`Arc<[LocalMember]>`) under another, then one reference-counted `Bytes`
//! pushed into each recipient's bounded queue. No lock is held while
//! pushing, nothing is encoded or allocated per recipient.
//!
//! Subscriptions: a relay is subscribed to a room's bus channel while it has
//! local members there, and for the room linger ([`store::linger`], the
//! same value the engine keeps the room in this node's room set for) after
//! its last local member left (a member who leaves and comes back, or the
//! next local joiner, then costs no UNSUBSCRIBE/SUBSCRIBE round trips;
//! messages arriving meanwhile reach nobody here). [`Hub::retire_idle`] ends lingering subscriptions.
//! Joins and retirements serialise on the room's `subscription` lock, so a
//! SUBSCRIBE and an UNSUBSCRIBE for the same room never race on the bus
//! connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::member::MemberId;
use protocol::server;
use store::{Bus, BusError, BusMessage, BusSink, RoomLinger, RoomRecord, Target};

use crate::heal::RoomFacts;
use crate::metrics::Metrics;
use crate::outbox::PushError;
use crate::peer::Peer;
use crate::reach::Reach;

/// One local member of a room.
#[derive(Debug, Clone)]
pub struct LocalMember {
    pub id: MemberId,
    pub peer: Arc<Peer>,
    /// The display name it joined with (re-asserted by [`crate::heal`]).
    pub name: Arc<str>,
    /// Unix milliseconds of its join (its place in the member list).
    pub joined_at: i64,
}

/// A room as this relay sees it.
#[derive(Debug)]
pub struct LocalRoom {
    pub id: Arc<str>,
    /// Unix seconds; 0 = never.
    pub expires_at: i64,
    /// Listed in the public directory (chat activity is counted).
    pub listed: bool,
    /// Copy-on-write member list, join order.
    members: Mutex<Arc<[LocalMember]>>,
    /// Whether this relay is subscribed to the room's channel; held across
    /// the SUBSCRIBE/UNSUBSCRIBE await so they never interleave.
    subscription: tokio::sync::Mutex<bool>,
    /// The expiry warning was sent to this relay's members.
    pub warned: AtomicBool,
    /// The room expired: its members are no longer in it.
    closed: AtomicBool,
    /// When the last local member left (None while it has local members).
    idle_since: Mutex<Option<Instant>>,
    /// What this relay would write back if the store lost the room.
    pub facts: RoomFacts,
    /// The relays this room's publishes should reach.
    pub reach: Reach,
}

impl LocalRoom {
    fn new(record: &RoomRecord) -> LocalRoom {
        LocalRoom {
            id: Arc::from(record.id.as_str()),
            expires_at: record.expires_at,
            listed: record.listed,
            facts: RoomFacts::new(record.clone()),
            members: Mutex::new(Arc::from(Vec::new())),
            subscription: tokio::sync::Mutex::new(false),
            warned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            idle_since: Mutex::new(None),
            reach: Reach::default(),
        }
    }

    fn lock_members(&self) -> MutexGuard<'_, Arc<[LocalMember]>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the local members.
    pub fn members(&self) -> Arc<[LocalMember]> {
        self.lock_members().clone()
    }

    /// Whether the room expired (and this relay closed it).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn lock_idle_since(&self) -> MutexGuard<'_, Option<Instant>> {
        self.idle_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a member and queues its first frame (RoomJoined) under the same
    /// lock, so every later delivery reaches it after that frame.
    fn add(&self, member: LocalMember, first_frame: Bytes) -> Result<(), PushError> {
        let mut members = self.lock_members();
        member.peer.outbox.push(first_frame)?;
        let mut next = members.to_vec();
        next.push(member);
        *members = Arc::from(next);
        *self.lock_idle_since() = None;
        Ok(())
    }

    /// Removes a member; returns whether the room has no local members left
    /// (and then notes since when).
    fn remove(&self, id: MemberId) -> bool {
        let mut members = self.lock_members();
        if members.iter().any(|m| m.id == id) {
            let next: Vec<LocalMember> = members.iter().filter(|m| m.id != id).cloned().collect();
            *members = Arc::from(next);
        }
        if members.is_empty() {
            self.lock_idle_since().get_or_insert_with(Instant::now);
        }
        members.is_empty()
    }

    /// Removes a member whose place in the store could not be restored
    /// ([`crate::heal`]): queues `frame` (an error) to it and closes its
    /// connection with `close_code`, so it reconnects and joins again.
    pub fn evict(&self, id: MemberId, frame: Bytes, close_code: u16) {
        let evicted = {
            let mut members = self.lock_members();
            let evicted = members.iter().find(|m| m.id == id).cloned();
            if evicted.is_some() {
                let next: Vec<LocalMember> =
                    members.iter().filter(|m| m.id != id).cloned().collect();
                *members = Arc::from(next);
                if members.is_empty() {
                    self.lock_idle_since().get_or_insert_with(Instant::now);
                }
            }
            evicted
        };
        if let Some(member) = evicted {
            let _ = member.peer.outbox.push(frame);
            member.peer.outbox.close(close_code);
        }
    }

    /// Takes a member out of the local list (a kick); returns its peer if
    /// it was here. Later deliveries no longer reach it.
    pub(crate) fn take_member(&self, id: MemberId) -> Option<Arc<Peer>> {
        let mut members = self.lock_members();
        let peer = members.iter().find(|m| m.id == id)?.peer.clone();
        let next: Vec<LocalMember> = members.iter().filter(|m| m.id != id).cloned().collect();
        *members = Arc::from(next);
        Some(peer)
    }

    /// Whether the room has had no local member for the whole `linger`.
    fn idle_for(&self, linger: RoomLinger) -> bool {
        self.lock_idle_since()
            .is_some_and(|since| linger.is_over(since))
    }

    /// Queues `frame` to every local member but `except`; returns how many.
    fn push_all(&self, frame: &Bytes, except: Option<MemberId>, metrics: &Metrics) -> u64 {
        let members = self.members();
        let mut delivered = 0;
        for m in members.iter().filter(|m| Some(m.id) != except) {
            match m.peer.outbox.push(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(PushError::Overflow) => metrics.slow_consumers.inc(),
                Err(PushError::Closed) => {}
            }
        }
        delivered
    }
}

/// This relay's rooms.
pub struct Hub {
    rooms: Mutex<HashMap<Arc<str>, Arc<LocalRoom>>>,
    metrics: Metrics,
    /// How long a room stays subscribed after its last local member left
    /// (the room linger, [`store::linger`]), milliseconds (0: unsubscribe at
    /// once).
    linger_ms: AtomicU64,
}

impl Hub {
    /// An empty index.
    pub fn new(metrics: Metrics) -> Hub {
        Hub {
            rooms: Mutex::new(HashMap::new()),
            metrics,
            linger_ms: AtomicU64::new(0),
        }
    }

    /// Sets how long an emptied room stays subscribed (`room_linger`).
    pub fn set_linger(&self, linger: RoomLinger) {
        let ms = linger.duration().as_millis().min(u64::MAX as u128) as u64;
        self.linger_ms.store(ms, Ordering::Relaxed);
    }

    fn linger(&self) -> RoomLinger {
        RoomLinger::new(Duration::from_millis(
            self.linger_ms.load(Ordering::Relaxed),
        ))
    }

    fn lock_rooms(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<LocalRoom>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn room(&self, room_id: &str) -> Option<Arc<LocalRoom>> {
        self.lock_rooms().get(room_id).cloned()
    }

    /// A room with local members, not closed (what [`crate::heal`] can
    /// write back).
    pub fn live_room(&self, room_id: &str) -> Option<Arc<LocalRoom>> {
        self.room(room_id)
            .filter(|r| !r.is_closed() && !r.members().is_empty())
    }

    /// Every room in the index, lingering ones included.
    pub fn rooms(&self) -> Vec<Arc<LocalRoom>> {
        self.lock_rooms().values().cloned().collect()
    }

    fn is_current(&self, room: &Arc<LocalRoom>) -> bool {
        self.lock_rooms()
            .get(&room.id)
            .is_some_and(|r| Arc::ptr_eq(r, room))
    }

    /// Adds a member to the local index, subscribing to the room's channel
    /// first unless this relay is subscribed already (other local members,
    /// or the room lingers). `first_frame`
    /// (RoomJoined) is queued before any later bus delivery.
    pub async fn join(
        &self,
        bus: &dyn Bus,
        record: &RoomRecord,
        member: LocalMember,
        first_frame: Bytes,
    ) -> Result<Arc<LocalRoom>, BusError> {
        let room_id = record.id.as_str();
        loop {
            let room = {
                let mut rooms = self.lock_rooms();
                let room = rooms
                    .entry(Arc::from(room_id))
                    .or_insert_with(|| Arc::new(LocalRoom::new(record)))
                    .clone();
                self.metrics.local_rooms.set(rooms.len() as i64);
                room
            };
            let mut subscribed = room.subscription.lock().await;
            if room.is_closed() || !self.is_current(&room) {
                continue; // emptied and retired while we waited: take the new one
            }
            if !*subscribed {
                if let Err(e) = bus.subscribe(room_id).await {
                    drop(subscribed);
                    self.retire_if_empty(bus, &room).await;
                    return Err(e);
                }
                *subscribed = true;
            }
            // A full queue here means the joiner is closing anyway.
            let _ = room.add(member.clone(), first_frame.clone());
            drop(subscribed);
            return Ok(room);
        }
    }

    /// Removes a member from the local index; when it was the room's last
    /// local member, the room lingers (see the module doc) or, without a
    /// linger, is unsubscribed now.
    pub async fn leave(&self, bus: &dyn Bus, room: &Arc<LocalRoom>, id: MemberId) {
        if room.remove(id) && self.linger().is_off() {
            self.retire_if_empty(bus, room).await;
        }
    }

    /// Unsubscribes and forgets the rooms that have had no local member for
    /// `room_linger`; returns how many.
    pub async fn retire_idle(&self, bus: &dyn Bus) -> usize {
        let linger = self.linger();
        let idle: Vec<Arc<LocalRoom>> = self
            .lock_rooms()
            .values()
            .filter(|r| r.idle_for(linger))
            .cloned()
            .collect();
        let mut retired = 0;
        for room in idle {
            if self.retire_idle_room(bus, &room, linger).await {
                retired += 1;
            }
        }
        retired
    }

    async fn retire_if_empty(&self, bus: &dyn Bus, room: &Arc<LocalRoom>) {
        self.retire_idle_room(bus, room, RoomLinger::OFF).await;
    }

    /// Unsubscribes and forgets `room` if it has no local member, for at
    /// least `linger` (checked again under the subscription lock, which
    /// joins hold); returns whether it did.
    async fn retire_idle_room(
        &self,
        bus: &dyn Bus,
        room: &Arc<LocalRoom>,
        linger: RoomLinger,
    ) -> bool {
        let mut subscribed = room.subscription.lock().await;
        if !room.members().is_empty() || (!linger.is_off() && !room.idle_for(linger)) {
            return false;
        }
        if *subscribed {
            if let Err(e) = bus.unsubscribe(&room.id).await {
                tracing::warn!(room = %room.id, error = %e, "unsubscribe failed");
            }
            *subscribed = false;
        }
        let mut rooms = self.lock_rooms();
        if rooms.get(&room.id).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(&room.id);
        }
        self.metrics.local_rooms.set(rooms.len() as i64);
        true
    }

    /// Sends a frame to this relay's members of a room only (the expiry
    /// warning, which each relay sends to its own members).
    pub fn push_local(&self, room: &LocalRoom, frame: &Bytes) {
        let n = room.push_all(frame, None, &self.metrics);
        self.metrics.deliveries.inc_by(n);
        self.metrics.sent(frame, n);
    }

    /// Closes a room on this relay: queues `frame` (RoomClosed) to every
    /// local member and forgets them, without MemberLeft. A local member's
    /// transfer still active (its relay had not cancelled it yet: another
    /// relay closed the room first) is cancelled for the local members
    /// first, so its sender sees the cancel before RoomClosed. Returns the
    /// room so the caller can unsubscribe.
    pub fn close_local(&self, room_id: &str, frame: &Bytes) -> Option<Arc<LocalRoom>> {
        let room = {
            let mut rooms = self.lock_rooms();
            let room = rooms.remove(room_id)?;
            self.metrics.local_rooms.set(rooms.len() as i64);
            room
        };
        room.closed.store(true, Ordering::Release);
        for member in room.members().iter() {
            let Some(transfer) = member.peer.transfers.active() else {
                continue;
            };
            let transfer_id = transfer.cancel();
            let cancel = server::file_cancel(member.id.as_str(), &transfer_id);
            self.push_local(&room, &cancel);
        }
        self.push_local(&room, frame);
        *room.lock_members() = Arc::from(Vec::new());
        Some(room)
    }

    /// Unsubscribes a room closed by [`close_local`](Self::close_local).
    pub async fn unsubscribe_closed(&self, bus: &dyn Bus, room: &LocalRoom) {
        let mut subscribed = room.subscription.lock().await;
        if *subscribed {
            if let Err(e) = bus.unsubscribe(&room.id).await {
                tracing::warn!(room = %room.id, error = %e, "unsubscribe failed");
            }
            *subscribed = false;
        }
    }
}

/// The bus delivers here, synchronously and in each room's order.
pub struct HubSink {
    pub hub: Arc<Hub>,
    /// Closing a room needs an async unsubscribe; it is spawned with this.
    pub bus: std::sync::OnceLock<Arc<dyn Bus>>,
    /// Rooms another relay asked to be written back into the store
    /// (`Target::RestoreRoom`), for [`crate::heal::serve_requests`];
    /// dropped when full (the next heartbeat's check heals anyway).
    pub restore_requests: tokio::sync::mpsc::Sender<String>,
    /// Finishing a kick needs the relay (store, publish); set once it is
    /// built, weak so the relay and its sink do not keep each other.
    pub relay: std::sync::OnceLock<std::sync::Weak<crate::Relay>>,
}

impl BusSink for HubSink {
    /// Hot path: fan-out of one bus message to this relay's members.
    fn deliver(&self, room_id: &str, message: BusMessage) {
        let received = Instant::now();
        let hub = &self.hub;
        match message.target {
            Target::Room { except } => {
                if let Some(room) = hub.room(room_id) {
                    let n = room.push_all(&message.frame, except, &hub.metrics);
                    hub.metrics.delivered(&message.frame, n, received.elapsed());
                }
            }
            Target::TransferSender { transfer_id } => {
                if let Some(room) = hub.room(room_id) {
                    if let Some(m) = room
                        .members()
                        .iter()
                        .find(|m| m.peer.transfers.owns(&transfer_id))
                    {
                        if m.peer.outbox.push(message.frame.clone()).is_ok() {
                            hub.metrics.delivered(&message.frame, 1, received.elapsed());
                        }
                    }
                }
            }
            Target::TransferEnded {
                sender,
                transfer_id,
            } => {
                if let Some(room) = hub.room(room_id) {
                    if let Some(m) = room.members().iter().find(|m| m.id == sender) {
                        m.peer.transfers.end_if_active(&transfer_id);
                    }
                    let n = room.push_all(&message.frame, None, &hub.metrics);
                    hub.metrics.delivered(&message.frame, n, received.elapsed());
                }
            }
            Target::Members { ids } => {
                if let Some(room) = hub.room(room_id) {
                    let mut n = 0;
                    let members = room.members();
                    let recipients = members.iter().filter(|m| ids.contains(&m.id));
                    for m in recipients {
                        match m.peer.outbox.push(message.frame.clone()) {
                            Ok(()) => n += 1,
                            Err(PushError::Overflow) => hub.metrics.slow_consumers.inc(),
                            Err(PushError::Closed) => {}
                        }
                    }
                    hub.metrics.delivered(&message.frame, n, received.elapsed());
                }
            }
            Target::RestoreRoom => {
                if hub.live_room(room_id).is_some() {
                    let _ = self.restore_requests.try_send(room_id.to_owned());
                }
            }
            Target::Member { id } => {
                if let Some(room) = hub.room(room_id) {
                    if let Some(m) = room.members().iter().find(|m| m.id == id) {
                        if m.peer.outbox.push(message.frame.clone()).is_ok() {
                            hub.metrics.delivered(&message.frame, 1, received.elapsed());
                        }
                    }
                }
            }
            Target::SecretsChanged => {
                if let (Some(room), Some(relay)) = (
                    hub.room(room_id),
                    self.relay.get().and_then(std::sync::Weak::upgrade),
                ) {
                    let tasks = relay.tasks.clone();
                    tasks.spawn(async move { crate::heal::refresh_secrets(&relay, &room).await });
                }
            }
            Target::Kick { member, reason } => {
                if let Some(room) = hub.room(room_id) {
                    let relay = self.relay.get().and_then(std::sync::Weak::upgrade);
                    if crate::owner::deliver_kick(room, member, reason, &message.frame, relay) {
                        hub.metrics.delivered(&message.frame, 1, received.elapsed());
                    }
                }
            }
            Target::CloseRoom => {
                if let Some(room) = hub.close_local(room_id, &message.frame) {
                    if let Some(bus) = self.bus.get().cloned() {
                        let hub = hub.clone();
                        tokio::spawn(
                            async move { hub.unsubscribe_closed(bus.as_ref(), &room).await },
                        );
                    }
                }
            }
        }
    }
}
