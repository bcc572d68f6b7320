//! Room records, members and listings, and the [`RoomStore`] trait.

use async_trait::async_trait;
use protocol::member::MemberId;
use std::time::Duration;

/// Most chat messages remembered per listed room for its activity count
/// ([`RoomStore::count_activity`]); every engine caps at this.
pub const MAX_ACTIVITY_PER_ROOM: usize = 10_000;
/// The window of a listed room's activity count (the directory's "messages
/// in the last 5 minutes"), milliseconds; the same in every engine.
pub const ACTIVITY_WINDOW_MS: i64 = 5 * 60 * 1000;

/// A backend failure (Redis unreachable, a script error). Callers answer
/// the client with an error frame; nothing panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store unavailable: {0}")]
pub struct StoreError(pub String);

/// What a room is, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    /// NanoID, 21 characters.
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; 0 = never expires. Expired means `now > expires_at`.
    pub expires_at: i64,
    /// Seconds after which clients delete messages; stored and echoed only.
    pub ephemeral: i64,
    /// argon2id PHC string of the client's SHA-256 hex, or empty (no password).
    pub password_hash: String,
    /// Most members the room takes.
    pub capacity: u32,
    /// Whether the room is in the public directory (activity is counted).
    pub listed: bool,
}

impl RoomRecord {
    /// Whether joining needs a password check.
    pub fn has_password(&self) -> bool {
        !self.password_hash.is_empty()
    }

    /// Expired means strictly after `expires_at`.
    pub fn is_expired(&self, now_secs: i64) -> bool {
        self.expires_at > 0 && now_secs > self.expires_at
    }
}

/// What the gateway asks the store to create.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub record: RoomRecord,
    /// An unjoined room vanishes after this long (its creator never came).
    /// Ignored when `keep_while_empty`.
    pub unjoined_ttl: Duration,
    /// The room survives having no members (the daily topic): neither its
    /// last leave nor a dead relay's sweep destroys it, and nobody needs to
    /// join it first. It ends at its expiry (plus the engine's grace) or by
    /// [`RoomStore::destroy`].
    pub keep_while_empty: bool,
    /// Extension: SHA-256 hex of the owner secret the creator keeps, or
    /// empty (the room has no owner). Kept in the room record, read by
    /// [`RoomStore::owner_hash`], changed by
    /// [`RoomStore::update_room_secrets`].
    pub owner_hash: String,
}

/// What [`RoomStore::update_room_secrets`] changes; `None` keeps a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretUpdate {
    /// A new argon2id PHC string of the join password.
    pub password_hash: Option<String>,
    /// A new owner hash (the capability handed over).
    pub owner_hash: Option<String>,
}

/// A room's secrets as [`RoomStore::secrets`] reads them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RoomSecrets {
    /// The join password's argon2id PHC string ("" without a password).
    pub password_hash: String,
    /// The owner hash ("" without an owner).
    pub owner_hash: String,
}

impl std::fmt::Debug for RoomSecrets {
    /// Never prints the password verifier or the owner hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomSecrets")
            .field("has_password", &!self.password_hash.is_empty())
            .field("has_owner", &!self.owner_hash.is_empty())
            .finish()
    }
}

/// The outcome of [`RoomStore::update_room_secrets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOutcome {
    /// Changed.
    Updated,
    /// No such room.
    NotFound,
    /// The room's owner hash is not the one given (or the room has none):
    /// nothing changed.
    NotOwner,
}

/// A member, as the room's other members see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub id: MemberId,
    pub name: String,
    /// `#rrggbb`, from the id.
    pub color: String,
    /// The relay node the member's socket is on.
    pub node: String,
    /// Unix milliseconds; orders the member list.
    pub joined_at: i64,
}

