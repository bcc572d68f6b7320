//! The Redis under a cluster env ([`Redis`]): a fresh `redis-server`, or a Redis Cluster from
//! the pool of reused clusters.

use super::*;

/// The Redis under a cluster env.
pub enum Redis {
    /// One standalone `redis-server`.
    Standalone(RedisServer),
    /// Three cluster masters (with one replica each when the test started it so).
    Cluster(RedisCluster),
    /// A master, a replica and three sentinels (`--redis-mode sentinel`).
    Sentinel(RedisSentinel),
}

impl Redis {
    /// A fresh Redis of the kind `topology` needs.
    pub async fn start(topology: Topology) -> Redis {
        match topology {
            Topology::Single => panic!("the single topology has no Redis"),
            Topology::Redis => Redis::Standalone(
                RedisServer::start()
                    .await
                    .unwrap_or_else(|e| panic!("start redis-server: {e}")),
            ),
            Topology::RedisCluster => Redis::Cluster(
                RedisCluster::start()
                    .await
                    .unwrap_or_else(|e| panic!("start a Redis Cluster: {e}")),
            ),
        }
    }

    /// `--redis-url`: the server's URL, or every master's, comma-separated.
    pub fn url_arg(&self) -> String {
        match self {
            Redis::Standalone(s) => s.url(),
            Redis::Cluster(c) => c.urls().join(","),
            Redis::Sentinel(g) => g.urls().join(","),
        }
    }

    /// `--redis-mode`.
    pub fn mode_arg(&self) -> &'static str {
        match self {
            Redis::Standalone(_) => "standalone",
            Redis::Cluster(_) => "cluster",
            Redis::Sentinel(_) => "sentinel",
        }
    }

    /// Every server process (one, or the three masters).
    pub fn servers(&self) -> Vec<&RedisServer> {
        match self {
            Redis::Standalone(s) => vec![s],
            Redis::Cluster(c) => c.nodes.iter().collect(),
            Redis::Sentinel(g) => g.servers.iter().collect(),
        }
    }

    /// Every server process, mutably (to stop and restart them).
    pub fn servers_mut(&mut self) -> Vec<&mut RedisServer> {
        match self {
            Redis::Standalone(s) => vec![s],
            Redis::Cluster(c) => c.nodes.iter_mut().collect(),
            Redis::Sentinel(g) => g.servers.iter_mut().collect(),
        }
    }

    /// Kills every server and starts it again on its port, empty (no persistence); returns
    /// when Redis answers (a cluster: when `cluster_state:ok` again).
    pub async fn restart(&mut self) {
        for server in self.servers_mut() {
            server
                .restart()
                .await
                .unwrap_or_else(|e| panic!("restart redis-server: {e}"));
        }
        if let Some(cluster) = self.cluster() {
            cluster
                .wait_ok()
                .await
                .unwrap_or_else(|e| panic!("the restarted cluster: {e}"));
        }
    }

    /// Every key with its contents, on every server.
    pub async fn dump(&self) -> Vec<(String, Vec<u8>)> {
        match self {
            Redis::Standalone(s) => s.dump().await,
            Redis::Cluster(c) => c.dump().await,
            Redis::Sentinel(g) => match g.master_port().await {
                Ok(port) => match g.server(port) {
                    Some(master) => master.dump().await,
                    None => panic!("no data server on the master's port {port}"),
                },
                Err(e) => Err(e),
            },
        }
        .unwrap_or_else(|e| panic!("dump Redis: {e}"))
    }

    /// Drops every client connection (commands and pub/sub) on every server.
    pub async fn kill_all_clients(&self) -> i64 {
        match self {
            Redis::Standalone(s) => s.kill_all_clients().await,
            Redis::Cluster(c) => c.kill_all_clients().await,
            Redis::Sentinel(g) => {
                let mut n = 0;
                for server in &g.servers {
                    n += server.kill_all_clients().await.unwrap_or(0);
                }
                Ok(n)
            }
        }
        .unwrap_or_else(|e| panic!("CLIENT KILL: {e}"))
    }

    /// The cluster, if this is one.
    pub fn cluster(&self) -> Option<&RedisCluster> {
        match self {
            Redis::Cluster(c) => Some(c),
            Redis::Standalone(_) | Redis::Sentinel(_) => None,
        }
    }

    /// The standalone server, if this is one.
    pub fn standalone_mut(&mut self) -> Option<&mut RedisServer> {
        match self {
            Redis::Standalone(s) => Some(s),
            Redis::Cluster(_) | Redis::Sentinel(_) => None,
        }
    }
}

