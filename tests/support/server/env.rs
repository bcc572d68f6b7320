//! What a test talks to ([`Env`]): its processes for the chosen topology, node addresses,
//! and their logs when a test fails.

use super::*;

/// What a test talks to: one or more nodes. Node indexes wrap around, so a test may spread its
/// members over nodes 0, 1, 2 whatever the number of processes.
///
/// Fields drop in order: relays, then the gateway, then Redis.
pub struct Env {
    /// The topology this env was built for.
    pub(super) topology: Topology,
    /// The WebSocket nodes: the relays, or the one all-in-one process.
    pub(super) nodes: Vec<Server>,
    /// The gateway (cluster topologies).
    pub(super) gateway: Option<Server>,
    /// Further gateway replicas (`Opts::gateways`).
    pub(super) more_gateways: Vec<Server>,
    /// Redis (cluster topologies).
    pub(super) redis: Option<Redis>,
    /// The internal secret shared by the gateway and the relays.
    pub(super) secret: String,
    /// The gateway's internal API address (cluster topologies).
    pub(super) gateway_internal: Option<String>,
    /// The Redis Cluster came from the pool and goes back to it on drop, unless the test
    /// touched Redis itself (`redis()`, `redis_mut()`) or failed.
    pub(super) pooled: bool,
    /// Set when the test touched Redis directly.
    pub(super) tainted: std::cell::Cell<bool>,
    /// Every listener serves TLS (`ARTHAS_TEST_TLS`).
    pub(super) tls: bool,
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
        Env::start_tls_in(topology, opts, super::super::tls::from_env()).await
    }

    /// An env of the given topology, over TLS or not, whatever the environment says.
    pub async fn start_tls_in(topology: Topology, opts: Opts, tls: bool) -> Env {
        let opts = if tls {
            let certs = super::super::tls::certificates();
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

    pub(super) async fn start_plain_in(topology: Topology, opts: Opts) -> Env {
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
            Redis::Standalone(_) | Redis::Sentinel(_) => Topology::Redis,
            Redis::Cluster(_) => Topology::RedisCluster,
        };
        Env::cluster_on(topology, redis, opts, false).await
    }

    /// A gateway and three relays over `redis`, started in parallel.
    pub(super) async fn cluster_on(
        topology: Topology,
        redis: Redis,
        opts: Opts,
        pooled: bool,
    ) -> Env {
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

    pub(super) fn spawn_gateway(
        redis: &Redis,
        opts: &Opts,
        secret: &str,
        internal: &str,
    ) -> Starting {
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

    pub(super) fn spawn_relay(
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
    pub(super) fn http_scheme(&self) -> &'static str {
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
pub(super) const LOG_TAIL_LINES: usize = 40;

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
