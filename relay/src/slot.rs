//! The connection limit: a slot is taken before the WebSocket upgrade is
//! answered (count first, then do the work) and given back by the slot's
//! `Drop`, so it comes back however the connection ends: normally, on a
//! panic in its task, or when the task is cancelled.
//!
//! A slot dropped before its connection [finished](ConnectionSlot::finished)
//! belonged to a task that panicked (tokio drops a panicked task's state) or
//! was cancelled (only when the runtime shuts down): it is counted as a
//! panic (`arthas_relay_panics_total`, close code 1011).

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
    /// The connection ran to its end (its task did not panic).
    finished: bool,
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
            finished: false,
        })
    }

    /// The connection ended normally: dropping the slot now is no panic.
    pub fn finished(&mut self) {
        self.finished = true;
    }
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionSlot")
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if !self.finished {
            let metrics = &self.relay.metrics;
            metrics.panics.inc();
            metrics
                .closed(crate::websocket::close_code::INTERNAL_ERROR)
                .inc();
            tracing::error!(
                "a connection task ended early (panic); its slot and membership are given back"
            );
        }
        self.relay.slots.open.fetch_sub(1, Ordering::AcqRel);
        self.relay.metrics.connections.dec();
    }
}
