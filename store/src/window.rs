//! Fixed-window counters in memory: the memory engine's rate limits,
//! creation budgets and password-guess counters.
//!
//! A table holds at most `capacity` counters. When it is full, counters
//! whose window has passed go first; if that is not enough, the *lowest*
//! counts go (a sixteenth of the table at a time, so a flood of new keys
//! costs amortised constant time). An attacker who floods the table with
//! fresh keys (addresses) therefore evicts its own one-off counters, never
//! the high count that is holding one of its addresses back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One counter and its window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When the current window began (the first count in it).
    start: Instant,
    /// How long a window lasts.
    length: Duration,
    /// Counted in the current window.
    count: u64,
}

impl Window {
    /// A window starting `now`, empty.
    pub fn new(now: Instant, length: Duration) -> Window {
        Window {
            start: now,
            length,
            count: 0,
        }
    }

    /// Whether the window has passed by `now`.
    pub fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.start) >= self.length
    }

    /// The count in the window of `length` that holds `now` (a passed
    /// window starts over).
    pub fn current(&mut self, now: Instant, length: Duration) -> &mut u64 {
        self.length = length;
        if self.expired(now) {
            *self = Window::new(now, length);
        }
        &mut self.count
    }

    /// Takes one back from the current window (never below zero).
    pub fn take_back(&mut self, now: Instant) {
        if !self.expired(now) {
            self.count = self.count.saturating_sub(1);
        }
    }
}

/// Counters by key, at most `capacity` of them.
#[derive(Debug)]
pub struct CounterTable {
    windows: HashMap<String, Window>,
    capacity: usize,
}

impl CounterTable {
    /// An empty table of at most `capacity` counters (at least one).
    pub fn new(capacity: usize) -> CounterTable {
        CounterTable {
            windows: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Counters held now.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether the table holds no counter.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Makes room for one more counter (see the module doc).
    fn make_room(&mut self, now: Instant) {
        if self.windows.len() < self.capacity {
            return;
        }
        self.windows.retain(|_, w| !w.expired(now));
        if self.windows.len() < self.capacity {
            return;
        }
        let mut counts: Vec<u64> = self.windows.values().map(|w| w.count).collect();
        let lowest = counts.len() / 16;
        if counts.is_empty() {
            return;
        }
        let threshold = *counts.select_nth_unstable(lowest).1;
        let mut evict = lowest + 1;
        self.windows.retain(|_, w| {
            if evict > 0 && w.count <= threshold {
                evict -= 1;
                false
            } else {
                true
            }
        });
    }

    fn entry(&mut self, key: &str, now: Instant, length: Duration) -> &mut u64 {
        if !self.windows.contains_key(key) {
            self.make_room(now);
        }
        self.windows
            .entry(key.to_owned())
            .or_insert_with(|| Window::new(now, length))
            .current(now, length)
    }

    /// Adds `n` and returns the count in the window (`n = 0` reads it).
    pub fn hit(&mut self, key: &str, n: u64, length: Duration, now: Instant) -> u64 {
        if n == 0 {
            return self.count(key, now);
        }
        let count = self.entry(key, now, length);
        *count = count.saturating_add(n);
        *count
    }

    /// The count in the window (0 for an unknown key).
    pub fn count(&self, key: &str, now: Instant) -> u64 {
        self.windows
            .get(key)
            .filter(|w| !w.expired(now))
            .map_or(0, |w| w.count)
    }

    /// Counts one unless `limit` are counted already; whether it counted.
    pub fn take(&mut self, key: &str, limit: u64, length: Duration, now: Instant) -> bool {
        if self.count(key, now) >= limit {
            return false;
        }
        let count = self.entry(key, now, length);
        *count += 1;
        true
    }

    /// Takes one back (never below zero; a counter at zero is removed).
    pub fn give_back(&mut self, key: &str, now: Instant) {
        if let Some(w) = self.windows.get_mut(key) {
            if w.expired(now) || w.count <= 1 {
                self.windows.remove(key);
            } else {
                w.count -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn take_stops_at_the_limit_and_give_back_reopens_it() {
        let now = Instant::now();
        let mut t = CounterTable::new(8);
        assert!(t.take("k", 2, MINUTE, now));
        assert!(t.take("k", 2, MINUTE, now));
        assert!(!t.take("k", 2, MINUTE, now));
        assert_eq!(t.count("k", now), 2, "a refusal is not counted");
        t.give_back("k", now);
        assert!(t.take("k", 2, MINUTE, now));
        t.give_back("k", now);
        t.give_back("k", now);
        t.give_back("k", now);
        assert!(t.is_empty(), "never below zero, and gone at zero");
    }

    #[test]
    fn windows_start_over() {
        let now = Instant::now();
        let mut t = CounterTable::new(8);
        assert_eq!(t.hit("k", 3, MINUTE, now), 3);
        assert_eq!(t.hit("k", 0, MINUTE, now + MINUTE), 0);
        assert_eq!(t.hit("k", 1, MINUTE, now + MINUTE), 1);
    }

    #[test]
    fn a_flood_of_new_keys_evicts_low_counts_not_the_high_one() {
        let now = Instant::now();
        let mut t = CounterTable::new(64);
        for _ in 0..30 {
            t.take("locked", 30, MINUTE, now);
        }
        for i in 0..10_000 {
            t.take(&format!("fresh{i}"), 30, MINUTE, now);
            assert!(t.len() <= 64);
        }
        assert_eq!(t.count("locked", now), 30);
        assert!(!t.take("locked", 30, MINUTE, now));
    }
}
