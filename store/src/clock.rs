//! The clock seam: where "now" comes from.
//!
//! Code that decides something by the wall clock asks a [`Clock`] instead of
//! the operating system, so a test can put it at any instant (a second before
//! midnight UTC, a leap day) and move it on at will, without waiting and
//! without racing the real time. Production code is handed [`SystemClock`];
//! tests hand in a [`ManualClock`].
//!
//! The gateway (`GatewayConfig::clock`: room expiry at creation and lookup,
//! join tickets, the directory's expiry filter, the daily topic) and the
//! relay (`RelayConfig::clock`: the expiry sweep, joins, message and ping
//! timestamps) decide by the clock they are configured with. The engines
//! take "now" as an argument from their callers; [`crate::unix_secs`] and
//! [`crate::unix_millis`] remain for what only measures (log rate limits)
//! and for [`SystemClock`] itself.
//!
//! The conformance tests run the real binaries, in other processes than the
//! test, where no [`ManualClock`] reaches: for them a binary started with
//! the hidden `--test-clock-offset-file` decides by an [`OffsetFileClock`],
//! the system clock moved by an offset the test writes to a file. Without
//! that flag (always, in production) a binary runs on the [`SystemClock`].
//!
//! A clock only says what time it is. Waiting (`tokio::time::sleep`) stays on
//! the runtime's timer: code that sleeps until a wall-clock instant computes
//! the duration from its clock, so an injected clock decides *what* is due
//! and a test decides *when* to look.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A source of wall-clock time (Unix epoch, UTC). Cheap to call; shared
/// between tasks as a [`SharedClock`].
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;

    /// Whole seconds since the Unix epoch (rounded down, also before 1970).
    fn now_secs(&self) -> i64 {
        self.now_millis().div_euclid(1000)
    }
}

/// A clock shared by everything built from one configuration.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock (`SystemTime::now`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        crate::unix_millis()
    }
}

/// The system clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until it is set or advanced: for tests. Shared
/// by `Arc`, so a test keeps one handle and gives the code under test a
/// clone (`clock.clone() as SharedClock`).
#[derive(Debug)]
pub struct ManualClock {
    /// The current time, milliseconds since the Unix epoch.
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `millis` since the Unix epoch.
    pub fn at_millis(millis: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            millis: AtomicI64::new(millis),
        })
    }

    /// A clock standing at `secs` since the Unix epoch.
    pub fn at_secs(secs: i64) -> Arc<ManualClock> {
        ManualClock::at_millis(secs.saturating_mul(1000))
    }

    /// Puts the clock at `millis` since the Unix epoch (also backwards).
    pub fn set_millis(&self, millis: i64) {
        self.millis.store(millis, Ordering::SeqCst);
    }

    /// Puts the clock at `secs` since the Unix epoch (also backwards).
    pub fn set_secs(&self, secs: i64) {
        self.set_millis(secs.saturating_mul(1000));
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let _ = self
            .millis
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |m| {
                Some(m.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
}

/// The system clock plus an offset read from a file: for tests that run a
/// binary as a separate process and must move its time (room expiry)
/// without waiting for it. The file holds a whole number of milliseconds in
/// ASCII (negative moves back); a missing file is an offset of 0. It is read
/// on every call, so every process given the same file moves together as
/// soon as the test replaces it (atomically: write another file, rename it
/// over). Built only from the binaries' hidden `--test-clock-offset-file`.
#[derive(Debug)]
pub struct OffsetFileClock {
    path: PathBuf,
}

impl OffsetFileClock {
    /// A clock moved by the offset in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Arc<OffsetFileClock> {
        Arc::new(OffsetFileClock { path: path.into() })
    }

    /// The offset in the file, milliseconds: 0 while there is no file, or
    /// when it does not hold a number (a test writing it wrong then sees
    /// its time not move, and the rest keeps running).
    fn offset_millis(&self) -> i64 {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Clock for OffsetFileClock {
    fn now_millis(&self) -> i64 {
        crate::unix_millis().saturating_add(self.offset_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_the_system_time() {
        let before = crate::unix_millis();
        let now = SystemClock.now_millis();
        let after = crate::unix_millis();
        assert!(before <= now && now <= after);
        assert_eq!(SystemClock.now_secs(), crate::unix_secs());
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_secs(1_767_225_600);
        assert_eq!(clock.now_secs(), 1_767_225_600);
        assert_eq!(clock.now_millis(), 1_767_225_600_000);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now_millis(), 1_767_225_601_500);
        assert_eq!(clock.now_secs(), 1_767_225_601);
        clock.set_secs(5);
        assert_eq!(clock.now_secs(), 5);
        let shared: SharedClock = clock.clone();
        clock.advance(Duration::from_secs(1));
        assert_eq!(shared.now_secs(), 6, "every handle sees the same time");
    }

    #[test]
    fn an_offset_file_clock_moves_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("arthas-clock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("offset");
        let _ = std::fs::remove_file(&path);
        let clock = OffsetFileClock::new(&path);
        let near = |clock: &OffsetFileClock, offset: i64| {
            let before = crate::unix_millis() + offset;
            let now = clock.now_millis();
            let after = crate::unix_millis() + offset;
            before <= now && now <= after
        };
        assert!(near(&clock, 0), "no file: the system time");
        std::fs::write(&path, "3600000\n").expect("write");
        assert!(near(&clock, 3_600_000), "an hour ahead");
        std::fs::write(&path, "-1000").expect("write");
        assert!(near(&clock, -1000), "a second back");
        std::fs::write(&path, "soon").expect("write");
        assert!(near(&clock, 0), "not a number: no offset");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn seconds_round_down_before_the_epoch_too() {
        assert_eq!(ManualClock::at_millis(-1).now_secs(), -1);
        assert_eq!(ManualClock::at_millis(-1000).now_secs(), -1);
        assert_eq!(ManualClock::at_millis(999).now_secs(), 0);
    }
}
