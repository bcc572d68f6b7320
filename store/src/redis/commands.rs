//! Where store commands go: a few shared multiplexed connections to a
//! standalone Redis, or the cluster client (which keeps one multiplexed
//! connection per node and routes by slot).
//!
//! Every command is bounded twice: by the configured command timeout, so a
//! Redis that hangs or reconnects turns into a [`StoreError`] for the caller
//! instead of a stuck session, and by `max_in_flight`, so a storm of joins
//! or creations queues here (the wait counts against the timeout) instead
//! of growing without bound.
//!
//! Standalone connections are shared, not checked out: a multiplexed
//! connection pipelines any number of callers' commands over one socket, so
//! commands go round-robin over `pool_size` of them and each command holds
//! none exclusively. (An earlier pool lent each connection to one command
//! at a time: four commands in flight per process, and under a creation
//! storm the rest waited out the 2 s timeout while Redis sat idle.) A
//! connection is opened on first use and dropped when a command on it fails
//! with a connection error, so the next command opens a fresh one (also
//! after READONLY, a master demoted by a Sentinel failover).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, ScriptInvocation, Value};
use tokio::sync::{Mutex, Semaphore};

use super::sentinel::MasterLocator;
use crate::room::StoreError;

/// Where the standalone connections go.
pub(crate) enum Target {
    /// One server.
    Fixed(Box<redis::Client>),
    /// Whatever master the sentinels name when a connection is opened: after
    /// a failover, new connections reach the new master.
    Sentinel(Arc<MasterLocator>),
}

/// One shared connection, opened on first use; `generation` tells a failed
/// command whether the connection it used is still the one in the slot.
#[derive(Default)]
struct Slot {
    conn: Option<(u64, MultiplexedConnection)>,
    generation: u64,
}

/// A standalone server's shared connections.
pub(crate) struct Connections {
    /// The server to connect to.
    target: Target,
    /// Connect and response timeouts of each connection.
    config: redis::AsyncConnectionConfig,
    /// The connections, used round-robin.
    slots: Vec<Mutex<Slot>>,
    /// The next slot to use.
    next: AtomicUsize,
}

impl Connections {
    /// A connection of slot `index` (opening it if needed) and its generation.
    async fn get(&self, index: usize) -> Result<(u64, MultiplexedConnection), RedisError> {
        let mut slot = self.slots[index].lock().await;
        if let Some((generation, conn)) = &slot.conn {
            return Ok((*generation, conn.clone()));
        }
        let client = match &self.target {
            Target::Fixed(client) => (**client).clone(),
            Target::Sentinel(locator) => locator.master().await?,
        };
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        slot.generation += 1;
        let generation = slot.generation;
        slot.conn = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Drops slot `index`'s connection if it is still `generation`.
    async fn discard(&self, index: usize, generation: u64) {
        let mut slot = self.slots[index].lock().await;
        if slot.conn.as_ref().is_some_and(|(g, _)| *g == generation) {
            slot.conn = None;
        }
    }
}

/// How commands reach Redis.
enum Route {
    Standalone(Connections),
    Cluster(super::cluster_bus::SharedCluster),
}

/// The command path of a [`super::RedisEngine`].
pub(crate) struct Commands {
    route: Route,
    /// Commands in flight (or waiting for a connection) at most.
    in_flight: Semaphore,
}

/// The connection one command runs on.
enum Conn {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Whether a command's error means its connection is unusable.
fn connection_lost(e: &RedisError) -> bool {
    // READONLY: a master demoted by a failover; the next connection asks
    // the sentinels again.
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.code() == Some("READONLY")
}

impl Commands {
    /// `connections` shared connections to a standalone server (opened
    /// lazily), at most `max_in_flight` commands at once.
    pub(crate) fn standalone(
        target: Target,
        config: redis::AsyncConnectionConfig,
        connections: usize,
        max_in_flight: usize,
    ) -> Commands {
        let slots = (0..connections.max(1))
            .map(|_| Mutex::new(Slot::default()))
            .collect();
        Commands {
            route: Route::Standalone(Connections {
                target,
                config,
                slots,
                next: AtomicUsize::new(0),
            }),
            in_flight: Semaphore::new(max_in_flight.max(1)),
        }
    }

    /// The cluster client's connection, at most `max_in_flight` commands at
    /// once.
    pub(crate) fn cluster(
        cluster: super::cluster_bus::SharedCluster,
        max_in_flight: usize,
    ) -> Commands {
        Commands {
            route: Route::Cluster(cluster),
            in_flight: Semaphore::new(max_in_flight.max(1)),
        }
    }

    /// Runs `op` on a connection within `timeout`; a connection that failed
    /// with a connection error is dropped.
    async fn run<T, F, Fut>(&self, timeout: Duration, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let work = async {
            let _permit = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| StoreError("redis: command path closed".into()))?;
            match &self.route {
                Route::Cluster(cluster) => op(Conn::Cluster(cluster.get()))
                    .await
                    .map_err(|e| StoreError(format!("redis: {e}"))),
                Route::Standalone(connections) => {
                    let index =
                        connections.next.fetch_add(1, Ordering::Relaxed) % connections.slots.len();
                    let (generation, conn) = connections
                        .get(index)
                        .await
                        .map_err(|e| StoreError(format!("redis connection: {e}")))?;
                    match op(Conn::Standalone(conn)).await {
                        Ok(v) => Ok(v),
                        Err(e) => {
                            if connection_lost(&e) {
                                connections.discard(index, generation).await;
                            }
                            Err(StoreError(format!("redis: {e}")))
                        }
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError(format!(
                "redis: no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// One command.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        timeout: Duration,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        self.run(timeout, |mut conn| async move {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    /// One pipeline (on a cluster, every command must be in one slot).
    pub(crate) async fn pipeline<T: FromRedisValue>(
        &self,
        timeout: Duration,
        pipe: &Pipeline,
    ) -> Result<T, StoreError> {
        self.run(timeout, |mut conn| async move {
            pipe.query_async(&mut conn).await
        })
        .await
    }

    /// One Lua script (EVALSHA, loading it on NOSCRIPT).
    pub(crate) async fn script(
        &self,
        timeout: Duration,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<Value, StoreError> {
        self.run(timeout, |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }
}
