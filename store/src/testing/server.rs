//! One `redis-server` process ([`RedisServer`]), and reading what it holds.

use super::*;

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

    pub(super) async fn start_kind(
        cluster: bool,
        tls: Option<Arc<ServerTls>>,
    ) -> Result<RedisServer> {
        RedisServer::start_with(cluster, Vec::new(), None, tls).await
    }

    pub(super) async fn start_with(
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

pub(super) async fn value_of(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> Result<Vec<u8>> {
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

pub(super) fn flatten(v: &Value, out: &mut Vec<u8>) {
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

pub(super) async fn scan_keys(conn: &mut redis::aio::MultiplexedConnection) -> Result<Vec<String>> {
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
