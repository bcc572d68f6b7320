//! A cluster relay: WebSockets on `--listen`, Redis for room state and the
//! bus, the gateway's internal API for room creation and password checks,
//! health and metrics on `--admin-listen`.
//!
//! On SIGTERM the node drains: readiness turns false and it stops accepting
//! at once, and it closes its sockets with 1001 spread over
//! `--drain-window-ms` so clients reconnect elsewhere without a thundering
//! herd; it exits within `--shutdown-grace-ms`. (Kubernetes: a preStop
//! sleep gives endpoints time to drop the pod first; see the chart.)

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arthas::cli::{EdgeArgs, HttpArgs, ProcessArgs, RedisArgs, RelayArgs};
use arthas::process;
use clap::{CommandFactory, FromArgMatches, Parser};
use gateway::remote::{RemoteConfig, RemoteGateway};
use relay::server;

/// Arthas relay: a stateless WebSocket node of the cluster.
#[derive(Debug, Parser)]
#[command(
    name = "relay",
    version,
    about = "Arthas relay: a stateless WebSocket node of the cluster (Redis bus, remote gateway)"
)]
struct Config {
    /// Address for WebSockets (`/ws`), `/ping` and the web client.
    #[arg(long, env = "ARTHAS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Address for `/healthz`, `/readyz` and `/metrics`.
    #[arg(long, env = "ARTHAS_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    admin_listen: String,
    /// This relay's id in presence records (default: hostname plus a random suffix, unique per start).
    #[arg(long, env = "ARTHAS_NODE_ID")]
    node_id: Option<String>,
    /// The gateway's internal API base URL.
    #[arg(
        long,
        env = "ARTHAS_GATEWAY_URL",
        default_value = "http://127.0.0.1:8082"
    )]
    gateway_url: String,
    /// Most calls to the gateway in flight at once (creations, password checks); more wait their turn.
    #[arg(long, env = "ARTHAS_GATEWAY_MAX_IN_FLIGHT", default_value_t = 64)]
    gateway_max_in_flight: usize,
    /// Shared secret of the gateway's internal API.
    #[arg(long, env = "ARTHAS_INTERNAL_SECRET", hide_env_values = true)]
    internal_secret: String,
    /// Spread the 1001 closes of a drain over this window, milliseconds.
    #[arg(long, env = "ARTHAS_DRAIN_WINDOW_MS", default_value_t = 5_000)]
    drain_window_ms: u64,
    /// On SIGTERM, exit at the latest after this long, milliseconds.
    #[arg(long, env = "ARTHAS_SHUTDOWN_GRACE_MS", default_value_t = 20_000)]
    shutdown_grace_ms: u64,
    #[command(flatten)]
    edge: EdgeArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    relay: RelayArgs,
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    process: ProcessArgs,
}

fn main() -> ExitCode {
    let command = Config::command();
    let matches = command.clone().get_matches();
    let config = Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let summary = process::config_summary(&command, &matches);
    let process_args = config.process.clone();
    process::run("relay", &process_args, &summary, run(config))
}

/// Besides `/ws`, a relay serves `/ping` and the web client itself, so a
/// relay is a complete origin for browsers (page and socket on one host);
/// the directory and room API stay on the gateway.
struct WebClient;

#[async_trait::async_trait]
impl server::HttpFallback for WebClient {
    async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        _peer: std::net::SocketAddr,
    ) -> hyper::Response<server::Body> {
        match request.uri().path() {
            "/ping" => server::text(hyper::StatusCode::OK, "pong"),
            path => gateway::web::serve(request.method(), path),
        }
    }
}

/// `hostname-xxxxxx`: unique per process start, so a restarted pod's stale
/// presence is swept instead of being taken over.
fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "relay".into());
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    if config.internal_secret.is_empty() {
        return Err("--internal-secret (ARTHAS_INTERNAL_SECRET) must not be empty".into());
    }
    let node_id = config.node_id.clone().unwrap_or_else(default_node_id);
    let engine = config
        .redis
        .connect(Duration::from_millis(config.relay.room_linger_ms))
        .await?;
    let authority = RemoteGateway::new(RemoteConfig {
        max_in_flight: config.gateway_max_in_flight.max(1),
        ..RemoteConfig::new(config.gateway_url.clone(), config.internal_secret.clone())
    })
    .map_err(|e| format!("--gateway-url: {e:?}"))?;
    let builder = relay::RelayBuilder::new();
    engine.attach(builder.sink());
    let relay_config = config.relay.config(
        &config.edge,
        &config.http,
        node_id.clone(),
        Duration::from_millis(config.drain_window_ms),
    );
    let relay = builder.build(
        relay_config,
        engine.clone(),
        engine.clone(),
        Arc::new(authority),
    );
    relay.start_background();

    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    let admin = tokio::net::TcpListener::bind(&config.admin_listen).await?;
    let addr = listener.local_addr()?;
    let admin_addr = admin.local_addr()?;
    relay
        .metrics
        .set_build_info(process::VERSION, process::COMMIT);
    process::announce("listening", addr);
    process::announce("admin", admin_addr);
    tracing::info!(%addr, %admin_addr, node = %node_id, "relay listening");

    tokio::spawn(relay::admin::serve(admin, relay.clone()));
    let accept = tokio::spawn(server::serve(listener, relay.clone(), Arc::new(WebClient)));
    process::termination().await;
    tracing::info!(node = %node_id, "draining: readiness off, closing connections with 1001");
    relay
        .shutdown(Duration::from_millis(config.shutdown_grace_ms))
        .await;
    accept.abort();
    Ok(())
}
