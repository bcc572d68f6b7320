//! The in-memory engine: one process, no Redis. Used by the all-in-one binary
//! (`cargo run`) and by unit tests.
//!
//! All room state sits behind one mutex: operations are short and never
//! await while holding it. The bus delivers synchronously to the one local
//! sink, under a lock that serialises publishes, so every member sees a
//! room's messages in one order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use protocol::member::MemberId;

use crate::bus::{Bus, BusError, BusMessage, BusSink};
use crate::room::{
    Departure, JoinError, Joined, Left, Listing, ListingView, MemberRecord, NewRoom, RoomRecord,
    RoomStore, StoreError,
};

/// Most chat messages remembered per listed room for the 5-minute count.
pub const MAX_ACTIVITY_PER_ROOM: usize = 10_000;
/// The activity window.
const ACTIVITY_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Limits of the in-memory engine.
#[derive(Debug, Clone)]
pub struct MemoryLimits {
    /// Most fixed-window counters kept (rate limits per IP, per room); the
    /// oldest window is evicted beyond it.
    pub max_counters: usize,
    /// Most single-use tokens remembered.
    pub max_claims: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            max_counters: 10_000,
            max_claims: 100_000,
        }
    }
}

struct RoomEntry {
    record: RoomRecord,
    /// Join order.
    members: Vec<MemberRecord>,
    /// An unjoined room vanishes at this instant (None once someone joined).
    unjoined_deadline: Option<Instant>,
}

struct ListingEntry {
    listing: Listing,
    /// Timestamps (ms) of recent chat messages, oldest first.
    activity: std::collections::VecDeque<i64>,
}

#[derive(Default)]
struct State {
    rooms: HashMap<String, RoomEntry>,
    listings: HashMap<String, ListingEntry>,
    /// key -> (window start, count)
    counters: HashMap<String, (Instant, u64)>,
    /// key -> expiry
    claims: HashMap<String, Instant>,
}

impl State {
    fn remove_room(&mut self, room_id: &str) {
        self.rooms.remove(room_id);
        self.listings.remove(room_id);
    }

    /// Drops rooms whose creator never joined in time.
    fn sweep_unjoined(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.unjoined_deadline.is_some_and(|d| now >= d))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.remove_room(&id);
        }
    }
}

