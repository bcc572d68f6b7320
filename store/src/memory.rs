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
    Departure, JoinError, Joined, Left, Listing, ListingView, MemberRecord, NewRoom, RoomGuess,
    RoomRecord, RoomStore, SecretOutcome, SecretUpdate, StoreError, ACTIVITY_WINDOW_MS,
    MAX_ACTIVITY_PER_ROOM,
};
use crate::window::{CounterTable, Window};

/// How long an expired room kept while empty (a daily topic nobody is in)
/// stays before it is dropped: the Redis engine's default grace. A room with
/// members is destroyed by its relay at expiry instead.
const EXPIRED_EMPTY_ROOM_GRACE_SECS: i64 = 60;
/// Daily-topic marks older than this many days are forgotten.
const DAILY_MARK_DAYS: i64 = 2;

/// Limits of the in-memory engine.
#[derive(Debug, Clone)]
pub struct MemoryLimits {
    /// Most fixed-window counters kept (rate limits and budgets per client
    /// address); beyond it the lowest counts are evicted ([`CounterTable`]).
    pub max_counters: usize,
    /// Most clients whose password guesses are counted per room (the lowest
    /// counts are evicted beyond it).
    pub max_guessers_per_room: usize,
    /// Most single-use tokens remembered.
    pub max_claims: usize,
}

impl Default for MemoryLimits {
    fn default() -> Self {
        MemoryLimits {
            max_counters: 100_000,
            max_guessers_per_room: 4_096,
            max_claims: 100_000,
        }
    }
}

struct RoomEntry {
    record: RoomRecord,
    /// Join order.
    members: Vec<MemberRecord>,
    /// An unjoined room vanishes at this instant (None once someone joined,
    /// or when kept while empty).
    unjoined_deadline: Option<Instant>,
    /// Password guesses on the room; made at the first guess of a password
    /// room, gone with the room.
    guesses: Option<Box<RoomGuesses>>,
    /// Survives having no members (a daily topic).
    keep_while_empty: bool,
    /// SHA-256 hex of the owner secret, or empty.
    owner_hash: String,
}

/// A password room's guess counters (wrong guesses and guesses being
/// verified, in the current window).
struct RoomGuesses {
    /// Every client's together.
    room: Window,
    /// Per client key.
    clients: CounterTable,
}

struct ListingEntry {
    listing: Listing,
    /// Timestamps (ms) of recent chat messages, oldest first.
    activity: std::collections::VecDeque<i64>,
}

struct State {
    rooms: HashMap<String, RoomEntry>,
    listings: HashMap<String, ListingEntry>,
    /// Rate limits and budgets by key.
    counters: CounterTable,
    /// key -> expiry
    claims: HashMap<String, Instant>,
    /// UTC day -> the room listed as that day's topic.
    daily_topics: HashMap<i64, String>,
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

