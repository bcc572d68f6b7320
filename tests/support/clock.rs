//! The time of the processes a test starts, moved by the test ([`TestClock`]): every binary
//! given its file (`ARTHAS_TEST_CLOCK_OFFSET_FILE`, the hidden `--test-clock-offset-file`)
//! decides by the system clock plus the offset written there (`store::OffsetFileClock`). Room
//! expiry, warnings and `createdAt` seconds then come when the test moves the clock, not after
//! a real wait.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::msg::now_ms;
use super::Opts;

/// The environment variable the binaries read the offset file's path from.
pub const OFFSET_FILE_ENV: &str = "ARTHAS_TEST_CLOCK_OFFSET_FILE";

/// A clock shared by the processes of one test. Dropping it removes the file.
pub struct TestClock {
    dir: tempfile::TempDir,
    offset_ms: AtomicI64,
}

impl TestClock {
    /// A clock standing at the system time (offset 0).
    pub fn new() -> TestClock {
        let dir = tempfile::Builder::new()
            .prefix("arthas-clock-")
            .tempdir()
            .unwrap_or_else(|e| panic!("a temporary directory for the test clock: {e}"));
        let clock = TestClock {
            dir,
            offset_ms: AtomicI64::new(0),
        };
        clock.write(0);
        clock
    }

    /// `opts` with every process deciding by this clock.
    pub fn opts(&self, opts: Opts) -> Opts {
        opts.env(OFFSET_FILE_ENV, self.path().display())
    }

    /// The offset file.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("offset-ms")
    }

    /// Moves the processes' time forward by `by`; every process sees it on its next look.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).expect("an advance of a sane length");
        let offset = self.offset_ms.fetch_add(by, Ordering::SeqCst) + by;
        self.write(offset);
    }

    /// What the processes take for now, milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }

    /// What the processes take for now, whole seconds since the Unix epoch.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the processes' time to `secs` since the Unix epoch (their clocks run on from
    /// there); forward only.
    pub fn set_secs(&self, secs: i64) {
        let ahead = secs * 1000 - self.now_ms();
        assert!(ahead >= 0, "the test clock only moves forward");
        self.advance(Duration::from_millis(ahead as u64));
    }

    /// Moves the processes' time to `secs` since the Unix epoch if it is not there yet (on a
    /// slow machine the time may already have passed it).
    pub fn reach_secs(&self, secs: i64) {
        let ahead = secs * 1000 - self.now_ms();
        if ahead > 0 {
            self.advance(Duration::from_millis(ahead as u64));
        }
    }

    /// Writes `offset` where the processes read it: another file, renamed over the old one,
    /// so no process reads a half-written number.
    fn write(&self, offset: i64) {
        let next = self.dir.path().join("offset-ms.next");
        std::fs::write(&next, offset.to_string())
            .unwrap_or_else(|e| panic!("write the test clock: {e}"));
        std::fs::rename(&next, self.path()).unwrap_or_else(|e| panic!("move the test clock: {e}"));
    }
}
