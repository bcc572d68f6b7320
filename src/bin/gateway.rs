//! The cluster's gateway: the public HTTP surface (directory, room API, web
//! client) on `--listen`, and the internal API relays call on
//! `--internal-listen`, over the shared store.
//!
//! Health and Prometheus metrics are on `--admin-listen`.
//!
//! On start it prints `listening on http://ADDR`, `internal on http://ADDR`
//! and `admin on http://ADDR` on stdout in text mode (`https://` with
//! `--tls-cert`; logs go to stderr, filtered by `ARTHAS_LOG`; in JSON mode
//! stdout stays empty). SIGTERM or
//! SIGINT stops accepting, lets requests in flight finish, and exits 0.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use arthas::cli::{self, EdgeArgs, GatewayArgs, HttpArgs, ProcessArgs, RedisArgs, TlsArgs};
use arthas::process;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use edge::tls::HandshakeLog;
use gateway::http::HttpApi;
use gateway::internal::{InternalApi, InternalConfig};
use gateway::Gateway;
use store::memory::{MemoryEngine, MemoryLimits};
use store::RoomStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Where room state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// Redis (see --redis-url, --redis-mode): any number of replicas.
    Redis,
    /// One process, in memory (development and tests; one replica, no relays elsewhere).
    Memory,
}

/// Arthas gateway: rooms, passwords, tickets, directory, web client.
#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Arthas gateway: rooms, passwords, tickets, the public directory and the web client"
)]
struct Config {
    /// Public HTTP address (directory, room API, web client).
    #[arg(long, env = "ARTHAS_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Internal API address (relays only; keep it off the internet).
    #[arg(long, env = "ARTHAS_INTERNAL_LISTEN", default_value = "127.0.0.1:8082")]
    internal_listen: SocketAddr,
    /// Address for `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "ARTHAS_ADMIN_LISTEN", default_value = "127.0.0.1:9091")]
    admin_listen: SocketAddr,
    /// Shared secret relays present as `Authorization: Bearer <secret>` (may be left out when --internal-tls-client-ca authenticates relays; with both, both are required).
    #[arg(long, env = "ARTHAS_INTERNAL_SECRET", hide_env_values = true)]
    internal_secret: Option<String>,
    /// PEM CA bundle of the relays' client certificates: the internal listener then requires one on every connection (mutual TLS; needs --tls-cert).
    #[arg(long, env = "ARTHAS_INTERNAL_TLS_CLIENT_CA")]
    internal_tls_client_ca: Option<PathBuf>,
    /// Storage engine.
    #[arg(long, env = "ARTHAS_STORE", value_enum, default_value_t = StoreKind::Redis)]
    store: StoreKind,
    /// WebSocket URLs of the relays the served web client connects to, comma-separated (e.g. `ws://127.0.0.1:8090/ws`); "" = the page's own origin `/ws` (an Ingress routes it to the relays).
    #[arg(long, env = "ARTHAS_RELAY_URLS", default_value = "")]
    relay_urls: String,
    #[command(flatten)]
    edge: EdgeArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    process: ProcessArgs,
}

async fn open_store(config: &Config) -> Result<Arc<dyn RoomStore>, String> {
    Ok(match config.store {
        StoreKind::Memory => MemoryEngine::new(MemoryLimits::default()),
        StoreKind::Redis => config
            .redis
            .connect(store::RoomLinger::OFF)
            .await
            .map_err(|e| e.to_string())?,
    })
}

/// How often the directory's online count is re-read from the store.
const ONLINE_REFRESH: Duration = Duration::from_secs(2);

