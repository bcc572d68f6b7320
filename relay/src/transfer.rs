//! A connection's file-transfer state (PROTOCOL.md §6): at most one active
//! transfer, and the last completed one (its acks may still arrive).
//!
//! The API cannot end a transfer that is not active: ending goes through an
//! [`ActiveTransfer`], which only [`Transfers::active`] and
//! [`Transfers::active_matching`] hand out and which holds the state's lock
//! until it is ended or dropped (so nothing else starts or ends a transfer
//! in between; it is not `Send`, so it cannot be held across an `.await` of
//! a spawned task). The bus path ends a transfer by id
//! ([`Transfers::end_if_active`]), leaving a later transfer alone.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

// The runtime's clock (the system's monotonic clock, but paused and moved by
// hand in tests).
use tokio::time::Instant;

/// A connection's file transfers.
#[derive(Debug)]
pub struct Transfers {
    state: Mutex<State>,
    /// An active transfer older than this is stale and forgotten.
    stale_after: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// The one active transfer and when its Meta arrived.
    active: Option<(String, Instant)>,
    /// The id of the last completed transfer (acks may still arrive).
    last_completed: Option<String>,
}

impl State {
    /// Forgets the active transfer if it went stale.
    fn drop_stale(&mut self, stale_after: Duration) {
        if self
            .active
            .as_ref()
            .is_some_and(|(_, started)| started.elapsed() > stale_after)
        {
            self.active = None;
        }
    }
}

/// Starting a transfer while another is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a file transfer is already active")]
pub struct TransferBusy;

impl Transfers {
    /// No transfer yet; an active one goes stale after `stale_after`.
    pub fn new(stale_after: Duration) -> Transfers {
        Transfers {
            state: Mutex::new(State::default()),
            stale_after,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The active transfer, unless there is none or it went stale (then it
    /// is forgotten).
    pub fn active(&self) -> Option<ActiveTransfer<'_>> {
        let mut state = self.lock();
        state.drop_stale(self.stale_after);
        state.active.is_some().then_some(ActiveTransfer { state })
    }

    /// The active transfer if its id is `transfer_id`.
    pub fn active_matching(&self, transfer_id: &str) -> Option<ActiveTransfer<'_>> {
        self.active().filter(|t| t.id() == transfer_id)
    }

    /// Starts transfer `id`, unless one is active.
    pub fn start(&self, id: &str) -> Result<(), TransferBusy> {
        let mut state = self.lock();
        state.drop_stale(self.stale_after);
        if state.active.is_some() {
            return Err(TransferBusy);
        }
        state.active = Some((id.to_owned(), Instant::now()));
        Ok(())
    }

    /// Ends the active transfer if it is `transfer_id` (a later transfer is
    /// left alone); returns whether it ended.
    pub fn end_if_active(&self, transfer_id: &str) -> bool {
        let mut state = self.lock();
        let matches = state
            .active
            .as_ref()
            .is_some_and(|(id, _)| id == transfer_id);
        if matches {
            state.active = None;
        }
        matches
    }

    /// Whether an ack for `transfer_id` belongs to this connection: the
    /// transfer is active (not stale) or the last completed one.
    pub fn owns(&self, transfer_id: &str) -> bool {
        let state = self.lock();
        let active = state.active.as_ref().is_some_and(|(id, started)| {
            id == transfer_id && started.elapsed() <= self.stale_after
        });
        active || state.last_completed.as_deref() == Some(transfer_id)
    }
}

/// The active transfer, held: the state stays locked until this is ended or
/// dropped (dropping it leaves the transfer active).
#[derive(Debug)]
pub struct ActiveTransfer<'a> {
    /// Locked state whose `active` is `Some`.
    state: MutexGuard<'a, State>,
}

impl ActiveTransfer<'_> {
    /// The transfer's id.
    pub fn id(&self) -> &str {
        self.state.active.as_ref().map_or("", |(id, _)| id.as_str())
    }

    /// Ends the transfer as completed (remembered for late acks); returns
    /// its id.
    pub fn complete(mut self) -> String {
        let id = self.take();
        self.state.last_completed = Some(id.clone());
        id
    }

    /// Ends the transfer as cancelled; returns its id.
    pub fn cancel(mut self) -> String {
        self.take()
    }

    fn take(&mut self) -> String {
        self.state
            .active
            .take()
            .map(|(id, _)| id)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn one_transfer_at_a_time_until_it_ends() {
        let t = Transfers::new(LONG);
        assert!(t.active().is_none());
        t.start("a").unwrap();
        assert_eq!(t.start("b"), Err(TransferBusy));
        assert_eq!(t.active().unwrap().id(), "a");
        assert!(t.active_matching("b").is_none());
        assert_eq!(t.active_matching("a").unwrap().cancel(), "a");
        assert!(t.active().is_none());
        t.start("b").unwrap();
    }

    #[test]
    fn a_completed_transfer_still_owns_its_acks_a_cancelled_one_does_not() {
        let t = Transfers::new(LONG);
        t.start("a").unwrap();
        assert!(t.owns("a"));
        t.active().unwrap().complete();
        assert!(t.owns("a") && t.active().is_none());
        t.start("b").unwrap();
        t.active().unwrap().cancel();
        assert!(!t.owns("b") && t.owns("a"));
    }

    #[test]
    fn the_bus_ends_only_the_named_transfer() {
        let t = Transfers::new(LONG);
        t.start("a").unwrap();
        assert!(!t.end_if_active("old"));
        assert!(t.active().is_some());
        assert!(t.end_if_active("a"));
        assert!(t.active().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_transfer_is_forgotten() {
        let stale_after = Duration::from_secs(90);
        let t = Transfers::new(stale_after);
        t.start("a").unwrap();
        tokio::time::advance(stale_after).await;
        assert!(
            t.owns("a") && t.active().is_some(),
            "not stale at the limit"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!t.owns("a"));
        assert!(t.active().is_none());
        t.start("b").unwrap();
    }
}