/// How many relay nodes hold `members` (each counted once).
pub fn relays_of(members: &[MemberRecord]) -> u64 {
    let mut nodes: Vec<&str> = members.iter().map(|m| m.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes.len() as u64
}

/// A successful join.
#[derive(Debug, Clone)]
pub struct Joined {
    pub room: RoomRecord,
    /// Join order; the joiner is last.
    pub members: Vec<MemberRecord>,
}

/// Why a join was refused, in the order the checks run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("room not found")]
    NotFound,
    #[error("room has expired")]
    Expired,
    /// The room has a password and the caller has not had it checked.
    #[error("password required")]
    NeedsPassword,
    #[error("room is full")]
    Full,
    /// Another member of the room has this id: pick a new one and retry.
    #[error("member id taken")]
    IdTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of a leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// The member was in the room (false: already gone, nothing to announce).
    pub was_member: bool,
    /// The room was empty afterwards and has been destroyed.
    pub destroyed: bool,
}

/// A member removed from a room because its relay node stopped heartbeating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    pub room_id: String,
    pub member_id: MemberId,
    /// The room was left empty and has been destroyed.
    pub room_destroyed: bool,
}

/// A public directory entry (PROTOCOL.md §9), as registered at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub room_id: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    /// `roomId:keyEncoded:ephemeral:expiresAt`, published by the creator's choice.
    pub share_code: String,
    pub has_password: bool,
    pub created_at: i64,
    pub expires_at: i64,
    pub is_daily_topic: bool,
}

/// A listing with its live figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingView {
    pub listing: Listing,
    pub member_count: u32,
    /// Chat messages in the last 5 minutes (capped).
    pub message_count_5min: u32,
}

/// What became of a password guess counted on a room
/// ([`RoomStore::reserve_guess`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomGuess {
    /// No such room: nothing was counted.
    NotFound,
    /// The room has no password: nothing was counted.
    Open,
    /// The client has `limit` guesses on the room in the window already:
    /// nothing was counted.
    Refused,
    /// Counted against the room and the client: verify it now, then
    /// [`RoomStore::release_guess`] unless it was wrong.
    Reserved {
        /// The room's argon2id PHC string.
        password_hash: String,
        /// The room's guesses in the window, this one included.
        room_guesses: u64,
    },
}

/// What a relay's own view of the store is (see [`RoomStore::node_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// The store still holds what this engine recorded for the node.
    Known,
    /// The store has no record of this engine's node (it restarted empty,
    /// failed over to an empty replica, or this is the node's first check):
    /// the node must re-assert what it holds. Nobody was told its members
    /// left.
    Lost,
    /// Another relay swept this node as dead (its heartbeat lapsed): its
    /// members were removed and announced as gone (MemberLeft).
    Swept,
}

/// Everything a relay holds about one live room, to write back into a
/// store that lost it ([`RoomStore::restore_room`]).
#[derive(Clone)]
pub struct RoomRestore {
    /// The record as the relay's first local join read it (expiry, listing
    /// flag, capacity), with the password verifier the relay last read.
    pub record: RoomRecord,
    /// The owner hash (extension; empty: the room has no owner), as the
    /// relay last read it.
    pub owner_hash: String,
    /// The directory entry, for a listed room.
    pub listing: Option<Listing>,
    /// This relay's members of the room, in join order.
    pub members: Vec<MemberRecord>,
    /// The relay holding them.
    pub node: String,
    /// Unix seconds (an expired room is not restored).
    pub now_secs: i64,
}

impl std::fmt::Debug for RoomRestore {
    /// Never prints the password verifier or the owner hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomRestore")
            .field("room", &self.record.id)
            .field("has_password", &self.record.has_password())
            .field("has_owner", &!self.owner_hash.is_empty())
            .field("listed", &self.listing.is_some())
            .field("members", &self.members.len())
            .field("node", &self.node)
            .finish()
    }
}

/// What became of a room's record in a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRestored {
    /// The record was there already.
    Kept,
    /// The record was missing and has been written back (and its listing).
    Recreated,
    /// The record was missing and the room has expired: not restored.
    Expired,
}

/// What became of one member in a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRestored {
    /// The member was still recorded.
    Present,
    /// The member was missing and has been added back.
    Added,
    /// The member was missing and the room is full now.
    Full,
    /// The member was missing and another member has its id now.
    IdTaken,
}

