//! Test-only parts of the relay (the `testing` feature; never enabled in a
//! release build): fault injection ([`Faults`]), an echo application
//! ([`Echo`], served by [`start_echo`]) that lets the Autobahn TestSuite and
//! `relay/tests/autobahn.rs` drive the production frame reader, outbox and
//! connection task without the Arthas protocol, and a raw WebSocket client
//! ([`RawClient`]) that sends any bytes, well-formed or not.
//!
//! Nothing here can be switched on from the network: a test sets it on the
//! [`Relay`](crate::Relay) it built, in process.

mod echo_server;
mod raw_client;

pub use echo_server::{start_echo, NotFound};
pub use raw_client::{frame, handshake, RawClient, ServerFrame, WAIT};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::connection::Application;
use crate::outbox::OutFrame;
use crate::peer::Peer;
use crate::websocket::opcode;

/// Faults a test can inject into a relay.
#[derive(Debug, Default)]
pub struct Faults {
    /// The next client message handled by a session panics.
    panic_next_message: AtomicBool,
    /// `/ws` upgrades to [`Echo`] instead of the Arthas session.
    echo: AtomicBool,
}

impl Faults {
    /// Makes the next client message a session handles panic (in its
    /// connection's task).
    pub fn panic_on_next_message(&self) {
        self.panic_next_message.store(true, Ordering::Release);
    }

    /// Panics if a panic was asked for (once).
    pub fn maybe_panic(&self) {
        if self.panic_next_message.swap(false, Ordering::AcqRel) {
            panic!("fault injected by a test: a connection task panics");
        }
    }

    /// Makes `/ws` an echo endpoint.
    pub fn serve_echo(&self) {
        self.echo.store(true, Ordering::Release);
    }

    /// Whether `/ws` is an echo endpoint.
    pub fn echoes(&self) -> bool {
        self.echo.load(Ordering::Acquire)
    }
}

/// Sends every message back as it came (text as text, binary as binary).
pub struct Echo {
    /// The connection's outbound path.
    peer: Arc<Peer>,
}

impl Echo {
    /// An echo on `peer`.
    pub fn new(peer: Arc<Peer>) -> Echo {
        Echo { peer }
    }
}

impl Application for Echo {
    async fn message(&mut self, text: bool, payload: Vec<u8>) {
        let opcode = if text { opcode::TEXT } else { opcode::BINARY };
        let _ = self.peer.outbox.push_frame(OutFrame {
            opcode,
            payload: Bytes::from(payload),
        });
    }

    fn app_pings(&self) -> bool {
        false
    }

    async fn disconnect(&mut self) {}
}
