//! Starting the real binaries for a test, and the `Env` the tests are written against.
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

use store::testing::{RedisCluster, RedisServer};
use tokio::sync::mpsc;

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

/// What a test's `Env` is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One all-in-one process, memory engine.
    Single,
    /// Standalone Redis, a gateway, three relays.
    Redis,
    /// A 3-master Redis Cluster, a gateway, three relays.
    RedisCluster,
}

impl Topology {
    /// The topology named by `ARTHAS_TEST_TOPOLOGY` (`single`, `redis`, `redis-cluster`;
    /// unset or empty: `single`).
    pub fn from_env() -> Topology {
        match std::env::var(TOPOLOGY_VAR).as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("single") => Topology::Single,
            Ok("redis") => Topology::Redis,
            Ok("redis-cluster") => Topology::RedisCluster,
            Ok(other) => {
                panic!("{TOPOLOGY_VAR}={other:?}: expected single, redis or redis-cluster")
            }
        }
    }

    /// True for the topologies with several relays.
    pub fn is_cluster(self) -> bool {
        self != Topology::Single
    }

    /// The name used in `ARTHAS_TEST_TOPOLOGY`.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Redis => "redis",
            Topology::RedisCluster => "redis-cluster",
        }
    }
}

/// Flags and environment variables for a test's processes.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// `--flag` with its value, or a bare switch.
    flags: Vec<(String, Option<String>)>,
    /// Extra environment variables (every process gets them).
    envs: Vec<(String, String)>,
    /// Gateways in a cluster env (0 means 1); relay i calls gateway i % n.
    gateways: usize,
    /// Relay index -> the Redis URL it uses instead of the env's (a proxy in between).
    relay_redis_urls: Vec<(usize, String)>,
    /// Relay index -> (network namespace it runs in, the address it listens on there).
    relay_netns: Vec<(usize, String, String)>,
}

impl Opts {
    /// Default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `--flag value` pair.
    pub fn flag(mut self, flag: &str, value: impl ToString) -> Self {
        self.flags.push((flag.to_string(), Some(value.to_string())));
        self
    }

    /// Adds a bare `--flag` (a boolean switch).
    pub fn switch(mut self, flag: &str) -> Self {
        self.flags.push((flag.to_string(), None));
        self
    }

    /// Runs `n` gateway replicas over the same Redis in a cluster env; relay i calls gateway
    /// `i % n`, and `Env::gateway_url(g)` is gateway g's public API.
    pub fn gateways(mut self, n: usize) -> Self {
        self.gateways = n;
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Relay `index` reaches Redis at `url` (say, through a proxy the test cuts) instead of
    /// the env's own Redis URL (standalone Redis only).
    pub fn relay_redis_url(mut self, index: usize, url: &str) -> Self {
        self.relay_redis_urls.push((index, url.to_string()));
        self
    }

    /// Relay `index` runs inside network namespace `netns` (`ip netns exec`) and listens (its
    /// WebSocket and admin ports) on `ip` there. Its gateway URL stays the loopback one, which
    /// does not reach out of the namespace: give it joins, not creations or password rooms.
    pub fn relay_in_netns(mut self, index: usize, netns: &str, ip: &str) -> Self {
        self.relay_netns
            .push((index, netns.to_string(), ip.to_string()));
        self
    }

    /// Whether `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|(f, _)| f == flag)
    }

    /// The command-line arguments for a binary that accepts `accepted`.
    fn args_for(&self, accepted: &HashSet<String>) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, value) in &self.flags {
            if accepted.contains(flag) {
                out.push(flag.clone());
                out.extend(value.clone());
            }
        }
        out
    }

    /// Panics if some flag is accepted by none of `binaries` (a typo, or a flag that does not
    /// exist in this topology).
    fn check_routed(&self, binaries: &[&str]) {
        for (flag, _) in &self.flags {
            if !binaries.iter().any(|bin| flags_of(bin).contains(flag)) {
                panic!("no binary of this topology accepts {flag} ({binaries:?})");
            }
        }
    }
}

