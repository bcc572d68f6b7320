//! Real Redis for tests (feature `test-support`): [`RedisServer`] spawns a
//! `redis-server` on a free loopback port in its own temporary directory,
//! [`RedisCluster`] three cluster masters joined by `redis-cli --cluster
//! create`, [`RedisSentinel`] a master, a replica and three sentinels; all
//! are killed on drop. [`RecordingSink`] records what a bus
//! delivers and lets a test await it.
//!
//! Nothing here sleeps to synchronise: every wait polls a condition (a PING
//! that answers, `cluster_state:ok`, a delivery count) until a deadline and
//! fails with a message saying what did not happen. The servers never touch
//! the Redis on 6379: each gets a port the OS hands out.
//!
//! `redis-server` and `redis-cli` (7.0+) must be on PATH.
//!
//! One concept per file: [`ports`] (free loopback ports), [`tls`] (TLS
//! test servers), [`server`] (one process), [`client`] (the harness's own
//! connections), [`sentinel`], [`cluster`], [`sink`] (a recording bus sink).

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bus::{BusMessage, BusSink};

mod client;
mod cluster;
mod ports;
mod sentinel;
mod server;
mod sink;
mod tls;

use client::*;
use ports::*;
use tls::*;

pub use cluster::RedisCluster;
pub use sentinel::{RedisSentinel, SENTINEL_MASTER};
pub use server::RedisServer;
pub use sink::RecordingSink;
pub use tls::ServerTls;

/// How long a server may take to answer PING after being spawned.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long a new cluster may take to reach `cluster_state:ok` everywhere.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(20);
/// Pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(10);
/// Attempts at finding a free port before giving up.
const PORT_ATTEMPTS: usize = 20;
/// Cluster bus ports are the client port + this (Redis' rule).
const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// A harness step that failed, with what was being done.
#[derive(Debug, Clone, thiserror::Error)]
#[error("redis test harness: {0}")]
pub struct HarnessError(pub String);

type Result<T> = std::result::Result<T, HarnessError>;

fn fail(what: impl std::fmt::Display) -> HarnessError {
    HarnessError(what.to_string())
}

/// Runs one test body per engine: `on_engines!([memory, standalone] => [a, b])`
/// makes `mod memory { async fn a() .. async fn b() }` and `mod standalone {
/// .. }`, each a multi-threaded `#[tokio::test]` that calls the body
/// `super::a(super::Fixture::memory().await)`. The calling test file has a
/// `Fixture` with one constructor per engine named (the store's tests have it
/// in `tests/common`), and `tokio` as a dependency.
#[macro_export]
macro_rules! on_engines {
    ([$($engine:ident),+ $(,)?] => $names:tt) => {
        $( $crate::on_engines!(@engine $engine $names); )+
    };
    (@engine $engine:ident [$($name:ident),* $(,)?]) => {
        mod $engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Fixture::$engine().await).await
                }
            )*
        }
    };
}
