//! Rate budgets: a sustained rate with a burst (GCRA, the generic cell rate
//! algorithm), in 8 bytes of state.
//!
//! Every connection carries a budget per kind of client message (reactions,
//! typing, room changes, file bytes), and the relay one handshake budget per
//! client address, so the state must be small: a budget is one timestamp,
//! the "theoretical arrival time" of the next unit, in nanoseconds since a
//! process-wide epoch. A unit costs `interval`; a budget may run up to
//! `burst` units ahead of the sustained rate. (The `governor` crate does the
//! same with a clock and an atomic per limiter, about eight times the state
//! per budget; here the state lives inside a connection's task, unshared.)

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A budget's shape: what one unit costs and how far ahead it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds one unit costs (the sustained rate's period).
    interval_ns: u64,
    /// Units that may be spent at once from a rested budget.
    burst: u64,
}

impl Rate {
    /// `count` units per `period`, all of which may be spent at once.
    /// `count = 0` is no budget at all: nothing is ever allowed.
    pub fn per(count: u64, period: Duration) -> Rate {
        if count == 0 {
            return Rate {
                interval_ns: u64::MAX,
                burst: 0,
            };
        }
        let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        Rate {
            interval_ns: (period_ns / count).max(1),
            burst: count,
        }
    }

    /// `per_sec` units per second sustained, up to `burst` at once.
    pub fn per_sec_with_burst(per_sec: u64, burst: u64) -> Rate {
        if per_sec == 0 || burst == 0 {
            return Rate::per(0, Duration::from_secs(1));
        }
        Rate {
            interval_ns: (1_000_000_000 / per_sec).max(1),
            burst,
        }
    }

    /// The most units one spend can ever take.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// How far ahead of now a budget may run: `burst` units.
    fn tolerance_ns(&self) -> u64 {
        self.interval_ns.saturating_mul(self.burst)
    }
}

/// Nanoseconds since the process-wide epoch.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One budget's state: when its next unit is due.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// The theoretical arrival time of the next unit, ns since the epoch.
    tat_ns: u64,
}

impl Budget {
    /// Spends `units` at `now`: `Ok` and counted when they fit, else
    /// `Err(wait)` (nothing counted): how long until they would. More than
    /// `burst` units never fit.
    pub fn spend(&mut self, rate: &Rate, units: u64, now: u64) -> Result<(), Duration> {
        if units > rate.burst {
            return Err(Duration::MAX);
        }
        let next = self
            .tat_ns
            .max(now)
            .saturating_add(rate.interval_ns.saturating_mul(units));
        let allowed_at = next.saturating_sub(rate.tolerance_ns());
        if allowed_at > now {
            return Err(Duration::from_nanos(allowed_at - now));
        }
        self.tat_ns = next;
        Ok(())
    }

    /// Spends `units` at `now` whatever the budget holds, and returns how
    /// long the caller must pause to be back within it (zero: it was). For
    /// pacing: a connection that pauses reading for that long never runs
    /// more than `burst` ahead.
    pub fn spend_paced(&mut self, rate: &Rate, units: u64, now: u64) -> Duration {
        let units = units.min(rate.burst);
        let next = self
            .tat_ns
            .max(now)
            .saturating_add(rate.interval_ns.saturating_mul(units));
        self.tat_ns = next;
        Duration::from_nanos(next.saturating_sub(rate.tolerance_ns()).saturating_sub(now))
    }

    /// Whether the budget is rested (a fresh one would behave the same).
    pub fn is_rested(&self, now: u64) -> bool {
        self.tat_ns <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let rate = Rate::per(10, Duration::from_secs(10));
        let mut b = Budget::default();
        let t0 = 100 * SEC;
        for _ in 0..10 {
            assert_eq!(b.spend(&rate, 1, t0), Ok(()));
        }
        assert_eq!(b.spend(&rate, 1, t0), Err(Duration::from_secs(1)));
        assert_eq!(
            b.spend(&rate, 1, t0 + SEC / 2),
            Err(Duration::from_millis(500))
        );
        assert_eq!(b.spend(&rate, 1, t0 + SEC), Ok(()));
        assert!(b.spend(&rate, 1, t0 + SEC).is_err());
        // Rested after ten seconds.
        assert!(b.is_rested(t0 + 11 * SEC));
        for _ in 0..10 {
            assert_eq!(b.spend(&rate, 1, t0 + 12 * SEC), Ok(()));
        }
    }

    #[test]
    fn more_than_the_burst_never_fits_and_zero_allows_nothing() {
        let rate = Rate::per_sec_with_burst(100, 10);
        assert_eq!(
            Budget::default().spend(&rate, 11, 5 * SEC),
            Err(Duration::MAX)
        );
        let none = Rate::per(0, Duration::from_secs(60));
        assert!(Budget::default().spend(&none, 1, 5 * SEC).is_err());
    }

    #[test]
    fn pacing_keeps_a_stream_at_the_rate() {
        // 1000 bytes/s, 500 bytes of burst: 3000 bytes in 100-byte frames.
        let rate = Rate::per_sec_with_burst(1000, 500);
        let mut b = Budget::default();
        let mut now = 10 * SEC;
        let start = now;
        for _ in 0..30 {
            let pause = b.spend_paced(&rate, 100, now);
            now += u64::try_from(pause.as_nanos()).unwrap();
        }
        // The first 500 bytes are free; the other 2500 take 2.5 s.
        assert_eq!(now - start, 2_500_000_000);
    }
}
