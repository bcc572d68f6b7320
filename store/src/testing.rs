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

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::bus::{BusMessage, BusSink};

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

/// Ports handed out in this process, so parallel tests never share one.
fn ports_in_use() -> MutexGuard<'static, HashSet<u16>> {
    static PORTS: LazyLock<Mutex<HashSet<u16>>> = LazyLock::new(Default::default);
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A loopback port nobody listens on (and, for a cluster node, its bus
/// port too).
fn free_port(cluster: bool) -> Result<u16> {
    for _ in 0..PORT_ATTEMPTS {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(fail)?;
        let port = listener.local_addr().map_err(fail)?.port();
        if port == 6379 || ports_in_use().contains(&port) {
            continue;
        }
        if cluster {
            let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
                continue;
            };
            if TcpListener::bind(("127.0.0.1", bus)).is_err() {
                continue;
            }
        }
        ports_in_use().insert(port);
        return Ok(port);
    }
    Err(fail("no free loopback port found"))
}

/// TLS for test servers: they listen on TLS only (`--port 0 --tls-port P`),
/// replicate, gossip (cluster bus) and talk to each other (sentinels) over
/// TLS, with these PEM files; the harness's own connections use TLS too.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server certificate chain (for 127.0.0.1).
    pub cert: std::path::PathBuf,
    /// Its key.
    pub key: std::path::PathBuf,
    /// The CA that signed every certificate here.
    pub ca: std::path::PathBuf,
    /// `tls-auth-clients yes`: every client must present a certificate
    /// from `ca`.
    pub auth_clients: bool,
    /// A client certificate from `ca` (the harness's own connections; also
    /// what a server presents when it connects to another).
    pub client_cert: std::path::PathBuf,
    /// Its key.
    pub client_key: std::path::PathBuf,
}

impl ServerTls {
    /// The server arguments.
    fn args(&self, port: u16, cluster: bool) -> Vec<String> {
        let file = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let mut args = vec![
            "--port".to_string(),
            "0".to_string(),
            "--tls-port".to_string(),
            port.to_string(),
            "--tls-cert-file".to_string(),
            file(&self.cert),
            "--tls-key-file".to_string(),
            file(&self.key),
            "--tls-client-cert-file".to_string(),
            file(&self.client_cert),
            "--tls-client-key-file".to_string(),
            file(&self.client_key),
            "--tls-ca-cert-file".to_string(),
            file(&self.ca),
            "--tls-auth-clients".to_string(),
            if self.auth_clients { "yes" } else { "no" }.to_string(),
            "--tls-replication".to_string(),
            "yes".to_string(),
        ];
        if cluster {
            args.extend(["--tls-cluster".to_string(), "yes".to_string()]);
        }
        args
    }

    /// What redis-rs takes for the harness's connections.
    fn certificates(&self) -> Result<redis::TlsCertificates> {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(fail);
        Ok(redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: read(&self.client_cert)?,
                client_key: read(&self.client_key)?,
            }),
            root_cert: Some(read(&self.ca)?),
        })
    }
}

/// The TLS of every TLS port this process's servers listen on, so the
/// helpers that only know a port connect the right way.
fn tls_ports() -> MutexGuard<'static, HashMap<u16, Arc<ServerTls>>> {
    static PORTS: LazyLock<Mutex<HashMap<u16, Arc<ServerTls>>>> = LazyLock::new(Default::default);
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// One `redis-server` process, killed on drop.
pub struct RedisServer {
    /// Its loopback port.
    port: u16,
    /// Its working directory (cluster config, log), removed on drop.
    dir: tempfile::TempDir,
    /// The process, while running.
    child: Option<Child>,
    /// Started with `cluster-enabled yes`.
    cluster: bool,
    /// More command-line arguments (`--replicaof host port`).
    extra: Vec<String>,
    /// A sentinel: this config is written to `sentinel.conf` in its
    /// directory (once; Sentinel rewrites it) and it runs with `--sentinel`.
    sentinel_conf: Option<String>,
    /// Listens on TLS only, with these files.
    tls: Option<Arc<ServerTls>>,
}

impl RedisServer {
    /// Starts a standalone server and waits until it answers PING.
    pub async fn start() -> Result<RedisServer> {
        RedisServer::start_kind(false, None).await
    }

    /// Starts a standalone server listening on TLS only ([`ServerTls`]).
    pub async fn start_tls(tls: &ServerTls) -> Result<RedisServer> {
        RedisServer::start_with(false, Vec::new(), None, Some(Arc::new(tls.clone()))).await
    }

