//! Where store commands go: a pool of multiplexed connections to a
//! standalone Redis, or the cluster client (which keeps one multiplexed
//! connection per node and routes by slot).
//!
//! Every command is bounded by the configured command timeout, so a Redis
//! that hangs or reconnects turns into a [`StoreError`] for the caller
//! instead of a stuck session.
//!
//! The pool is deadpool's, with a manager of our own: deadpool-redis's
//! manager PINGs every connection on every checkout, which doubles the round
//! trips of a join. Ours hands a connection back as it is and discards it
//! when a command on it fails with a connection error, so the next checkout
//! makes a fresh one (also after READONLY, a master demoted by a Sentinel
//! failover).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, ScriptInvocation, Value};

use super::sentinel::MasterLocator;
use crate::room::StoreError;

/// Where the pool's connections go.
pub(crate) enum Target {
    /// One server.
    Fixed(Box<redis::Client>),
    /// Whatever master the sentinels name when a connection is opened: after
    /// a failover, new connections reach the new master.
    Sentinel(Arc<MasterLocator>),
}

/// Opens multiplexed connections to one standalone Redis (or the current
/// Sentinel master).
pub(crate) struct Connector {
    /// The server to connect to.
    target: Target,
    /// Connect and response timeouts of each connection.
    config: redis::AsyncConnectionConfig,
}

impl managed::Manager for Connector {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        let client = match &self.target {
            Target::Fixed(client) => (**client).clone(),
            Target::Sentinel(locator) => locator.master().await?,
        };
        client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    /// No PING: a broken connection shows itself on use and is dropped then.
    async fn recycle(
        &self,
        _: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        Ok(())
    }
}

type Pool = managed::Pool<Connector>;

/// The command path of a [`super::RedisEngine`].
pub(crate) enum Commands {
    Standalone(Pool),
    Cluster(super::cluster_bus::SharedCluster),
}

/// One checked-out connection.
pub(crate) enum Conn {
    Pooled(managed::Object<Connector>),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Pooled(c) => c.req_packed_command(cmd),
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
            Conn::Pooled(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Pooled(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Commands {
    /// A pool for a standalone server; connects lazily.
    pub(crate) fn standalone(
        target: Target,
        connection: redis::AsyncConnectionConfig,
        pool_size: usize,
        timeout: Duration,
    ) -> Result<Commands, StoreError> {
        let mut config = managed::PoolConfig::new(pool_size.max(1));
        config.timeouts.wait = Some(timeout);
        config.timeouts.create = Some(timeout);
        let pool = managed::Pool::builder(Connector {
            target,
            config: connection,
        })
        .config(config)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError(format!("redis pool: {e}")))?;
        Ok(Commands::Standalone(pool))
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        match self {
            Commands::Standalone(pool) => pool
                .get()
                .await
                .map(Conn::Pooled)
                .map_err(|e| StoreError(format!("redis connection: {e}"))),
            Commands::Cluster(c) => Ok(Conn::Cluster(c.get())),
        }
    }

    /// Runs `op` on a connection within `timeout`; a connection that failed
    /// with an I/O error is not returned to the pool.
    async fn run<T, F, Fut>(&self, timeout: Duration, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = (Conn, Result<T, RedisError>)>,
    {
        let work = async {
            let conn = self.conn().await?;
            let (conn, result) = op(conn).await;
            match result {
                Ok(v) => Ok(v),
                Err(e) => {
                    // READONLY: a master demoted by a failover; the next
                    // connection asks the sentinels again.
                    if e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_unrecoverable_error()
                        || e.code() == Some("READONLY")
                    {
                        if let Conn::Pooled(obj) = conn {
                            drop(managed::Object::take(obj));
                        }
                    }
                    Err(StoreError(format!("redis: {e}")))
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
            let r = cmd.query_async(&mut conn).await;
            (conn, r)
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
            let r = pipe.query_async(&mut conn).await;
            (conn, r)
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
            let r = invocation.invoke_async(&mut conn).await;
            (conn, r)
        })
        .await
    }
}
