//! Starting the real binaries for a test, and the `Env` the tests are written against; one
//! concept per file: [`topology`], [`opts`], [`process`], [`redis_backend`], [`env`].
//!
//! Every test starts its own processes on ephemeral ports, so tests run in parallel without
//! sharing state, and every process is killed when the `Env` is dropped, so a failing test
//! never leaks one. Tests address nodes by index (`env.ws_url(node)`); what stands behind an
//! index depends on the topology, chosen with the environment variable `ARTHAS_TEST_TOPOLOGY`:
//!
//! - `single` (the default): one all-in-one `arthas` process (memory engine); every index maps
//!   to it.
//! - `redis`: a fresh `redis-server`, one `gateway --store redis` and three `relay` processes;
//!   node index i maps to relay `i % 3`, so members 0, 1, 2 of a room sit on different relays.
//! - `redis-cluster`: the same over a fresh 3-master Redis Cluster (sharded pub/sub).
//!
//! In the cluster topologies `http_url` points at the gateway (directory, room API, web client,
//! `/ping`); relays serve only `/ping` and `/ws` (and `/healthz`, `/readyz`, `/metrics` on their
//! admin port). Each `Opts` flag goes to every binary whose `--help` lists it (relay limits to
//! the relays, gateway limits to the gateway, `--allowed-origins` to both); environment
//! variables go to every process. The gateway and the relays start in parallel and are awaited
//! by their stdout lines (`listening on http://...`, `internal on ...`, `admin on ...`).
//!
//! With `ARTHAS_TEST_TLS=1` (see `tls`) every listener serves TLS with the test CA's
//! certificate: URLs are `wss://` and `https://`, and relays call the gateway's internal API
//! over mutual TLS.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use store::testing::{RedisCluster, RedisSentinel, RedisServer};
use tokio::sync::mpsc;

mod env;
mod opts;
mod process;
mod redis_backend;
mod topology;

use env::*;
use opts::*;
use process::*;
use redis_backend::*;
use topology::*;

pub use env::Env;
pub use opts::{flags_of, Opts};
pub use process::{Server, Starting};
pub use redis_backend::Redis;
pub use topology::Topology;

/// How long a process may take to print its address lines.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The environment variable that picks the topology.
pub const TOPOLOGY_VAR: &str = "ARTHAS_TEST_TOPOLOGY";
/// Relays in a cluster env.
pub const CLUSTER_RELAYS: usize = 3;

/// The all-in-one binary.
pub const ARTHAS_BIN: &str = env!("CARGO_BIN_EXE_arthas");
/// The relay binary.
pub const RELAY_BIN: &str = env!("CARGO_BIN_EXE_relay");
/// The gateway binary.
pub const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_gateway");
