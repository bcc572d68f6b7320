//! Black-box conformance suite for the Arthas wire protocol (PROTOCOL.md §1–§9, plus the
//! decisions in CONTRACT.md). Every test starts the real `arthas` binary and talks to it over
//! real WebSockets and HTTP, with MessagePack encoded by `rmpv` (not by our protocol crate).
//!
//! Tests are written against `Env` and spread members over nodes 0, 1, 2: on the single-node
//! env that is one process; a cluster env will run the same tests across relays.
//!
//! Run: `cargo test --test conformance` (about 30 s on 2 cores with the default 2 test
//! threads; most tests wait on sockets, so `-- --test-threads=8` brings it to about 5 s).
//! Time-based behaviour (pings, expiry, stale transfers, rate windows) runs with short
//! configured periods; nothing sleeps to synchronise: absence is proven with barriers
//! (`Client::sync`, or another member's message that must arrive next).

#[path = "support/mod.rs"]
mod support;

mod conformance {
    mod chat;
    mod connection;
    mod envelope;
    mod expiry;
    mod files;
    mod hub;
    mod limits;
    mod logs;
    mod passwords;
    mod rooms;
    mod spa;
    mod typing;
}
