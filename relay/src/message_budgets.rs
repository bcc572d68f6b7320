//! Per-connection budgets of the client messages the reference never
//! limited: reactions, typing, room changes (CreateRoom and JoinRoom) and
//! file frames (PROTOCOL.md §8).
//!
//! Each is counted when the message arrives, before it is parsed or fanned
//! out (room changes once they parse, so a malformed one, answered with E005
//! and costing nothing, is not counted; still before any store or gateway
//! work). Reactions, typing and room changes beyond their budget are refused
//! with `E004 "rate limited, please slow down"` (the message is dropped, the
//! connection stays). File frames are paced instead of refused: a frame
//! beyond the byte budget is relayed after the connection has paused long
//! enough to be back within it, and while it pauses the relay reads nothing
//! more from that socket, so TCP back-pressure slows the sender down and no
//! chunk of a transfer is lost. A pause longer than [`MAX_FILE_PAUSE`] (only
//! with a budget set far below the frame size) refuses the frame with E004
//! instead.
//!
//! SendMessage keeps the reference's own sliding window (`chat-rate-limit`).
//! Pong, LeaveRoom (a leave needs a join first), unknown types and invalid
//! messages fan nothing out: their only cost is a reply to the sender, which
//! the sender's outbound queue bound (close 4001) limits.

use std::time::Duration;

use crate::budget::{now_ns, Budget, Rate};
use crate::config::MessageBudgets;

/// Longest a connection pauses for one file frame; a frame that would need
/// more is refused.
pub const MAX_FILE_PAUSE: Duration = Duration::from_secs(2);
/// Every file frame costs at least this many bytes of the budget, so a
/// flood of tiny acks is bounded in frames as well as bytes.
pub const MIN_FILE_FRAME_COST: u64 = 1024;

/// The rates of the budgets, computed once per relay.
#[derive(Debug, Clone)]
pub struct Rates {
    reactions: Rate,
    typing: Rate,
    room_changes: Rate,
    file_bytes: Rate,
}

impl Rates {
    /// The rates of `budgets`.
    pub fn new(budgets: &MessageBudgets) -> Rates {
        let minute = Duration::from_secs(60);
        Rates {
            reactions: Rate::per(budgets.reactions_per_minute, minute),
            typing: Rate::per(budgets.typing_per_minute, minute),
            room_changes: Rate::per(budgets.room_changes_per_minute, minute),
            file_bytes: Rate::per_sec_with_burst(
                budgets.file_bytes_per_sec,
                budgets.file_burst_bytes,
            ),
        }
    }
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it now.
    Go,
    /// Pause the connection this long, then handle it.
    PauseThenGo(Duration),
    /// Refuse it with E004.
    Refuse,
}

/// Which budget a message spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reaction,
    Typing,
    RoomChange,
    /// A file frame of this many bytes.
    File(usize),
}

/// One connection's budgets (32 bytes).
#[derive(Debug, Clone, Default)]
pub struct ConnectionBudgets {
    reactions: Budget,
    typing: Budget,
    room_changes: Budget,
    file_bytes: Budget,
}

impl ConnectionBudgets {
    /// Spends what a message of `kind` costs.
    pub fn spend(&mut self, rates: &Rates, kind: Kind) -> Verdict {
        let now = now_ns();
        let refused = |r: Result<(), Duration>| match r {
            Ok(()) => Verdict::Go,
            Err(_) => Verdict::Refuse,
        };
        match kind {
            Kind::Reaction => refused(self.reactions.spend(&rates.reactions, 1, now)),
            Kind::Typing => refused(self.typing.spend(&rates.typing, 1, now)),
            Kind::RoomChange => refused(self.room_changes.spend(&rates.room_changes, 1, now)),
            Kind::File(bytes) => {
                let rate = &rates.file_bytes;
                if rate.burst() == 0 {
                    return Verdict::Refuse;
                }
                let cost = u64::try_from(bytes)
                    .unwrap_or(u64::MAX)
                    .max(MIN_FILE_FRAME_COST);
                // Refuse before spending when the pause would be too long.
                let mut trial = self.file_bytes;
                let pause = trial.spend_paced(rate, cost, now);
                if pause > MAX_FILE_PAUSE {
                    return Verdict::Refuse;
                }
                self.file_bytes = trial;
                if pause.is_zero() {
                    Verdict::Go
                } else {
                    Verdict::PauseThenGo(pause)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(budgets: MessageBudgets) -> Rates {
        Rates::new(&budgets)
    }

    #[test]
    fn reactions_beyond_the_burst_are_refused() {
        let r = rates(MessageBudgets {
            reactions_per_minute: 3,
            ..MessageBudgets::default()
        });
        let mut b = ConnectionBudgets::default();
        for _ in 0..3 {
            assert_eq!(b.spend(&r, Kind::Reaction), Verdict::Go);
        }
        assert_eq!(b.spend(&r, Kind::Reaction), Verdict::Refuse);
        assert_eq!(
            b.spend(&r, Kind::Typing),
            Verdict::Go,
            "budgets are separate"
        );
    }

    #[test]
    fn file_frames_beyond_the_burst_pause_and_absurd_pauses_refuse() {
        let r = rates(MessageBudgets {
            file_bytes_per_sec: 100_000,
            file_burst_bytes: 100_000,
            ..MessageBudgets::default()
        });
        let mut b = ConnectionBudgets::default();
        assert_eq!(b.spend(&r, Kind::File(100_000)), Verdict::Go);
        match b.spend(&r, Kind::File(50_000)) {
            Verdict::PauseThenGo(p) => {
                assert!(p > Duration::from_millis(400) && p <= Duration::from_millis(500))
            }
            other => panic!("{other:?}"),
        }
        // Tiny frames cost at least MIN_FILE_FRAME_COST.
        let slow = rates(MessageBudgets {
            file_bytes_per_sec: 100,
            file_burst_bytes: 1024,
            ..MessageBudgets::default()
        });
        let mut b = ConnectionBudgets::default();
        assert_eq!(b.spend(&slow, Kind::File(10)), Verdict::Go);
        assert_eq!(
            b.spend(&slow, Kind::File(10)),
            Verdict::Refuse,
            "a 10 s pause"
        );
    }
}
