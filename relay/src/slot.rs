//! The connection limit: a slot is taken before the WebSocket upgrade is
//! answered (count first, then do the work) and given back by the slot's
//! `Drop`, so it comes back however the connection ends: normally, on a
//! panic in its task, or when the task is cancelled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::Relay;

/// How many connections are open, against `max_connections`.
#[derive(Debug, Default)]
pub struct ConnectionSlots {
    /// Slots taken (upgrades answered and connections not yet ended).
    open: AtomicUsize,
}

impl ConnectionSlots {
    /// Slots taken now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One connection's place in the limit; dropping it gives the place back.
pub struct ConnectionSlot {
    /// The relay whose limit this slot counts against.
    relay: Arc<Relay>,
}

impl ConnectionSlot {
    /// Takes a slot, unless `max_connections` are open.
    pub fn try_acquire(relay: &Arc<Relay>) -> Option<ConnectionSlot> {
        let max = relay.config.max_connections;
        relay
            .slots
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        relay.metrics.connections.inc();
        Some(ConnectionSlot {
            relay: relay.clone(),
        })
    }
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionSlot")
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.relay.slots.open.fetch_sub(1, Ordering::AcqRel);
        self.relay.metrics.connections.dec();
    }
}