/// The in-memory [`RoomStore`] and [`Bus`].
pub struct MemoryEngine {
    state: Mutex<State>,
    limits: MemoryLimits,
    /// The one local relay's sink, set once by [`MemoryEngine::attach`].
    sink: OnceLock<Arc<dyn BusSink>>,
    /// Serialises publishes so every member sees one order per room.
    publish_order: Mutex<()>,
    /// The relay's connections at its last heartbeat.
    online: std::sync::atomic::AtomicU64,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new(limits: MemoryLimits) -> Arc<MemoryEngine> {
        Arc::new(MemoryEngine {
            state: Mutex::new(State::default()),
            limits,
            sink: OnceLock::new(),
            publish_order: Mutex::new(()),
            online: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Connects the relay that receives bus messages (one per process).
    pub fn attach(&self, sink: Arc<dyn BusSink>) {
        if self.sink.set(sink).is_err() {
            tracing::warn!("memory bus: a second sink was attached and ignored");
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than stopping service; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl RoomStore for MemoryEngine {
    async fn create_room(&self, room: NewRoom) -> Result<bool, StoreError> {
        let mut state = self.state();
        state.sweep_unjoined(Instant::now());
        if state.rooms.contains_key(&room.record.id) {
            return Ok(false);
        }
        state.rooms.insert(
            room.record.id.clone(),
            RoomEntry {
                record: room.record,
                members: Vec::new(),
                unjoined_deadline: Some(Instant::now() + room.unjoined_ttl),
            },
        );
        Ok(true)
    }

    async fn room(&self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        Ok(self.state().rooms.get(room_id).map(|r| r.record.clone()))
    }

    async fn join(
        &self,
        room_id: &str,
        member: MemberRecord,
        password_checked: bool,
        now_secs: i64,
    ) -> Result<Joined, JoinError> {
        let mut state = self.state();
        let room = state.rooms.get_mut(room_id).ok_or(JoinError::NotFound)?;
        if room.record.is_expired(now_secs) {
            return Err(JoinError::Expired);
        }
        if room.record.has_password() && !password_checked {
            return Err(JoinError::NeedsPassword);
        }
        if room.members.len() >= room.record.capacity as usize {
            return Err(JoinError::Full);
        }
        if room.members.iter().any(|m| m.id == member.id) {
            return Err(JoinError::IdTaken);
        }
        room.members.push(member);
        room.unjoined_deadline = None;
        Ok(Joined {
            room: room.record.clone(),
            members: room.members.clone(),
        })
    }

    async fn leave(&self, room_id: &str, member_id: MemberId) -> Result<Left, StoreError> {
        let mut state = self.state();
        let Some(room) = state.rooms.get_mut(room_id) else {
            return Ok(Left {
                was_member: false,
                destroyed: false,
            });
        };
        let before = room.members.len();
        room.members.retain(|m| m.id != member_id);
        let was_member = room.members.len() != before;
        let destroyed = was_member && room.members.is_empty();
        if destroyed {
            state.remove_room(room_id);
        }
        Ok(Left {
            was_member,
            destroyed,
        })
    }

    async fn destroy(&self, room_id: &str) -> Result<(), StoreError> {
        self.state().remove_room(room_id);
        Ok(())
    }

    async fn list_room(&self, listing: Listing, max_listed: usize) -> Result<bool, StoreError> {
        let mut state = self.state();
        let listed = state
            .listings
            .values()
            .filter(|l| !l.listing.is_daily_topic)
            .count();
        if !listing.is_daily_topic && listed >= max_listed {
            return Ok(false);
        }
        if let Some(room) = state.rooms.get_mut(&listing.room_id) {
            room.record.listed = true;
        }
        state.listings.insert(
            listing.room_id.clone(),
            ListingEntry {
                listing,
                activity: Default::default(),
            },
        );
        Ok(true)
    }

    async fn listings(&self, now_millis: i64) -> Result<Vec<ListingView>, StoreError> {
        let state = self.state();
        Ok(state
            .listings
            .values()
            .map(|entry| ListingView {
                listing: entry.listing.clone(),
                member_count: state
                    .rooms
                    .get(&entry.listing.room_id)
                    .map_or(0, |r| r.members.len() as u32),
                message_count_5min: entry
                    .activity
                    .iter()
                    .filter(|&&t| now_millis - t <= ACTIVITY_WINDOW_MS)
                    .count() as u32,
            })
            .collect())
    }

    async fn count_activity(&self, room_id: &str, now_millis: i64) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(entry) = state.listings.get_mut(room_id) {
            while entry
                .activity
                .front()
                .is_some_and(|&t| now_millis - t > ACTIVITY_WINDOW_MS)
            {
                entry.activity.pop_front();
            }
            if entry.activity.len() >= MAX_ACTIVITY_PER_ROOM {
                entry.activity.pop_front();
            }
            entry.activity.push_back(now_millis);
        }
        Ok(())
    }

    async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut state = self.state();
        if !state.counters.contains_key(key) && state.counters.len() >= self.limits.max_counters {
            state
                .counters
                .retain(|_, (start, _)| now.duration_since(*start) < window);
            if state.counters.len() >= self.limits.max_counters {
                let oldest = state
                    .counters
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    state.counters.remove(&oldest);
                }
            }
        }
        let entry = state.counters.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += n;
        Ok(entry.1)
    }

    async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut state = self.state();
        if state.claims.len() >= self.limits.max_claims {
            state.claims.retain(|_, expiry| *expiry > now);
            if state.claims.len() >= self.limits.max_claims {
                return Err(StoreError("too many outstanding tickets".into()));
            }
        }
        match state.claims.get(key) {
            Some(expiry) if *expiry > now => Ok(false),
            _ => {
                state.claims.insert(key.to_owned(), now + ttl);
                Ok(true)
            }
        }
    }

    /// One process is one node: only its connection count is kept.
    async fn heartbeat(
        &self,
        _node_id: &str,
        _ttl: Duration,
        connections: u64,
    ) -> Result<(), StoreError> {
        self.online
            .store(connections, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn online(&self) -> Result<u64, StoreError> {
        Ok(self.online.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// One process is one node.
    async fn live_nodes(&self) -> Result<u64, StoreError> {
        Ok(1)
    }

    /// One process is one node: it cannot outlive itself.
    async fn sweep_dead_nodes(&self) -> Result<Vec<Departure>, StoreError> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl Bus for MemoryEngine {
    async fn subscribe(&self, _room_id: &str) -> Result<(), BusError> {
        Ok(())
    }

    async fn unsubscribe(&self, _room_id: &str) -> Result<(), BusError> {
        Ok(())
    }

    /// Hot path: delivers synchronously to the local relay.
    async fn publish(&self, room_id: &str, message: BusMessage) -> Result<(), BusError> {
        let sink = self
            .sink
            .get()
            .ok_or_else(|| BusError("no relay attached".into()))?;
        let _order = self.publish_order.lock().unwrap_or_else(|e| e.into_inner());
        sink.deliver(room_id, message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, capacity: u32, password_hash: &str) -> NewRoom {
        NewRoom {
            record: RoomRecord {
                id: id.into(),
                created_at: 0,
                expires_at: 0,
                ephemeral: 0,
                password_hash: password_hash.into(),
                capacity,
                listed: false,
            },
            unjoined_ttl: Duration::from_secs(60),
        }
    }

    fn member(n: u32) -> MemberRecord {
        MemberRecord {
            id: MemberId::from_random(n),
            name: format!("m{n}"),
            color: "#404040".into(),
            node: "local".into(),
            joined_at: n as i64,
        }
    }

    #[tokio::test]
    async fn join_checks_run_in_reference_order() {
        let e = MemoryEngine::new(MemoryLimits::default());
        assert_eq!(
            e.join("nope", member(1), false, 0).await.unwrap_err(),
            JoinError::NotFound
        );
        assert!(e.create_room(record("r", 1, "hash")).await.unwrap());
        assert!(!e.create_room(record("r", 1, "")).await.unwrap());
        assert_eq!(
            e.join("r", member(1), false, 0).await.unwrap_err(),
            JoinError::NeedsPassword
        );
        let joined = e.join("r", member(1), true, 0).await.unwrap();
        assert_eq!(joined.members.len(), 1);
        assert_eq!(
            e.join("r", member(2), true, 0).await.unwrap_err(),
            JoinError::Full
        );
    }

    #[tokio::test]
    async fn ids_are_unique_and_the_last_leaver_destroys_the_room() {
        let e = MemoryEngine::new(MemoryLimits::default());
        e.create_room(record("r", 5, "")).await.unwrap();
        e.join("r", member(1), false, 0).await.unwrap();
        assert_eq!(
            e.join("r", member(1), false, 0).await.unwrap_err(),
            JoinError::IdTaken
        );
        let joined = e.join("r", member(2), false, 0).await.unwrap();
        assert_eq!(joined.members.last().unwrap().id, MemberId::from_random(2));
        let left = e.leave("r", MemberId::from_random(1)).await.unwrap();
        assert_eq!((left.was_member, left.destroyed), (true, false));
        let left = e.leave("r", MemberId::from_random(2)).await.unwrap();
        assert_eq!((left.was_member, left.destroyed), (true, true));
        assert!(e.room("r").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn counters_reset_per_window_and_claims_are_single_use() {
        let e = MemoryEngine::new(MemoryLimits::default());
        let w = Duration::from_secs(60);
        assert_eq!(e.hit("k", 1, w).await.unwrap(), 1);
        assert_eq!(e.hit("k", 1, w).await.unwrap(), 2);
        assert_eq!(e.hit("k", 0, w).await.unwrap(), 2);
        assert_eq!(e.hit("k", 1, Duration::ZERO).await.unwrap(), 1);
        assert!(e.claim_once("t", w).await.unwrap());
        assert!(!e.claim_once("t", w).await.unwrap());
    }
}