/// The outcome of [`RoomStore::restore_room`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub room: RoomRestored,
    /// One entry per member of the request, in its order.
    pub members: Vec<(MemberId, MemberRestored)>,
    /// Members who joined the room since its record was last recreated
    /// (after the loss): their member lists lacked the members put back
    /// now, so they are told (MemberJoined).
    pub joined_since_loss: Vec<MemberId>,
}

/// Room records, presence, listings and counters.
///
/// Guarantees every engine keeps:
/// - `create_room`, `join`, `leave` and `destroy` are atomic: two relays
///   racing for the last seat, or the last two members leaving at once,
///   see one consistent order;
/// - member ids are unique within a room (`join` refuses a taken id);
/// - the member list comes back in join order;
/// - only ids, names, colours, timestamps, password hashes and counters are
///   stored, never ciphertext.
#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Stores a new, empty room. Fails with `Ok(false)` if the id exists.
    async fn create_room(&self, room: NewRoom) -> Result<bool, StoreError>;

    /// Reads a room record.
    async fn room(&self, room_id: &str) -> Result<Option<RoomRecord>, StoreError>;

    /// Adds a member. Checks, in order: the room exists, is not expired
    /// (`now_secs`), has no password or `password_checked`, is not full, and
    /// the id is free.
    async fn join(
        &self,
        room_id: &str,
        member: MemberRecord,
        password_checked: bool,
        now_secs: i64,
    ) -> Result<Joined, JoinError>;

    /// Removes a member held by relay `node` (the node it joined through:
    /// a relay only removes its own members, so the store need not look the
    /// node up); destroys the room (and its listing) when it empties, unless it was
    /// created `keep_while_empty`.
    async fn leave(
        &self,
        room_id: &str,
        member_id: MemberId,
        node: &str,
    ) -> Result<Left, StoreError>;

    /// The room's owner hash (extension): `None` when there is no such
    /// room, `Some("")` when it has no owner.
    async fn owner_hash(&self, room_id: &str) -> Result<Option<String>, StoreError>;

    /// The room's password verifier and owner hash, read together: `None`
    /// when there is no such room. An engine that can should read both in
    /// one round trip (a relay reads them after its first local join of
    /// each room, to write them back if the store loses the room).
    async fn secrets(&self, room_id: &str) -> Result<Option<RoomSecrets>, StoreError> {
        let Some(record) = self.room(room_id).await? else {
            return Ok(None);
        };
        Ok(self
            .owner_hash(room_id)
            .await?
            .map(|owner_hash| RoomSecrets {
                password_hash: record.password_hash,
                owner_hash,
            }))
    }

    /// Changes a room's join password hash and/or owner hash, atomically
    /// with the check that its owner hash is `owner_hash` (non-empty):
    /// two owners racing with the same old secret see one order, and a
    /// hand-over takes effect for every later call.
    async fn update_room_secrets(
        &self,
        room_id: &str,
        owner_hash: &str,
        update: SecretUpdate,
    ) -> Result<SecretOutcome, StoreError>;

    /// Removes a room, its members and its listing (expiry). Idempotent.
    async fn destroy(&self, room_id: &str) -> Result<(), StoreError>;

    /// Lists a room publicly unless `max_listed` rooms (daily topics aside)
    /// are listed already; `Ok(false)` when the directory is full.
    async fn list_room(&self, listing: Listing, max_listed: usize) -> Result<bool, StoreError>;

    /// Lists `listing` (a daily topic) as the one daily topic of UTC day
    /// `day` (days since the Unix epoch), unless that day has one already:
    /// then `Ok(false)` and nothing changes. Atomic across every caller on
    /// every node: of any number of concurrent calls for one day, exactly one
    /// gets `Ok(true)`. The day's mark is kept for `mark_ttl`; the listing
    /// bypasses the `max_listed` cap and its room counts activity.
    async fn list_daily_topic(
        &self,
        day: i64,
        listing: Listing,
        mark_ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Every listing with its member count and 5-minute activity.
    async fn listings(&self, now_millis: i64) -> Result<Vec<ListingView>, StoreError>;

    /// Counts one chat message in a listed room's 5-minute activity.
    async fn count_activity(&self, room_id: &str, now_millis: i64) -> Result<(), StoreError>;

    /// Adds `n` to a fixed-window counter and returns its value in the
    /// current window (`n = 0` reads it).
    async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<u64, StoreError>;

    /// Takes one from a fixed-window budget: `true` (and counted) while
    /// `key` has had fewer than `limit` in its window, else `false` and
    /// nothing counted. Atomic, so concurrent callers never overspend.
    async fn take(&self, key: &str, limit: u64, window: Duration) -> Result<bool, StoreError>;

    /// Gives back one [`take`](RoomStore::take)n from `key` (never below zero).
    async fn give_back(&self, key: &str) -> Result<(), StoreError>;

    /// Counts a password guess by `client` (a client key) on `room_id`
    /// before it is verified, atomically with the room's existence: no
    /// counter is made for a room that does not exist or has no password,
    /// and a client with `client_limit` guesses on the room in the `window`
    /// is refused without counting. The room's guesses are counted but never
    /// refused here (the caller decides how to slow them down).
    async fn reserve_guess(
        &self,
        room_id: &str,
        client: &str,
        client_limit: u64,
        window: Duration,
    ) -> Result<RoomGuess, StoreError>;

    /// Takes back a guess counted by [`reserve_guess`](RoomStore::reserve_guess)
    /// (it was right, or never verified).
    async fn release_guess(&self, room_id: &str, client: &str) -> Result<(), StoreError>;

    /// Members of a room now (`None`: no such room).
    async fn member_count(&self, room_id: &str) -> Result<Option<u32>, StoreError>;

    /// Atomically claims a single-use token (tickets); false if used before.
    async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Records that relay `node_id` is alive for the next `ttl` and holds
    /// `connections` WebSockets (presence, and the directory's online count).
    async fn heartbeat(
        &self,
        node_id: &str,
        ttl: Duration,
        connections: u64,
    ) -> Result<(), StoreError>;

    /// WebSockets held by all live relays, as of their last heartbeats.
    async fn online(&self) -> Result<u64, StoreError>;

    /// How many relay nodes are alive (their heartbeat has not lapsed): the
    /// cluster as Redis sees it. Every relay exports its answer, so relays
    /// that disagree (pointed at different Redis servers) show up.
    async fn live_nodes(&self) -> Result<u64, StoreError>;

    /// How many relay nodes hold members of room `room_id` (0: no such
    /// room). A relay subscribes to a room's channel while it holds members
    /// there, so a publish that reached fewer relays than this lost some
    /// of them (see the relay's `reach` module).
    async fn relays_holding(&self, room_id: &str) -> Result<u64, StoreError>;

    /// Whether the store still holds what this engine recorded for relay
    /// `node_id` (checked after each heartbeat). Engines that cannot lose
    /// state answer [`NodeState::Known`].
    async fn node_state(&self, _node_id: &str) -> Result<NodeState, StoreError> {
        Ok(NodeState::Known)
    }

    /// Writes back what a relay holds about a live room: the record (with
    /// its expiry, listing flag, capacity and password verifier) unless it
    /// exists or the room has expired, the listing of a recreated listed
    /// room, and each of the relay's members that is missing (while the
    /// room has room). Idempotent: several relays restoring one room at once
    /// each add their own members once. Restored members are listed by
    /// their original join time, ahead of members who joined after the
    /// loss. Engines that cannot lose state report everything as present.
    async fn restore_room(&self, restore: RoomRestore) -> Result<Restored, StoreError> {
        Ok(Restored {
            room: RoomRestored::Kept,
            members: restore
                .members
                .iter()
                .map(|m| (m.id, MemberRestored::Present))
                .collect(),
            joined_since_loss: Vec::new(),
        })
    }

    /// A listed room's directory entry as registered (`None`: not listed).
    async fn listing(&self, _room_id: &str) -> Result<Option<Listing>, StoreError> {
        Ok(None)
    }

    /// Removes every member whose relay node's heartbeat lapsed and destroys
    /// rooms left empty (those created `keep_while_empty` stay); returns the departures so the caller can announce
    /// MemberLeft. Safe to run on every relay at once (each departure is
    /// returned to exactly one caller).
    async fn sweep_dead_nodes(&self) -> Result<Vec<Departure>, StoreError>;
}
