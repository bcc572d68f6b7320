//! Room linger: one concept, held in two places.
//!
//! When a relay's last local member of a room leaves, the relay keeps
//! holding the room for a while (the [`RoomLinger`]), so a member who leaves
//! and comes back (a reload, a flaky network) costs no round trips. A relay
//! holds a room in two places, and the linger is the same for both:
//!
//! - its bus subscription to the room (the relay's hub: `relay::hub`
//!   retires the subscription once the linger is over);
//! - on Redis, the room's entry in the relay's node room set
//!   (`arthas:node:{N}:rooms`, read by the sweeper): the engine removes it on
//!   the first heartbeat after the linger is over.
//!
//! The relay has one setting (`RelayConfig::room_linger`, the flag
//! `--room-linger-ms`) and hands the same value to its engine
//! (`RedisConfig::room_linger`). Zero turns lingering off: an emptied room
//! is let go at once in both places. A gateway holds no rooms and runs
//! with [`RoomLinger::OFF`].

use std::time::{Duration, Instant};

/// How long a relay keeps holding a room after its last local member left
/// (see the module doc).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoomLinger(Duration);

impl RoomLinger {
    /// No lingering: an emptied room is let go at once.
    pub const OFF: RoomLinger = RoomLinger(Duration::ZERO);

    /// A linger of `duration` (zero is [`RoomLinger::OFF`]).
    pub const fn new(duration: Duration) -> RoomLinger {
        RoomLinger(duration)
    }

    /// How long an emptied room is held.
    pub const fn duration(self) -> Duration {
        self.0
    }

    /// Whether emptied rooms are let go at once.
    pub fn is_off(self) -> bool {
        self.0.is_zero()
    }

    /// Whether a room emptied at `emptied_at` has lingered long enough to be
    /// let go.
    pub fn is_over(self, emptied_at: Instant) -> bool {
        emptied_at.elapsed() >= self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_is_over_at_once_and_a_linger_is_not() {
        let now = Instant::now();
        assert!(RoomLinger::OFF.is_off());
        assert!(RoomLinger::OFF.is_over(now));
        let linger = RoomLinger::new(Duration::from_secs(60));
        assert!(!linger.is_off());
        assert!(!linger.is_over(now));
        assert_eq!(linger.duration(), Duration::from_secs(60));
    }
}
