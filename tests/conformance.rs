//! Black-box conformance suite for the Arthas wire protocol (PROTOCOL.md §1–§9, plus the
//! decisions in CONTRACT.md). Every test starts the real `arthas` binary and talks to it over
//! real WebSockets and HTTP, with MessagePack encoded by `rmpv` (not by our protocol crate).
//!
//! Tests are written against `Env` and spread members over nodes 0, 1, 2: on the single-node
//! env that is one process; a cluster env will run the same tests across relays.

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
