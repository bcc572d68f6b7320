//! What of a connection the rest of the relay may touch: its outbound queue
//! (the hub's fan-out, the session's replies) and its file-transfer state
//! (directed acks, expiry cancels).

use std::sync::Arc;
use std::time::Duration;

use crate::outbox::Outbox;
use crate::transfer::Transfers;

/// The shared half of a connection.
#[derive(Debug)]
pub struct Peer {
    pub outbox: Outbox,
    pub transfers: Transfers,
    /// The room this peer was kicked from (extension), until its session
    /// notices.
    pub kicked: crate::owner::KickedFrom,
}

impl Peer {
    /// A peer writing to `socket`, queueing at most `max_queue_bytes`; its
    /// active file transfer goes stale after `transfer_stale_after`.
    pub fn new(
        max_queue_bytes: usize,
        transfer_stale_after: Duration,
        socket: Arc<crate::transport::Transport>,
    ) -> Peer {
        Peer {
            outbox: Outbox::new(max_queue_bytes, Some(socket)),
            transfers: Transfers::new(transfer_stale_after),
            kicked: crate::owner::KickedFrom::default(),
        }
    }
}
