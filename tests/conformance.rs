//! Black-box conformance suite for the Arthas wire protocol (PROTOCOL.md §1–§11, with
//! this server's decisions of §12). Every test starts the real `arthas` binary and talks to it over
//! real WebSockets and HTTP, with MessagePack encoded by `rmpv` (not by our protocol crate).
//!
//! Tests are written against `Env` and spread members over nodes 0, 1, 2. The topology comes
//! from `ARTHAS_TEST_TOPOLOGY` (tests/support/server/topology.rs):
//! - `single` (default): the all-in-one `arthas` binary, memory engine; every node is it.
//! - `redis`: per test a fresh `redis-server`, a `gateway --store redis` and three `relay`
//!   processes; node i is relay i % 3, so a room's members sit on different relays.
//! - `redis-cluster`: the same over a 3-master Redis Cluster (sharded pub/sub); the clusters
//!   are pooled and flushed between tests (a new one costs ~3 s).
//!
//! Run: `cargo test --test conformance` (single: about 25 s on 2 cores), and
//! `ARTHAS_TEST_TOPOLOGY=redis cargo test --all-features --test conformance -- --test-threads=4`
//! (about 25 s), the same with `redis-cluster` (about 30 s). A failing test prints the last
//! log lines of each of its processes; `ARTHAS_TEST_LOG_DIR=DIR` keeps the whole logs.
//! Room expiry (the close, the warning, E007, `createdAt` seconds) runs on a clock the test
//! moves (`support::clock::TestClock`, the binaries' hidden `--test-clock-offset-file`); other
//! time-based behaviour (pings, stale transfers, rate windows) runs with short configured
//! periods. Nothing sleeps to synchronise: absence is proven with barriers (`Client::sync`, or
//! another member's message that must arrive next).

#[path = "support/mod.rs"]
mod support;

mod conformance {
    mod abuse;
    mod chat;
    mod connection;
    mod envelope;
    mod expiry;
    mod files;
    mod hub;
    mod limits;
    mod logs;
    mod owner;
    mod passwords;
    mod rooms;
    mod spa;
    mod typing;
}