    async fn start_kind(cluster: bool, tls: Option<Arc<ServerTls>>) -> Result<RedisServer> {
        RedisServer::start_with(cluster, Vec::new(), None, tls).await
    }

    async fn start_with(
        cluster: bool,
        extra: Vec<String>,
        sentinel_conf: Option<String>,
        tls: Option<Arc<ServerTls>>,
    ) -> Result<RedisServer> {
        let mut last = fail("not started");
        for _ in 0..3 {
            let port = free_port(cluster)?;
            let dir = tempfile::Builder::new()
                .prefix("arthas-redis-")
                .tempdir()
                .map_err(fail)?;
            let mut server = RedisServer {
                port,
                dir,
                child: None,
                cluster,
                extra: extra.clone(),
                sentinel_conf: sentinel_conf.clone(),
                tls: tls.clone(),
            };
            if let Some(tls) = &tls {
                tls_ports().insert(port, tls.clone());
            }
            match server.spawn().await {
                Ok(()) => return Ok(server),
                // Someone took the port meanwhile: try another.
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn spawn(&mut self) -> Result<()> {
        let dir = self.dir.path();
        let mut cmd = Command::new("redis-server");
        if let Some(conf) = &self.sentinel_conf {
            let path = dir.join("sentinel.conf");
            if !path.exists() {
                std::fs::write(&path, conf).map_err(fail)?;
            }
            cmd.arg(&path).arg("--sentinel");
        }
        match &self.tls {
            Some(tls) => cmd.args(tls.args(self.port, self.cluster)),
            None => cmd.arg("--port").arg(self.port.to_string()),
        };
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
                .arg("--cluster-config-file")
                .arg(dir.join("nodes.conf"));
        }
        cmd.args(&self.extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("redis-server does not start (is it on PATH?): {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(fail(format!(
                        "redis-server on port {} exited at once ({status}); log: {}",
                        self.port,
                        std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
                    )));
                }
            }
            if ping(self.port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "redis-server on port {} did not answer PING within {:?}",
                    self.port, START_DEADLINE
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:port` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL) and waits for it: the port stops
    /// answering, every connection drops.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port and directory (a stopped
    /// server, or a running one: kill and restart). Data is gone (no
    /// persistence); a cluster node keeps its identity and slots.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn().await
    }

    /// Runs one command on a fresh connection.
    pub async fn command(&self, args: &[&str]) -> Result<Value> {
        command_at(self.port, args).await
    }

    /// `CLIENT KILL TYPE pubsub`: drops every subscribed connection (with
    /// RESP3, a relay's one connection). Returns how many were killed.
    pub async fn kill_pubsub_clients(&self) -> Result<i64> {
        let v = self.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await?;
        as_int(&v)
    }

    /// Drops every client connection (normal and pub/sub; not the caller).
    pub async fn kill_all_clients(&self) -> Result<i64> {
        let normal = as_int(&self.command(&["CLIENT", "KILL", "TYPE", "normal"]).await?)?;
        let pubsub = self.kill_pubsub_clients().await?;
        Ok(normal + pubsub)
    }

    /// Every key with everything it holds, as raw bytes (strings, hash
    /// fields and values, set and sorted-set members), for secrecy checks.
    pub async fn dump(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut conn = connect(self.port).await?;
        let keys: Vec<String> = scan_keys(&mut conn).await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let bytes = value_of(&mut conn, &key).await?;
            out.push((key, bytes));
        }
        Ok(out)
    }

    /// Everything `key` holds, read by its type, as raw bytes (empty when it
    /// expired meanwhile); a type this cannot read is an error.
    pub async fn value_of(&self, key: &str) -> Result<Vec<u8>> {
        let mut conn = connect(self.port).await?;
        value_of(&mut conn, key).await
    }
}

async fn value_of(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Result<Vec<u8>> {
    let kind: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(fail)?;
    let mut cmd = match kind.as_str() {
        "string" => redis::cmd("GET"),
        "hash" => redis::cmd("HGETALL"),
        "set" => redis::cmd("SMEMBERS"),
        "zset" => redis::cmd("ZRANGE"),
        "list" => redis::cmd("LRANGE"),
        "none" => return Ok(Vec::new()), // expired since it was listed
        other => {
            return Err(fail(format!(
                "{key} has type {other}, which cannot be read here"
            )))
        }
    };
    cmd.arg(key);
    match kind.as_str() {
        "zset" => {
            cmd.arg(0).arg(-1).arg("WITHSCORES");
        }
        "list" => {
            cmd.arg(0).arg(-1);
        }
        _ => {}
    }
    let value: Value = cmd.query_async(conn).await.map_err(fail)?;
    let mut bytes = Vec::new();
    flatten(&value, &mut bytes);
    Ok(bytes)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        ports_in_use().remove(&self.port);
        tls_ports().remove(&self.port);
    }
}

fn flatten(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::BulkString(b) => out.extend_from_slice(b),
        Value::SimpleString(s) => out.extend_from_slice(s.as_bytes()),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Double(d) => out.extend_from_slice(d.to_string().as_bytes()),
        Value::Array(items) | Value::Set(items) => {
            for item in items {
                flatten(item, out);
                out.push(b'\n');
            }
        }
        Value::Map(pairs) => {
            for (k, v) in pairs {
                flatten(k, out);
                out.push(b'\n');
                flatten(v, out);
                out.push(b'\n');
            }
        }
        _ => {}
    }
}

async fn scan_keys(conn: &mut redis::aio::MultiplexedConnection) -> Result<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(fail)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

fn as_int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(fail(format!("expected an integer, got {other:?}"))),
    }
}

async fn connect(port: u16) -> Result<redis::aio::MultiplexedConnection> {
    let tls = tls_ports().get(&port).cloned();
    let client = match tls {
        None => redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(fail)?,
        Some(tls) => {
            // rustls needs a process-wide provider for redis-rs' TLS.
            let _ = rustls::crypto::ring::default_provider().install_default();
            redis::Client::build_with_tls(format!("rediss://127.0.0.1:{port}"), tls.certificates()?)
                .map_err(fail)?
        }
    };
    tokio::time::timeout(START_DEADLINE, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| fail(format!("no connection to port {port}")))?
        .map_err(fail)
}

async fn command_at(port: u16, args: &[&str]) -> Result<Value> {
    let mut conn = connect(port).await?;
    let mut cmd = redis::Cmd::new();
    for a in args {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn)
        .await
        .map_err(|e| fail(format!("{args:?} on port {port}: {e}")))
}

/// Whether a server answers PING on `port` (raw RESP, no client library;
/// over TLS through redis-rs).
async fn ping(port: u16) -> bool {
    if tls_ports().contains_key(&port) {
        let attempt = async {
            let mut conn = connect(port).await.ok()?;
            let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
            Some(pong == "PONG")
        };
        return matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(true))
        );
    }
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

fn text(v: Value) -> Result<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(fail),
        Value::SimpleString(s) => Ok(s),
        Value::VerbatimString { text, .. } => Ok(text),
        other => Err(fail(format!("expected text, got {other:?}"))),
    }
}

/// How long sentinels may take to agree on a master (at start, after a
/// failover).
const SENTINEL_DEADLINE: Duration = Duration::from_secs(30);

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
        let old = self.master_port().await?;
        let new = self
            .servers
            .iter()
            .map(RedisServer::port)
            .find(|p| *p != old)
            .ok_or_else(|| fail("no replica to fail over to"))?;
        self.sentinels[0]
            .command(&["SENTINEL", "FAILOVER", SENTINEL_MASTER])
            .await?;
        self.wait_master(new).await?;
        Ok(new)
    }
}

/// The master port sentinel `port` names.
async fn master_addr(port: u16) -> Result<u16> {
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
async fn is_master(port: u16) -> bool {
    match command_at(port, &["ROLE"]).await {
        Ok(Value::Array(parts)) => {
            matches!(parts.into_iter().next().map(text), Some(Ok(role)) if role == "master")
        }
        _ => false,
    }
}

/// Whether the replica on `port` has its link to the master up.
async fn replication_up(port: u16) -> bool {
    match command_at(port, &["INFO", "replication"])
        .await
        .and_then(text)
    {
        Ok(info) => info.contains("master_link_status:up"),
        Err(_) => false,
    }
}

/// Three cluster masters (no replicas), every slot assigned.
pub struct RedisCluster {
    /// The masters, in the order `redis-cli --cluster create` was given them.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them with `redis-cli
    /// --cluster create` and waits for `cluster_state:ok` on every node.
    pub async fn start() -> Result<RedisCluster> {
        RedisCluster::start_with(None).await
    }

    /// The same on TLS only (clients and the cluster bus; [`ServerTls`]).
    pub async fn start_tls(tls: &ServerTls) -> Result<RedisCluster> {
        RedisCluster::start_with(Some(Arc::new(tls.clone()))).await
    }

    async fn start_with(tls: Option<Arc<ServerTls>>) -> Result<RedisCluster> {
        let mut nodes = Vec::with_capacity(3);
        for _ in 0..3 {
            nodes.push(RedisServer::start_kind(true, tls.clone()).await?);
        }
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let tls_args: Vec<String> = match &tls {
            None => Vec::new(),
            Some(tls) => vec![
                "--tls".to_string(),
                "--cacert".to_string(),
                tls.ca.to_string_lossy().into_owned(),
                "--cert".to_string(),
                tls.client_cert.to_string_lossy().into_owned(),
                "--key".to_string(),
                tls.client_key.to_string_lossy().into_owned(),
            ],
        };
        let output = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .args(&tls_args)
                .arg("--cluster")
                .arg("create")
                .args(&addrs)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
        })
        .await
        .map_err(fail)?
        .map_err(|e| fail(format!("redis-cli does not start (is it on PATH?): {e}")))?;
        if !output.status.success() {
            return Err(fail(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok().await?;
        Ok(cluster)
    }

    /// Waits until every node reports `cluster_state:ok` and sees all three
    /// masters with their slots.
    pub async fn wait_ok(&self) -> Result<()> {
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        'poll: loop {
            for node in &self.nodes {
                let info: String = node
                    .command(&["CLUSTER", "INFO"])
                    .await
                    .and_then(text)
                    .unwrap_or_default();
                let ok = info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && info.contains("cluster_known_nodes:3");
                if !ok {
                    if Instant::now() > deadline {
                        return Err(fail(format!(
                            "cluster not ok on {} within {CLUSTER_DEADLINE:?}: {info}",
                            node.addr()
                        )));
                    }
                    tokio::time::sleep(POLL).await;
                    continue 'poll;
                }
            }
            return Ok(());
        }
    }

    /// The seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `CLIENT KILL TYPE pubsub` on every node; returns the total killed.
    pub async fn kill_pubsub_clients(&self) -> Result<i64> {
        let mut n = 0;
        for node in &self.nodes {
            n += node.kill_pubsub_clients().await?;
        }
        Ok(n)
    }

    /// Drops every client connection on every node.
    pub async fn kill_all_clients(&self) -> Result<i64> {
        let mut n = 0;
        for node in &self.nodes {
            n += node.kill_all_clients().await?;
        }
        Ok(n)
    }

    /// Every key of every node with its contents (see [`RedisServer::dump`]).
    pub async fn dump(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut all = Vec::new();
        for node in &self.nodes {
            all.extend(node.dump().await?);
        }
        Ok(all)
    }

    /// The hash slot of a key (or channel).
    pub async fn slot_of(&self, key: &str) -> Result<u16> {
        let v = self.nodes[0].command(&["CLUSTER", "KEYSLOT", key]).await?;
        u16::try_from(as_int(&v)?).map_err(fail)
    }

    async fn node_id(&self, index: usize) -> Result<String> {
        text(self.nodes[index].command(&["CLUSTER", "MYID"]).await?)
    }

    /// The index in [`nodes`](Self::nodes) of the master serving `slot`, as
    /// every node sees it (an error until they agree).
    pub async fn owner_of_slot(&self, slot: u16) -> Result<usize> {
        let mut ids = Vec::with_capacity(self.nodes.len());
        for i in 0..self.nodes.len() {
            ids.push(self.node_id(i).await?);
        }
        let mut owner = None;
        for node in &self.nodes {
            let nodes = text(node.command(&["CLUSTER", "NODES"]).await?)?;
            let seen = nodes.lines().find_map(|line| {
                let mut fields = line.split_whitespace();
                let id = fields.next()?;
                let owns = fields.skip(7).any(|range| {
                    let mut bounds = range.splitn(2, '-');
                    let lo = bounds.next().and_then(|s| s.parse::<u16>().ok());
                    let hi = bounds.next().map_or(lo, |s| s.parse::<u16>().ok());
                    matches!((lo, hi), (Some(lo), Some(hi)) if lo <= slot && slot <= hi)
                });
                owns.then(|| ids.iter().position(|x| x == id))?
            });
            match (owner, seen) {
                (_, None) => return Err(fail(format!("{} sees no owner of {slot}", node.addr()))),
                (None, Some(i)) => owner = Some(i),
                (Some(o), Some(i)) if o != i => {
                    return Err(fail(format!("nodes disagree on the owner of {slot}")))
                }
                _ => {}
            }
        }
        owner.ok_or_else(|| fail("no nodes"))
    }

    /// Moves the slot of `key` (a room's channel `arthas:{R}` or any of its
    /// keys) to the next master: SETSLOT IMPORTING/MIGRATING, MIGRATE of its
    /// keys, SETSLOT NODE on every master. Returns (from, to) node indexes.
    pub async fn migrate_slot_of(&self, key: &str) -> Result<(usize, usize)> {
        let slot = self.slot_of(key).await?;
        let from = self.owner_of_slot(slot).await?;
        let to = (from + 1) % self.nodes.len();
        self.migrate_slot(slot, from, to).await?;
        Ok((from, to))
    }

    /// Moves `slot` from master `from` to master `to`.
    pub async fn migrate_slot(&self, slot: u16, from: usize, to: usize) -> Result<()> {
        let slot_s = slot.to_string();
        let from_id = self.node_id(from).await?;
        let to_id = self.node_id(to).await?;
        let (src, dst) = (&self.nodes[from], &self.nodes[to]);
        dst.command(&["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &from_id])
            .await?;
        src.command(&["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &to_id])
            .await?;
        loop {
            let keys = src
                .command(&["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"])
                .await?;
            let keys: Vec<String> = match keys {
                Value::Array(items) => items.into_iter().map(text).collect::<Result<_>>()?,
                other => return Err(fail(format!("GETKEYSINSLOT: {other:?}"))),
            };
            if keys.is_empty() {
                break;
            }
            let port = dst.port().to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            src.command(&args).await?;
        }
        // The new owner first, then the old one, then the rest.
        let mut order = vec![to, from];
        order.extend((0..self.nodes.len()).filter(|i| *i != to && *i != from));
        for i in order {
            self.nodes[i]
                .command(&["CLUSTER", "SETSLOT", &slot_s, "NODE", &to_id])
                .await?;
        }
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        loop {
            if matches!(self.owner_of_slot(slot).await, Ok(o) if o == to) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(fail(format!("slot {slot} did not settle on node {to}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A [`BusSink`] that records every delivery, per room, in order.
#[derive(Default)]
pub struct RecordingSink {
    /// Room id -> messages in delivery order.
    rooms: Mutex<HashMap<String, Vec<BusMessage>>>,
    /// Bumped on every delivery, to wake waiters.
    deliveries: tokio::sync::watch::Sender<u64>,
}

impl RecordingSink {
    /// An empty recorder.
    pub fn new() -> Arc<RecordingSink> {
        Arc::new(RecordingSink::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<BusMessage>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The messages of a room so far.
    pub fn messages(&self, room_id: &str) -> Vec<BusMessage> {
        self.lock().get(room_id).cloned().unwrap_or_default()
    }

    /// How many messages a room received.
    pub fn count(&self, room_id: &str) -> usize {
        self.lock().get(room_id).map_or(0, Vec::len)
    }

    /// Messages received in all rooms.
    pub fn total(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Waits until `done` holds for the recorded messages, or fails after
    /// `timeout` saying `what` did not happen.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&HashMap<String, Vec<BusMessage>>) -> bool,
    ) -> Result<()> {
        let mut changes = self.deliveries.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if done(&self.lock()) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let seen: usize = self.lock().values().map(Vec::len).sum();
                    return Err(fail(format!(
                        "{what}: not within {timeout:?} ({seen} messages received in all)"
                    )));
                }
            }
        }
    }

    /// Waits until a room has received at least `n` messages; returns them.
    pub async fn wait_for(
        &self,
        room_id: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<BusMessage>> {
        self.wait_until(
            &format!("{n} messages in room {room_id}"),
            timeout,
            |rooms| rooms.get(room_id).map_or(0, Vec::len) >= n,
        )
        .await?;
        Ok(self.messages(room_id))
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

impl BusSink for RecordingSink {
    fn deliver(&self, room_id: &str, message: BusMessage) {
        self.lock()
            .entry(room_id.to_owned())
            .or_default()
            .push(message);
        self.deliveries.send_modify(|n| *n += 1);
    }
}
