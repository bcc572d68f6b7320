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

use std::path::PathBuf;

use arthas::cli::{self, EdgeArgs, HttpArgs, ProcessArgs, RedisArgs, RelayArgs, TlsArgs};
use arthas::process;
use clap::{CommandFactory, FromArgMatches, Parser};
use edge::tls::{HandshakeLog, Identity};
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
    /// The gateway's internal API base URL (`https://` for TLS).
    #[arg(
        long,
        env = "ARTHAS_GATEWAY_URL",
        default_value = "http://127.0.0.1:8082"
    )]
    gateway_url: String,
    /// Most calls to the gateway in flight at once (creations, password checks); more wait their turn.
    #[arg(long, env = "ARTHAS_GATEWAY_MAX_IN_FLIGHT", default_value_t = 64)]
    gateway_max_in_flight: usize,
    /// Shared secret of the gateway's internal API (may be left out when --gateway-tls-cert authenticates this relay).
    #[arg(long, env = "ARTHAS_INTERNAL_SECRET", hide_env_values = true)]
    internal_secret: Option<String>,
    /// PEM CA bundle the gateway's certificate must chain to (https:// gateway URL; default: the system's roots).
    #[arg(long, env = "ARTHAS_GATEWAY_TLS_CA")]
    gateway_tls_ca: Option<PathBuf>,
    /// PEM client certificate chain this relay presents to the gateway (mutual TLS; reloaded like --tls-cert).
    #[arg(long, env = "ARTHAS_GATEWAY_TLS_CERT", requires = "gateway_tls_key")]
    gateway_tls_cert: Option<PathBuf>,
    /// PEM private key of --gateway-tls-cert.
    #[arg(long, env = "ARTHAS_GATEWAY_TLS_KEY", requires = "gateway_tls_cert")]
    gateway_tls_key: Option<PathBuf>,
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
    tls: TlsArgs,
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
/// Its pages connect to their own origin only.
struct WebClient(gateway::web::ContentSecurityPolicy);

#[async_trait::async_trait]
impl server::HttpFallback for WebClient {
    async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        _peer: std::net::SocketAddr,
    ) -> hyper::Response<server::Body> {
        match request.uri().path() {
            "/ping" => edge::http::plain_text(hyper::StatusCode::OK, "pong"),
            path => gateway::web::serve(request.method(), path, &self.0),
        }
    }
}

/// `hostname-xxxxxxxxxxxx` (48 random bits): unique per process start, so a
/// restarted pod's stale presence is swept instead of being taken over. Two
/// relays sharing an id would each take the other's epoch key for a lost
/// store and restore their rooms over and over (seen once with 24 bits,
/// three relays on one host: hence 48).
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
    format!("{host}-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// How this relay reaches the gateway over TLS.
struct GatewayTls {
    /// The client configuration (trusted CAs, client certificate).
    client: Arc<rustls::ClientConfig>,
    /// The client certificate, when mutual TLS is on (for its expiry gauge).
    identity: Option<Arc<Identity>>,
}

/// The TLS client settings of the gateway's internal API, when the URL is
/// `https://`; the client certificate (if any) is reloaded from disk.
fn gateway_tls(config: &Config) -> Result<Option<GatewayTls>, String> {
    let https = config.gateway_url.starts_with("https://");
    let configured = config.gateway_tls_ca.is_some() || config.gateway_tls_cert.is_some();
    if !https {
        if configured {
            return Err(
                "--gateway-tls-ca/--gateway-tls-cert need an https:// --gateway-url".into(),
            );
        }
        return Ok(None);
    }
    let identity = match (&config.gateway_tls_cert, &config.gateway_tls_key) {
        (Some(cert), Some(key)) => {
            let identity = Identity::load(edge::tls::provider(), cert, key, "client")
                .map_err(|e| format!("--gateway-tls-cert/--gateway-tls-key: {e}"))?;
            identity.spawn_reloader(Duration::from_millis(
                config.tls.tls_reload_interval_ms.max(1),
            ));
            Some(identity)
        }
        _ => None,
    };
    let client = edge::tls::client_config(config.gateway_tls_ca.as_deref(), identity.clone())
        .map_err(|e| format!("--gateway-tls-ca: {e}"))?;
    Ok(Some(GatewayTls { client, identity }))
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let secret = config.internal_secret.clone().unwrap_or_default();
    if secret.is_empty() && config.gateway_tls_cert.is_none() {
        return Err(
            "--internal-secret (ARTHAS_INTERNAL_SECRET) must not be empty unless --gateway-tls-cert authenticates this relay"
                .into(),
        );
    }
    // A bus message carries one inbound message and a small header; the
    // standalone bus's RESP3 reader refuses pushes over its bulk limit.
    let max_bus_message = store::redis::resp::MAX_BULK_LEN / 2;
    if config.relay.max_message_bytes > max_bus_message {
        return Err(format!(
            "--max-message-bytes must be at most {max_bus_message} (half the largest push the Redis bus reads)"
        )
        .into());
    }
    let node_id = config.node_id.clone().unwrap_or_else(default_node_id);
    let identity = config.tls.identity()?;
    let gateway_tls = gateway_tls(&config)?;
    let engine = config.redis.connect(config.relay.room_linger()).await?;
    let mut remote = RemoteConfig::new(config.gateway_url.clone(), secret);
    remote.tls = gateway_tls.as_ref().map(|tls| tls.client.clone());
    remote.max_in_flight = config.gateway_max_in_flight.max(1);
    let authority = RemoteGateway::new(remote).map_err(|e| format!("--gateway-url: {e}"))?;
    let builder = relay::RelayBuilder::new();
    engine.attach(builder.sink());
    let relay_config = config.relay.config(
        &config.edge,
        &config.http,
        node_id.clone(),
        Duration::from_millis(config.drain_window_ms),
        config.process.clock(),
    );
    let relay = builder.build(
        relay_config,
        engine.clone(),
        engine.clone(),
        Arc::new(authority),
    );
    relay.start_background();
    let certificates = identity
        .iter()
        .chain(gateway_tls.as_ref().and_then(|tls| tls.identity.as_ref()));
    for certificate in certificates {
        relay
            .metrics
            .registry
            .register(Box::new(certificate.expiry_gauge()))?;
    }
    let public_tls = cli::acceptor(&identity, "public", HandshakeLog::Public, None)?;
    let admin_tls = cli::acceptor(&identity, "admin", HandshakeLog::Internal, None)?;

    let listener = config.http.bind(config.listen.as_str()).await?;
    let admin = tokio::net::TcpListener::bind(&config.admin_listen).await?;
    let addr = listener.local_addr()?;
    let admin_addr = admin.local_addr()?;
    relay
        .metrics
        .set_build_info(process::VERSION, process::COMMIT);
    let scheme = cli::scheme(&identity);
    process::announce("listening", scheme, addr);
    process::announce("admin", scheme, admin_addr);
    tracing::info!(%addr, %admin_addr, node = %node_id, "relay listening");

    tokio::spawn(relay::admin::serve(admin, relay.clone(), admin_tls));
    let accept = tokio::spawn(server::serve(
        listener,
        relay.clone(),
        Arc::new(WebClient(gateway::web::ContentSecurityPolicy::same_origin())),
        public_tls,
    ));
    process::termination().await;
    tracing::info!(node = %node_id, "draining: readiness off, closing connections with 1001");
    relay
        .shutdown(Duration::from_millis(config.shutdown_grace_ms))
        .await;
    accept.abort();
    Ok(())
}
