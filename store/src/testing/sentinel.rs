//! A master, a replica and three sentinels ([`RedisSentinel`]).

use super::*;

/// How long sentinels may take to agree on a master (at start, after a
/// failover).
pub(super) const SENTINEL_DEADLINE: Duration = Duration::from_secs(30);

/// The name the harness' sentinels monitor their master under.
pub const SENTINEL_MASTER: &str = "mymaster";

/// A master, one replica (`--replicaof`) and three sentinels monitoring
/// them as [`SENTINEL_MASTER`] (quorum 2, down after 1 s, failover timeout
/// 5 s), each in its own directory; all killed on drop.
pub struct RedisSentinel {
    /// The data servers: the first started as master, the second as its
    /// replica (which one is master now: [`RedisSentinel::master_port`]).
    pub servers: Vec<RedisServer>,
    /// The three sentinels.
    pub sentinels: Vec<RedisServer>,
}

impl RedisSentinel {
    /// Starts everything and waits until every sentinel names the master and
    /// knows its replica.
    pub async fn start() -> Result<RedisSentinel> {
        RedisSentinel::start_with(None).await
    }

    /// The same, every server and sentinel on TLS only ([`ServerTls`]).
    pub async fn start_tls(tls: &ServerTls) -> Result<RedisSentinel> {
        RedisSentinel::start_with(Some(Arc::new(tls.clone()))).await
    }

    async fn start_with(tls: Option<Arc<ServerTls>>) -> Result<RedisSentinel> {
        // No 5 s wait before a full sync (the diskless default in Redis 7).
        let quick_sync = ["--repl-diskless-sync-delay", "0"].map(str::to_owned);
        let master = RedisServer::start_with(false, quick_sync.to_vec(), None, tls.clone()).await?;
        let mut replicaof = quick_sync.to_vec();
        replicaof.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            master.port().to_string(),
        ]);
        let replica = RedisServer::start_with(false, replicaof, None, tls.clone()).await?;
        let conf = format!(
            "sentinel monitor {m} 127.0.0.1 {port} 2\n\
             sentinel down-after-milliseconds {m} 1000\n\
             sentinel failover-timeout {m} 5000\n",
            m = SENTINEL_MASTER,
            port = master.port()
        );
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(
                RedisServer::start_with(false, Vec::new(), Some(conf.clone()), tls.clone()).await?,
            );
        }
        let port = master.port();
        let group = RedisSentinel {
            servers: vec![master, replica],
            sentinels,
        };
        group.wait_master(port).await?;
        // A failover needs a replica the sentinels know, in sync.
        let deadline = Instant::now() + SENTINEL_DEADLINE;
        loop {
            let mut ready = replication_up(group.servers[1].port()).await;
            for s in &group.sentinels {
                let replicas = s
                    .command(&["SENTINEL", "REPLICAS", SENTINEL_MASTER])
                    .await?;
                ready &= matches!(replicas, Value::Array(ref r) if !r.is_empty());
            }
            if ready {
                return Ok(group);
            }
            if Instant::now() > deadline {
                return Err(fail("the sentinels did not discover the replica in time"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The sentinels' URLs (`redis://127.0.0.1:port`).
    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The port of the master the first sentinel names.
    pub async fn master_port(&self) -> Result<u16> {
        master_addr(self.sentinels[0].port()).await
    }

    /// The data server on `port`.
    pub fn server(&self, port: u16) -> Option<&RedisServer> {
        self.servers.iter().find(|s| s.port() == port)
    }

    /// Waits until every sentinel names `port` and the server there says
    /// it is master.
    async fn wait_master(&self, port: u16) -> Result<()> {
        let deadline = Instant::now() + SENTINEL_DEADLINE;
        loop {
            let mut agreed = is_master(port).await;
            for s in &self.sentinels {
                agreed &= master_addr(s.port()).await.ok() == Some(port);
            }
            if agreed {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "the sentinels did not agree on master port {port} within {SENTINEL_DEADLINE:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Forces a failover (`SENTINEL FAILOVER` on one sentinel) and waits
    /// until every sentinel names the new master and it says it is master.
    /// Returns the new master's port.
    pub async fn failover(&self) -> Result<u16> {
        let (_, new) = self.master_and_replica().await?;
        self.sentinels[0]
            .command(&["SENTINEL", "FAILOVER", SENTINEL_MASTER])
            .await?;
        self.wait_master(new).await?;
        Ok(new)
    }

    /// Kills the master (SIGKILL, as a crashed host) and waits until every
    /// sentinel names the replica (they notice after 1 s, then vote) and it
    /// says it is master. Returns the new master's port; the old one stays
    /// down.
    pub async fn kill_master(&mut self) -> Result<u16> {
        let (old, new) = self.master_and_replica().await?;
        if let Some(master) = self.servers.iter_mut().find(|s| s.port() == old) {
            master.stop();
        }
        self.wait_master(new).await?;
        Ok(new)
    }

    /// The ports of the master now and of the other data server.
    async fn master_and_replica(&self) -> Result<(u16, u16)> {
        let master = self.master_port().await?;
        let replica = self
            .servers
            .iter()
            .map(RedisServer::port)
            .find(|p| *p != master)
            .ok_or_else(|| fail("no replica to fail over to"))?;
        Ok((master, replica))
    }
}

/// The master port sentinel `port` names.
pub(super) async fn master_addr(port: u16) -> Result<u16> {
    let v = command_at(
        port,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER],
    )
    .await?;
    let Value::Array(parts) = v else {
        return Err(fail(format!("sentinel {port}: no master ({v:?})")));
    };
    let port = parts
        .into_iter()
        .nth(1)
        .ok_or_else(|| fail("sentinel: no port in the master address"))?;
    text(port)?.parse().map_err(fail)
}

/// Whether the server on `port` answers ROLE with `master`.
pub(super) async fn is_master(port: u16) -> bool {
    match command_at(port, &["ROLE"]).await {
        Ok(Value::Array(parts)) => {
            matches!(parts.into_iter().next().map(text), Some(Ok(role)) if role == "master")
        }
        _ => false,
    }
}

/// Whether the replica on `port` has its link to the master up.
pub(super) async fn replication_up(port: u16) -> bool {
    match command_at(port, &["INFO", "replication"])
        .await
        .and_then(text)
    {
        Ok(info) => info.contains("master_link_status:up"),
        Err(_) => false,
    }
}