/// The long flags a binary's `--help` lists (cached per binary).
pub fn flags_of(bin: &str) -> HashSet<String> {
    static CACHE: LazyLock<Mutex<HashMap<String, HashSet<String>>>> =
        LazyLock::new(Default::default);
    if let Some(flags) = CACHE.lock().expect("help cache").get(bin) {
        return flags.clone();
    }
    let mut cmd = Command::new(bin);
    cmd.arg("--help");
    clean_env(&mut cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} --help: {e}"));
    assert!(out.status.success(), "{bin} --help failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut flags = HashSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        for token in line.split(|c: char| c.is_whitespace() || c == ',') {
            if let Some(name) = token.strip_prefix("--") {
                let name = name.split(['=', '<', '[']).next().unwrap_or_default();
                if !name.is_empty() {
                    flags.insert(format!("--{name}"));
                }
            }
        }
    }
    assert!(
        flags.contains("--listen"),
        "{bin} --help lists no --listen: {text}"
    );
    CACHE
        .lock()
        .expect("help cache")
        .insert(bin.to_string(), flags.clone());
    flags
}

/// A test never inherits the developer's ARTHAS_* settings.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("ARTHAS_") {
            cmd.env_remove(&key);
        }
    }
}

/// A string unique within the test process.
fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port nobody listens on now (the caller's process binds it soon after).
fn free_port() -> u16 {
    static HANDED_OUT: LazyLock<Mutex<HashSet<u16>>> = LazyLock::new(Default::default);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        if HANDED_OUT.lock().expect("ports").insert(port) {
            return port;
        }
    }
}

/// A process that was spawned and has not yet printed all its address lines.
pub struct Starting {
    label: String,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<JoinHandle<()>>,
    /// `(word, addr)` for every `WORD on http(s)://ADDR` line on stdout.
    lines: mpsc::UnboundedReceiver<(String, String)>,
    /// The words to wait for.
    want: Vec<&'static str>,
    /// The command line, for failure messages.
    command: String,
}

impl Starting {
    /// Spawns `bin` with `args` and `envs` (`ARTHAS_LOG=warn` unless given); `want` names the
    /// stdout lines (`listening`, `admin`, `internal`) that mean it is ready.
    pub fn spawn(
        label: &str,
        bin: &str,
        args: &[String],
        envs: &[(String, String)],
        want: &[&'static str],
    ) -> Starting {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        clean_env(&mut cmd);
        if !envs.iter().any(|(k, _)| k == "ARTHAS_LOG") {
            cmd.env("ARTHAS_LOG", "warn");
        }
        // The daily topic would be one more room in every directory a test
        // reads; tests that want it set ARTHAS_DISABLE_DAILY_TOPIC=false.
        if !envs.iter().any(|(k, _)| k == "ARTHAS_DISABLE_DAILY_TOPIC") {
            cmd.env("ARTHAS_DISABLE_DAILY_TOPIC", "true");
        }
        for (key, value) in envs {
            cmd.env(key, value);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match err_pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .expect("stderr lock")
                        .extend_from_slice(&buf[..n]),
                }
            }
        });

        // stdout: every `WORD on http(s)://ADDR` line is sent back, the rest is drained.
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                let line = line.trim();
                if let Some((word, addr)) = line
                    .split_once(" on http://")
                    .or_else(|| line.split_once(" on https://"))
                {
                    let _ = tx.send((word.to_string(), addr.trim_end_matches('/').to_string()));
                }
            }
        });
        Starting {
            label: label.to_string(),
            child,
            stderr,
            stderr_thread: Some(stderr_thread),
            lines,
            want: want.to_vec(),
            command: format!("{bin} {}", args.join(" ")),
        }
    }

    /// Waits for every wanted address line; `Err` carries what went wrong (the process is
    /// killed then).
    pub async fn ready(mut self) -> Result<Server, String> {
        let mut addrs = HashMap::new();
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        let mut failure = None;
        while !self.want.iter().all(|w| addrs.contains_key(*w)) {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some((word, addr))) => {
                    addrs.insert(word, addr);
                }
                Ok(None) => {
                    failure = Some("closed stdout (exited?)".to_string());
                    break;
                }
                Err(_) => {
                    failure = Some(format!("printed nothing within {STARTUP_TIMEOUT:?}"));
                    break;
                }
            }
        }
        let mut server = Server {
            label: self.label,
            child: self.child,
            addrs,
            stderr: self.stderr,
            stderr_thread: self.stderr_thread.take(),
        };
        match failure {
            None => Ok(server),
            Some(why) => {
                server.kill();
                Err(format!(
                    "{} ({}) {why} before printing {:?} on stdout; stderr:\n{}",
                    server.label,
                    self.command,
                    self.want,
                    server.stderr()
                ))
            }
        }
    }
}

