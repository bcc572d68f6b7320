//! Repeated warnings, logged at most once per interval with a count of the
//! ones left out.
//!
//! Some failures repeat at message rate while a dependency is down (every
//! failed publish, every refused gateway call): one log line each would be a
//! flood at production rates and bury the first, useful line. Each call site
//! keeps a [`WarnLimit`] (a `static`); [`WarnLimit::check`] says whether to
//! log now and how many were skipped since the last line, which the line
//! carries as `suppressed`. It lives here because every node crate depends
//! on `store`.

use std::sync::atomic::{AtomicU64, Ordering};

/// How often a repeated warning is logged at most.
pub const WARN_INTERVAL_MS: u64 = 10_000;

/// One call site's rate limit.
#[derive(Debug)]
pub struct WarnLimit {
    /// Unix milliseconds before which the next warning is skipped.
    next_at_ms: AtomicU64,
    /// Warnings skipped since the last one logged.
    suppressed: AtomicU64,
    /// The interval, milliseconds.
    every_ms: u64,
}

impl WarnLimit {
    /// A limit of one warning per [`WARN_INTERVAL_MS`].
    pub const fn new() -> WarnLimit {
        WarnLimit::every(WARN_INTERVAL_MS)
    }

    /// A limit of one warning per `every_ms` milliseconds.
    pub const fn every(every_ms: u64) -> WarnLimit {
        WarnLimit {
            next_at_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            every_ms,
        }
    }

    /// `Some(skipped)` when the caller should log now (`skipped`: how many
    /// were left out since the previous line), `None` to stay quiet.
    pub fn check(&self) -> Option<u64> {
        self.check_at(crate::unix_millis().max(0) as u64)
    }

    fn check_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_at_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_at_ms
                .compare_exchange(
                    next,
                    now_ms + self.every_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for WarnLimit {
    fn default() -> Self {
        WarnLimit::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_carries_the_count_of_the_skipped_ones() {
        let limit = WarnLimit::every(1_000);
        assert_eq!(limit.check_at(5_000), Some(0));
        assert_eq!(limit.check_at(5_001), None);
        assert_eq!(limit.check_at(5_999), None);
        assert_eq!(limit.check_at(6_000), Some(2));
        assert_eq!(limit.check_at(9_000), Some(0));
    }

    #[test]
    fn concurrent_callers_log_once_and_count_the_rest() {
        let limit = std::sync::Arc::new(WarnLimit::every(60_000));
        let logged: usize = (0..8)
            .map(|_| {
                let limit = limit.clone();
                std::thread::spawn(move || {
                    (0..100).filter(|_| limit.check_at(1_000).is_some()).count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(logged, 1);
        assert_eq!(limit.check_at(61_000), Some(799));
    }
}