    /// Drops empty rooms kept while empty once their expiry is past the
    /// grace (nobody is in them to have a relay close them).
    fn sweep_expired_empty(&mut self, now_secs: i64) {
        let gone: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| {
                r.keep_while_empty
                    && r.members.is_empty()
                    && r.record.expires_at > 0
                    && now_secs
                        > r.record
                            .expires_at
                            .saturating_add(EXPIRED_EMPTY_ROOM_GRACE_SECS)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
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
            state: Mutex::new(State {
                rooms: HashMap::new(),
                listings: HashMap::new(),
                counters: CounterTable::new(limits.max_counters),
                claims: HashMap::new(),
                daily_topics: HashMap::new(),
            }),
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
        let unjoined_deadline =
            (!room.keep_while_empty).then(|| Instant::now() + room.unjoined_ttl);
        state.rooms.insert(
            room.record.id.clone(),
            RoomEntry {
                record: room.record,
                members: Vec::new(),
                unjoined_deadline,
                guesses: None,
                keep_while_empty: room.keep_while_empty,
                owner_hash: room.owner_hash,
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

    async fn leave(
        &self,
        room_id: &str,
        member_id: MemberId,
        _node: &str,
    ) -> Result<Left, StoreError> {
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
        let destroyed = was_member && room.members.is_empty() && !room.keep_while_empty;
        if destroyed {
            state.remove_room(room_id);
        }
        Ok(Left {
            was_member,
            destroyed,
        })
    }

    async fn owner_hash(&self, room_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .state()
            .rooms
            .get(room_id)
            .map(|r| r.owner_hash.clone()))
    }

    async fn update_room_secrets(
        &self,
        room_id: &str,
        owner_hash: &str,
        update: SecretUpdate,
    ) -> Result<SecretOutcome, StoreError> {
        let mut state = self.state();
        let Some(room) = state.rooms.get_mut(room_id) else {
            return Ok(SecretOutcome::NotFound);
        };
        if owner_hash.is_empty() || room.owner_hash != owner_hash {
            return Ok(SecretOutcome::NotOwner);
        }
        if let Some(password_hash) = update.password_hash {
            room.record.password_hash = password_hash;
        }
        if let Some(owner_hash) = update.owner_hash {
            room.owner_hash = owner_hash;
        }
        Ok(SecretOutcome::Updated)
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

    async fn list_daily_topic(
        &self,
        day: i64,
        listing: Listing,
        _mark_ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.daily_topics.contains_key(&day) {
            return Ok(false);
        }
        let Some(room) = state.rooms.get_mut(&listing.room_id) else {
            return Err(StoreError(format!(
                "daily topic room {} does not exist",
                listing.room_id
            )));
        };
        room.record.listed = true;
        state
            .daily_topics
            .retain(|d, _| *d > day.saturating_sub(DAILY_MARK_DAYS));
        state.daily_topics.insert(day, listing.room_id.clone());
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
        let mut state = self.state();
        state.sweep_expired_empty(now_millis.div_euclid(1000));
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
        Ok(self.state().counters.hit(key, n, window, Instant::now()))
    }

    async fn take(&self, key: &str, limit: u64, window: Duration) -> Result<bool, StoreError> {
        Ok(self
            .state()
            .counters
            .take(key, limit, window, Instant::now()))
    }

    async fn give_back(&self, key: &str) -> Result<(), StoreError> {
        self.state().counters.give_back(key, Instant::now());
        Ok(())
    }

    async fn reserve_guess(
        &self,
        room_id: &str,
        client: &str,
        client_limit: u64,
        window: Duration,
    ) -> Result<RoomGuess, StoreError> {
        let now = Instant::now();
        let max_guessers = self.limits.max_guessers_per_room;
        let mut state = self.state();
        let Some(room) = state.rooms.get_mut(room_id) else {
            return Ok(RoomGuess::NotFound);
        };
        if !room.record.has_password() {
            return Ok(RoomGuess::Open);
        }
        let guesses = room.guesses.get_or_insert_with(|| {
            Box::new(RoomGuesses {
                room: Window::new(now, window),
                clients: CounterTable::new(max_guessers),
            })
        });
        if !guesses.clients.take(client, client_limit, window, now) {
            return Ok(RoomGuess::Refused);
        }
        let room_guesses = guesses.room.current(now, window);
        *room_guesses = room_guesses.saturating_add(1);
        Ok(RoomGuess::Reserved {
            room_guesses: *room_guesses,
            password_hash: room.record.password_hash.clone(),
        })
    }

    async fn release_guess(&self, room_id: &str, client: &str) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut state = self.state();
        let guesses = state
            .rooms
            .get_mut(room_id)
            .and_then(|room| room.guesses.as_mut());
        if let Some(guesses) = guesses {
            guesses.clients.give_back(client, now);
            guesses.room.take_back(now);
        }
        Ok(())
    }

    async fn member_count(&self, room_id: &str) -> Result<Option<u32>, StoreError> {
        Ok(self
            .state()
            .rooms
            .get(room_id)
            .map(|room| u32::try_from(room.members.len()).unwrap_or(u32::MAX)))
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

    async fn relays_holding(&self, room_id: &str) -> Result<u64, StoreError> {
        let state = self.state();
        Ok(state
            .rooms
            .get(room_id)
            .map_or(0, |room| crate::room::relays_of(&room.members)))
    }

    async fn listing(&self, room_id: &str) -> Result<Option<Listing>, StoreError> {
        Ok(self
            .state()
            .listings
            .get(room_id)
            .map(|entry| entry.listing.clone()))
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
    async fn publish(&self, room_id: &str, message: BusMessage) -> Result<Option<u64>, BusError> {
        let sink = self
            .sink
            .get()
            .ok_or_else(|| BusError("no relay attached".into()))?;
        let _order = self.publish_order.lock().unwrap_or_else(|e| e.into_inner());
        sink.deliver(room_id, message);
        Ok(None)
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
            keep_while_empty: false,
            owner_hash: String::new(),
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
        let left = e.leave("r", MemberId::from_random(1), "n").await.unwrap();
        assert_eq!((left.was_member, left.destroyed), (true, false));
        let left = e.leave("r", MemberId::from_random(2), "n").await.unwrap();
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