/// One running process of ours; it is killed on drop.
pub struct Server {
    /// `arthas`, `gateway`, `relay 0`, ...
    label: String,
    /// The child process.
    child: Child,
    /// Addresses from the `WORD on http://ADDR` lines (`listening`, `admin`, `internal`).
    addrs: HashMap<String, String>,
    /// Everything the process wrote to stderr so far (its logs).
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The thread copying stderr into `stderr`; ends when the process closes stderr.
    stderr_thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts the all-in-one `arthas` binary with `opts` on an ephemeral port and waits for its
    /// `listening on http://...` line.
    pub async fn start(opts: &Opts) -> Server {
        opts.check_routed(&[ARTHAS_BIN]);
        let mut args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        args.extend(opts.args_for(&flags_of(ARTHAS_BIN)));
        Starting::spawn("arthas", ARTHAS_BIN, &args, &opts.envs, &["listening"])
            .ready()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `arthas`, `gateway`, `relay 0`, ...
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `127.0.0.1:PORT` of the main listener (the `listening on` line).
    pub fn addr(&self) -> &str {
        self.addr_of("listening")
            .expect("every server prints `listening on`")
    }

    /// The address from the `WORD on http://ADDR` line, if the process printed one.
    pub fn addr_of(&self, word: &str) -> Option<&str> {
        self.addrs.get(word).map(String::as_str)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "TERM", "KILL", "STOP", "CONT") to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits for the process to exit (at most `within`); returns its status. All of stderr
    /// has been collected when this returns.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("wait for server") {
                break exit;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not exit within {within:?}",
                self.label
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.join_stderr();
        exit
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status. All of
    /// stderr has been collected when this returns.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(SHUTDOWN_TIMEOUT).await
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_stderr();
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's stderr (logs) so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).to_string()
    }

    fn join_stderr(&mut self) {
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill();
        }
    }
}

/// The Redis under a cluster env.
pub enum Redis {
    /// One standalone `redis-server`.
    Standalone(RedisServer),
    /// Three cluster masters.
    Cluster(RedisCluster),
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
        }
    }

    /// `--redis-mode`.
    pub fn mode_arg(&self) -> &'static str {
        match self {
            Redis::Standalone(_) => "standalone",
            Redis::Cluster(_) => "cluster",
        }
    }

    /// Every server process (one, or the three masters).
    pub fn servers(&self) -> Vec<&RedisServer> {
        match self {
            Redis::Standalone(s) => vec![s],
            Redis::Cluster(c) => c.nodes.iter().collect(),
        }
    }

    /// Every key with its contents, on every server.
    pub async fn dump(&self) -> Vec<(String, Vec<u8>)> {
        match self {
            Redis::Standalone(s) => s.dump().await,
            Redis::Cluster(c) => c.dump().await,
        }
        .unwrap_or_else(|e| panic!("dump Redis: {e}"))
    }

    /// Drops every client connection (commands and pub/sub) on every server.
    pub async fn kill_all_clients(&self) -> i64 {
        match self {
            Redis::Standalone(s) => s.kill_all_clients().await,
            Redis::Cluster(c) => c.kill_all_clients().await,
        }
        .unwrap_or_else(|e| panic!("CLIENT KILL: {e}"))
    }

    /// The cluster, if this is one.
    pub fn cluster(&self) -> Option<&RedisCluster> {
        match self {
            Redis::Cluster(c) => Some(c),
            Redis::Standalone(_) => None,
        }
    }

    /// The standalone server, if this is one.
    pub fn standalone_mut(&mut self) -> Option<&mut RedisServer> {
        match self {
            Redis::Standalone(s) => Some(s),
            Redis::Cluster(_) => None,
        }
    }
}