/// Reused Redis Clusters for the `redis-cluster` topology.
///
/// A new cluster costs about 3 s of wall time (a master refuses to turn `cluster_state:ok`
/// within 2 s of its start, and `redis-cli --cluster create` waits in steps of a second), which
/// over 200 tests would dominate the run. So a test takes a cluster from this pool for its
/// sole use and gives it back when it ends; a test that touched Redis itself (faults, slot
/// migrations, dumps) or failed does not give it back. At checkout every client connection of
/// the previous user is waited out (so nothing it sent can still land), then every master is
/// flushed (`FLUSHALL`, `SCRIPT FLUSH`) and the cluster must be `ok` with the original three
/// masters: each test starts on an empty cluster of its own, as with a fresh one. At most
/// one cluster per concurrently running test is ever started. The clusters left in the pool
/// are killed when the test binary exits (an `atexit` handler).
pub(super) mod cluster_pool {
    use std::sync::{Mutex, Once};
    use std::time::Duration;

    use store::testing::RedisCluster;

    /// How long the previous user's connections may take to close.
    const QUIESCE: Duration = Duration::from_secs(10);

    static POOL: Mutex<Vec<RedisCluster>> = Mutex::new(Vec::new());
    static AT_EXIT: Once = Once::new();

    extern "C" {
        fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
    }

    /// Kills the pooled clusters when the test binary exits.
    extern "C" fn reap() {
        let _ = std::panic::catch_unwind(|| {
            if let Ok(mut pool) = POOL.try_lock() {
                pool.clear();
            }
        });
    }

    /// A clean cluster for one test.
    pub async fn checkout() -> RedisCluster {
        AT_EXIT.call_once(|| {
            // SAFETY: registers a plain function that never unwinds (it catches panics).
            let rc = unsafe { atexit(reap) };
            assert_eq!(rc, 0, "atexit failed");
        });
        loop {
            let pooled = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(cluster) = pooled else {
                return RedisCluster::start()
                    .await
                    .unwrap_or_else(|e| panic!("start a Redis Cluster: {e}"));
            };
            match reset(&cluster).await {
                Ok(()) => return cluster,
                Err(e) => eprintln!("a pooled Redis Cluster was dropped: {e}"),
            }
        }
    }

    /// Gives a cluster back for the next test.
    pub fn checkin(cluster: RedisCluster) {
        POOL.lock().unwrap_or_else(|e| e.into_inner()).push(cluster);
    }

    pub(super) fn text(v: redis::Value) -> String {
        match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::SimpleString(s) => s,
            redis::Value::VerbatimString { text, .. } => text,
            other => format!("{other:?}"),
        }
    }

    pub(super) async fn reset(cluster: &RedisCluster) -> Result<(), String> {
        for node in &cluster.nodes {
            let deadline = tokio::time::Instant::now() + QUIESCE;
            loop {
                // Our own INFO connection is the only client once the last user's are gone.
                let info = node
                    .command(&["INFO", "clients"])
                    .await
                    .map_err(|e| e.to_string())
                    .map(text)?;
                let clients = info
                    .lines()
                    .find_map(|l| l.strip_prefix("connected_clients:"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .ok_or_else(|| format!("no connected_clients in {info}"))?;
                if clients <= 1 {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!(
                        "{} still has {clients} clients after {QUIESCE:?}",
                        node.addr()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for node in &cluster.nodes {
            for cmd in [&["FLUSHALL"][..], &["SCRIPT", "FLUSH"][..]] {
                node.command(cmd).await.map_err(|e| e.to_string())?;
            }
        }
        cluster.wait_ok().await.map_err(|e| e.to_string())
    }
}
