//! Giving back what was counted before the work it paid for.
//!
//! Limits are counted first and the expensive work (argon2, a store write)
//! runs after, so concurrent requests cannot all pass a limit. When the work
//! then does not happen (argon2 busy, the store down, the caller gone) or
//! should not count (a right password), the unit is given back. A
//! [`Refund`] does that in every case: explicitly with [`Refund::now`], or
//! from `Drop` (an early return, a panic, or the request's future dropped
//! because the client went away), unless [`Refund::keep`] says the unit was
//! spent.

use std::sync::Arc;

use store::RoomStore;

/// What to give back.
#[derive(Debug, Clone)]
enum Unit {
    /// One unit of a budget taken with [`RoomStore::take`].
    Budget(String),
    /// A guess reserved with [`RoomStore::reserve_guess`].
    Guess { room_id: String, client: String },
}

/// A counted unit that goes back to the store unless kept.
pub(crate) struct Refund {
    store: Arc<dyn RoomStore>,
    /// `None` once given back or kept.
    unit: Option<Unit>,
}

impl Refund {
    /// A unit taken from the budget `key`.
    pub(crate) fn budget(store: &Arc<dyn RoomStore>, key: String) -> Refund {
        Refund {
            store: store.clone(),
            unit: Some(Unit::Budget(key)),
        }
    }

    /// A guess reserved on `room_id` for `client`.
    pub(crate) fn guess(store: &Arc<dyn RoomStore>, room_id: &str, client: &str) -> Refund {
        Refund {
            store: store.clone(),
            unit: Some(Unit::Guess {
                room_id: room_id.to_owned(),
                client: client.to_owned(),
            }),
        }
    }

    /// The unit was spent: nothing goes back.
    pub(crate) fn keep(mut self) {
        self.unit = None;
    }

    /// Gives the unit back now (and waits for the store).
    pub(crate) async fn now(mut self) {
        if let Some(unit) = self.unit.take() {
            give_back(self.store.as_ref(), unit).await;
        }
    }
}

async fn give_back(store: &dyn RoomStore, unit: Unit) {
    let result = match &unit {
        Unit::Budget(key) => store.give_back(key).await,
        Unit::Guess { room_id, client } => store.release_guess(room_id, client).await,
    };
    if let Err(e) = result {
        // The unit stays counted until its window ends: safe, only strict.
        tracing::debug!(error = %e, "a counted unit was not given back");
    }
}

impl Drop for Refund {
    fn drop(&mut self) {
        let Some(unit) = self.unit.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let store = self.store.clone();
                runtime.spawn(async move { give_back(store.as_ref(), unit).await });
            }
            Err(_) => tracing::debug!("no runtime: a counted unit was not given back"),
        }
    }
}