/// What a test talks to: one or more nodes. Node indexes wrap around, so a test may spread its
/// members over nodes 0, 1, 2 whatever the number of processes.
///
/// Fields drop in order: relays, then the gateway, then Redis.
pub struct Env {
    /// The topology this env was built for.
    topology: Topology,
    /// The WebSocket nodes: the relays, or the one all-in-one process.
    nodes: Vec<Server>,
    /// The gateway (cluster topologies).
    gateway: Option<Server>,
    /// Further gateway replicas (`Opts::gateways`).
    more_gateways: Vec<Server>,
    /// Redis (cluster topologies).
    redis: Option<Redis>,
    /// The internal secret shared by the gateway and the relays.
    secret: String,
    /// The gateway's internal API address (cluster topologies).
    gateway_internal: Option<String>,
    /// The Redis Cluster came from the pool and goes back to it on drop, unless the test
    /// touched Redis itself (`redis()`, `redis_mut()`) or failed.
    pooled: bool,
    /// Set when the test touched Redis directly.
    tainted: std::cell::Cell<bool>,
    /// Every listener serves TLS (`ARTHAS_TEST_TLS`).
    tls: bool,
}

impl Env {
    /// The topology chosen by `ARTHAS_TEST_TOPOLOGY`, default settings.
    pub async fn start() -> Env {
        Env::start_with(Opts::new()).await
    }

    /// The topology chosen by `ARTHAS_TEST_TOPOLOGY`, started with `opts`.
    pub async fn start_with(opts: Opts) -> Env {
        Env::start_in(Topology::from_env(), opts).await
    }

    /// For a test that is single-node by nature: the single env, or `None` (after printing
    /// `reason`) when `ARTHAS_TEST_TOPOLOGY` asks for a cluster.
    pub async fn single_only(opts: Opts, reason: &str) -> Option<Env> {
        let topology = Topology::from_env();
        if topology.is_cluster() {
            eprintln!("skipped on the {} topology: {reason}", topology.name());
            return None;
        }
        Some(Env::start_in(Topology::Single, opts).await)
    }

    /// An env of the given topology, whatever `ARTHAS_TEST_TOPOLOGY` says (over TLS when
    /// `ARTHAS_TEST_TLS` asks for it).
    pub async fn start_in(topology: Topology, opts: Opts) -> Env {
        Env::start_tls_in(topology, opts, super::tls::from_env()).await
    }

    /// An env of the given topology, over TLS or not, whatever the environment says.
    pub async fn start_tls_in(topology: Topology, opts: Opts, tls: bool) -> Env {
        let opts = if tls {
            let certs = super::tls::certificates();
            let mut opts = opts
                .flag("--tls-cert", certs.server_cert.display())
                .flag("--tls-key", certs.server_key.display());
            if topology.is_cluster() {
                opts = opts
                    .flag("--internal-tls-client-ca", certs.ca_file.display())
                    .flag("--gateway-tls-ca", certs.ca_file.display())
                    .flag("--gateway-tls-cert", certs.client_cert.display())
                    .flag("--gateway-tls-key", certs.client_key.display());
            }
            opts
        } else {
            opts
        };
        let mut env = Env::start_plain_in(topology, opts).await;
        env.tls = tls;
        env
    }