/// Keeps `online` at the WebSockets of all live relays (from their heartbeats).
async fn refresh_online(store: Arc<dyn RoomStore>, online: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(ONLINE_REFRESH);
    loop {
        tick.tick().await;
        match store.online().await {
            Ok(n) => online.store(n, Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "online count not refreshed"),
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let secret = config.internal_secret.clone().unwrap_or_default();
    if secret.is_empty() && config.internal_tls_client_ca.is_none() {
        return Err(
            "--internal-secret (ARTHAS_INTERNAL_SECRET) must not be empty unless --internal-tls-client-ca authenticates relays"
                .into(),
        );
    }
    if config.internal_tls_client_ca.is_some() && config.tls.tls_cert.is_none() {
        return Err("--internal-tls-client-ca needs --tls-cert and --tls-key".into());
    }
    let identity = config.tls.identity()?;
    let client_auth = config
        .internal_tls_client_ca
        .as_deref()
        .map(edge::tls::client_verifier)
        .transpose()
        .map_err(|e| format!("--internal-tls-client-ca: {e}"))?;
    let mutual_tls = client_auth.is_some();
    let public_tls = cli::acceptor(&identity, "public", HandshakeLog::Public, None)?;
    let internal_tls = cli::acceptor(&identity, "internal", HandshakeLog::Internal, client_auth)?;
    let admin_tls = cli::acceptor(&identity, "admin", HandshakeLog::Internal, None)?;
    if config.gateway.ticket_secret.is_none() {
        tracing::info!("no ticket secret configured: tickets are valid on this process only");
    }
    let store = open_store(&config).await?;
    let online = Arc::new(AtomicU64::new(0));
    tokio::spawn(refresh_online(store.clone(), online.clone()));
    let gateway = Gateway::new(store, config.gateway.config(config.process.clock())?)
        .map_err(|e| format!("gateway: {e}"))?;
    gateway
        .metrics()
        .set_build_info(process::VERSION, process::COMMIT);
    if let Some(identity) = &identity {
        gateway
            .metrics()
            .register(Box::new(identity.expiry_gauge()))
            .map_err(|e| format!("metrics: {e}"))?;
    }
    let relay_urls = gateway::web::parse_relay_urls(&config.relay_urls)?;
    let http_config = config.gateway.http_config(&config.edge, relay_urls)?;
    config.gateway.start_daily_topic(&gateway)?;
    let http = Arc::new(HttpApi::new(
        gateway.clone(),
        http_config,
        Arc::new(move || online.load(Ordering::Relaxed)),
    ));
    let admin = Arc::new(gateway::admin::admin_api(gateway.clone()));
    let internal = Arc::new(InternalApi::new(
        gateway,
        InternalConfig {
            secret,
            mutual_tls,
            max_body_bytes: config.gateway.max_body_bytes,
            body_read_timeout: config.gateway.body_read_timeout(),
        },
    ));
    let public_listener = config
        .http
        .bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let internal_listener = TcpListener::bind(config.internal_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.internal_listen))?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.admin_listen))?;
    let public_addr = public_listener.local_addr().map_err(|e| e.to_string())?;
    let internal_addr = internal_listener.local_addr().map_err(|e| e.to_string())?;
    let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = cli::scheme(&identity);
    process::announce("listening", scheme, public_addr);
    process::announce("internal", scheme, internal_addr);
    process::announce("admin", scheme, admin_addr);
    tracing::info!(%public_addr, %internal_addr, %admin_addr, store = ?config.store, "gateway started");

    let limits = config.http.limits();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let public = tokio::spawn(edge::http::serve_with(
        public_listener,
        http,
        public_tls,
        stopped(stop_rx.clone()),
        limits,
    ));
    let internal = tokio::spawn(edge::http::serve_with(
        internal_listener,
        internal,
        internal_tls,
        stopped(stop_rx.clone()),
        limits,
    ));
    let admin = tokio::spawn(edge::http::serve_with(
        admin_listener,
        admin,
        admin_tls,
        stopped(stop_rx),
        limits,
    ));
    process::termination().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::join!(public, internal, admin);
    tracing::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let command = Config::command();
    let matches = command.clone().get_matches();
    let config = Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let summary = process::config_summary(&command, &matches);
    let process_args = config.process.clone();
    process::run("gateway", &process_args, &summary, run(config))
}
