//! The engine seam: where room state and the message bus live.
//!
//! The relay and the gateway talk to two traits and nothing else:
//!
//! - [`RoomStore`]: room records, members (presence), public listings, and
//!   fixed-window counters for rate limits: plain counters, budgets that
//!   refuse without counting, and password guesses counted on a room
//!   atomically with its existence. Every operation that must be atomic
//!   across nodes (create, join, leave, a guess) is one call.
//! - [`Bus`]: one channel per room. A relay subscribes to the rooms where it
//!   has local members and publishes each accepted message once; every
//!   subscribed relay (the publisher included) gets it once, in the room's
//!   order, through its [`BusSink`].
//!
//! Engines: [`memory`] (one process; `cargo run` and unit tests; its
//! counters live in [`window`] tables) and, behind
//! the same traits, [`redis`] (standalone Redis or a Redis Cluster).
//! `testing` (feature `test-support`) starts real Redis servers for tests;
//! [`clock`] is the seam through which code asks what time it is;
//! [`linger`] says how long a relay keeps holding an emptied room;
//! [`warn_limit`] keeps repeated warnings to one line per interval.

pub mod bus;
pub mod clock;
pub mod linger;
pub mod memory;
pub mod redis;
pub mod room;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod warn_limit;
pub mod window;

pub use bus::{Bus, BusError, BusMessage, BusSink, Target, MAX_TRANSFER_ID_BYTES};
pub use clock::{Clock, ManualClock, OffsetFileClock, SharedClock, SystemClock};
pub use linger::RoomLinger;
pub use room::{
    relays_of, Departure, JoinError, Joined, Left, Listing, ListingView, MemberRecord,
    MemberRestored, NewRoom, NodeState, Restored, RoomGuess, RoomRecord, RoomRestore, RoomRestored,
    RoomSecrets, RoomStore, SecretOutcome, SecretUpdate, StoreError,
};

/// Seconds since the Unix epoch (room timestamps).
pub fn unix_secs() -> i64 {
    unix_millis() / 1000
}

/// Milliseconds since the Unix epoch (message timestamps).
pub fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