    async fn start_plain_in(topology: Topology, opts: Opts) -> Env {
        match topology {
            Topology::Single => Env {
                topology,
                nodes: vec![Server::start(&opts).await],
                gateway: None,
                more_gateways: Vec::new(),
                redis: None,
                secret: String::new(),
                gateway_internal: None,
                pooled: false,
                tainted: Default::default(),
                tls: false,
            },
            Topology::Redis => {
                let redis = Redis::start(topology).await;
                Env::cluster_on(topology, redis, opts, false).await
            }
            Topology::RedisCluster => {
                let redis = Redis::Cluster(cluster_pool::checkout().await);
                Env::cluster_on(topology, redis, opts, true).await
            }
        }
    }

    /// A gateway and three relays over a Redis the test started itself (not pooled).
    pub async fn start_on(redis: Redis, opts: Opts) -> Env {
        let topology = match redis {
            Redis::Standalone(_) => Topology::Redis,
            Redis::Cluster(_) => Topology::RedisCluster,
        };
        Env::cluster_on(topology, redis, opts, false).await
    }

    /// A gateway and three relays over `redis`, started in parallel.
    async fn cluster_on(topology: Topology, redis: Redis, opts: Opts, pooled: bool) -> Env {
        opts.check_routed(&[RELAY_BIN, GATEWAY_BIN]);
        let secret = format!("test-internal-secret-{}", unique_suffix());
        let mut last_error = String::new();
        // The gateway's internal port is picked before it starts, so the relays can be given
        // its URL and start at the same time; if someone takes the port meanwhile, retry.
        let gateway_count = opts.gateways.max(1);
        for _attempt in 0..3 {
            let internals: Vec<String> = (0..gateway_count)
                .map(|_| format!("127.0.0.1:{}", free_port()))
                .collect();
            let gateways: Vec<Starting> = internals
                .iter()
                .map(|internal| Env::spawn_gateway(&redis, &opts, &secret, internal))
                .collect();
            let relays: Vec<Starting> = (0..CLUSTER_RELAYS)
                .map(|i| Env::spawn_relay(i, &redis, &opts, &secret, &internals[i % gateway_count]))
                .collect();
            let mut started = Vec::new();
            for gateway in gateways {
                started.push(gateway.ready().await);
            }
            let mut ready = Vec::new();
            for relay in relays {
                ready.push(relay.ready().await);
            }
            match started.into_iter().collect::<Result<Vec<_>, _>>() {
                Ok(mut gateways) => {
                    let nodes = ready
                        .into_iter()
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap_or_else(|e| panic!("{e}"));
                    let first = gateways.remove(0);
                    return Env {
                        topology,
                        nodes,
                        gateway: Some(first),
                        more_gateways: gateways,
                        redis: Some(redis),
                        secret,
                        gateway_internal: Some(internals[0].clone()),
                        pooled,
                        tainted: Default::default(),
                        tls: false,
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("the gateways did not start three times; last: {last_error}");
    }

    fn spawn_gateway(redis: &Redis, opts: &Opts, secret: &str, internal: &str) -> Starting {
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--internal-listen",
            internal,
            "--admin-listen",
            "127.0.0.1:0",
            "--internal-secret",
            secret,
            "--store",
            "redis",
            "--redis-url",
            &redis.url_arg(),
            "--redis-mode",
            redis.mode_arg(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(opts.args_for(&flags_of(GATEWAY_BIN)));
        Starting::spawn(
            "gateway",
            GATEWAY_BIN,
            &args,
            &opts.envs,
            &["listening", "internal", "admin"],
        )
    }

    fn spawn_relay(
        index: usize,
        redis: &Redis,
        opts: &Opts,
        secret: &str,
        gateway_internal: &str,
    ) -> Starting {
        let node_id = format!("relay{index}-{}", unique_suffix());
        let netns = opts.relay_netns.iter().find(|(i, _, _)| *i == index);
        let listen = netns
            .map(|(_, _, ip)| format!("{ip}:0"))
            .unwrap_or_else(|| "127.0.0.1:0".to_string());
        let mut args: Vec<String> = [
            "--listen",
            &listen,
            "--admin-listen",
            &listen,
            "--node-id",
            &node_id,
            "--internal-secret",
            secret,
            "--gateway-url",
            &format!(
                "{}://{gateway_internal}",
                if opts.has("--gateway-tls-ca") {
                    "https"
                } else {
                    "http"
                }
            ),
            "--redis-url",
            &opts
                .relay_redis_urls
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, url)| url.clone())
                .unwrap_or_else(|| redis.url_arg()),
            "--redis-mode",
            redis.mode_arg(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // A drain closes every socket over this window; tests that drain want it short.
        if !opts.has("--drain-window-ms") {
            args.extend(["--drain-window-ms".to_string(), "300".to_string()]);
        }
        args.extend(opts.args_for(&flags_of(RELAY_BIN)));
        let (bin, args) = match netns {
            Some((_, ns, _)) => {
                let mut wrapped: Vec<String> = ["netns", "exec", ns, RELAY_BIN]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                wrapped.extend(args);
                ("ip", wrapped)
            }
            None => (RELAY_BIN, args),
        };
        Starting::spawn(
            &format!("relay {index}"),
            bin,
            &args,
            &opts.envs,
            &["listening", "admin"],
        )
    }

    /// Spawns one more gateway over this env's Redis (cluster topologies), with `opts`
    /// (say `.env("ARTHAS_DISABLE_DAILY_TOPIC", "false")`); the relays keep using the env's
    /// own gateway. Spawn several, then await `ready()` on each, to start them at once.
    pub fn spawn_gateway_with(&self, opts: &Opts) -> Starting {
        let redis = self.redis.as_ref().expect("a cluster topology has a Redis");
        opts.check_routed(&[GATEWAY_BIN]);
        let internal = format!("127.0.0.1:{}", free_port());
        Env::spawn_gateway(redis, opts, &self.secret, &internal)
    }

    /// The topology of this env.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    /// True when nodes are separate relays over Redis.
    pub fn is_cluster(&self) -> bool {
        self.topology.is_cluster()
    }

    /// The number of distinct WebSocket processes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The process behind node index `node` (a relay, or the all-in-one process).
    pub fn server(&mut self, node: usize) -> &mut Server {
        let n = self.nodes.len();
        &mut self.nodes[node % n]
    }

    /// Whether node indexes `a` and `b` are served by the same process.
    pub fn same_process(&self, a: usize, b: usize) -> bool {
        a % self.nodes.len() == b % self.nodes.len()
    }

    /// Whether every listener serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `http` or `https`.
    fn http_scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// `ws://127.0.0.1:PORT/ws` (`wss://` over TLS) of node `node`.
    pub fn ws_url(&self, node: usize) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!(
            "{scheme}://{}/ws",
            self.nodes[node % self.nodes.len()].addr()
        )
    }

    /// The HTTP base URL (no trailing slash) for the directory, the room API, the web client
    /// and `/ping`: the all-in-one process, or the gateway's public listener in a cluster.
    pub fn http_url(&self, node: usize) -> String {
        let scheme = self.http_scheme();
        match &self.gateway {
            Some(gateway) => format!("{scheme}://{}", gateway.addr()),
            None => format!("{scheme}://{}", self.nodes[node % self.nodes.len()].addr()),
        }
    }

    /// The HTTP base URL of node `node`'s own listener (a relay serves `/ping` and `/ws`).
    pub fn node_http_url(&self, node: usize) -> String {
        format!(
            "{}://{}",
            self.http_scheme(),
            self.nodes[node % self.nodes.len()].addr()
        )
    }

    /// The admin base URL of relay `node` (`/healthz`, `/readyz`, `/metrics`), in a cluster.
    pub fn admin_url(&self, node: usize) -> Option<String> {
        let scheme = self.http_scheme();
        self.nodes[node % self.nodes.len()]
            .addr_of("admin")
            .map(|a| format!("{scheme}://{a}"))
    }

    /// The public API base URL of gateway replica `g` (cluster topologies; `Opts::gateways`).
    pub fn gateway_url(&self, g: usize) -> Option<String> {
        let all: Vec<&Server> = self
            .gateway
            .iter()
            .chain(self.more_gateways.iter())
            .collect();
        all.get(g).map(|gw| format!("http://{}", gw.addr()))
    }

    /// `http://ADDR` of the gateway's internal API (cluster topologies).
    pub fn gateway_internal_url(&self) -> Option<String> {
        self.gateway_internal
            .as_ref()
            .map(|a| format!("http://{a}"))
    }

    /// The gateway process (cluster topologies).
    pub fn gateway(&mut self) -> Option<&mut Server> {
        self.gateway.as_mut()
    }

    /// The Redis (cluster topologies). A Redis Cluster a test has touched is not reused.
    pub fn redis(&self) -> Option<&Redis> {
        self.tainted.set(true);
        self.redis.as_ref()
    }

    /// The Redis, mutably (to stop and restart it).
    pub fn redis_mut(&mut self) -> Option<&mut Redis> {
        self.tainted.set(true);
        self.redis.as_mut()
    }

    /// Every process of ours: the nodes, then the gateway.
    pub fn processes(&self) -> Vec<&Server> {
        self.nodes
            .iter()
            .chain(self.gateway.iter())
            .chain(self.more_gateways.iter())
            .collect()
    }

    /// SIGTERM to every process still running (relays first, then the gateway), waiting for
    /// each to exit; returns `(label, status)` for each. All logs are collected afterwards.
    pub async fn terminate_all(&mut self) -> Vec<(String, ExitStatus)> {
        let mut out = Vec::new();
        for server in self
            .nodes
            .iter_mut()
            .chain(self.gateway.iter_mut())
            .chain(self.more_gateways.iter_mut())
        {
            if server.is_running() {
                let status = server.terminate().await;
                out.push((server.label().to_string(), status));
            }
        }
        out
    }
}

/// Lines of each process's log shown when a test fails.
const LOG_TAIL_LINES: usize = 40;

impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: show what each process logged (ARTHAS_LOG, default warn); with
            // ARTHAS_TEST_LOG_DIR set, the whole logs go to files there.
            let dir = std::env::var_os("ARTHAS_TEST_LOG_DIR");
            for server in self
                .nodes
                .iter()
                .chain(self.gateway.iter())
                .chain(self.more_gateways.iter())
            {
                let logs = server.stderr();
                if let Some(dir) = &dir {
                    let file = std::path::Path::new(dir).join(format!(
                        "{}-{}.log",
                        server.pid(),
                        server.label().replace(' ', "-")
                    ));
                    let _ = std::fs::write(&file, &logs);
                    eprintln!("--- {} logs: {}", server.label(), file.display());
                }
                let lines: Vec<&str> = logs.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
                eprintln!(
                    "--- {} (pid {}): last {} of {} log lines\n{}",
                    server.label(),
                    server.pid(),
                    tail.len(),
                    lines.len(),
                    tail.join("\n")
                );
            }
        }
        // Every process of ours is gone (killed and reaped) before Redis is reused or stopped.
        self.nodes.clear();
        self.gateway = None;
        self.more_gateways.clear();
        if let Some(Redis::Cluster(cluster)) = self.redis.take() {
            if self.pooled && !self.tainted.get() && !std::thread::panicking() {
                cluster_pool::checkin(cluster);
            }
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
mod cluster_pool {
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

    fn text(v: redis::Value) -> String {
        match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::SimpleString(s) => s,
            redis::Value::VerbatimString { text, .. } => text,
            other => format!("{other:?}"),
        }
    }

    async fn reset(cluster: &RedisCluster) -> Result<(), String> {
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
