//! The all-in-one Arthas server: the gateway and one relay in one process,
//! with the in-memory engine. `cargo run --release` starts a working chat
//! on 127.0.0.1:8080.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arthas::cli::{self, EdgeArgs, GatewayArgs, HttpArgs, ProcessArgs, RelayArgs, TlsArgs};
use arthas::process;
use clap::{CommandFactory, FromArgMatches, Parser};
use edge::tls::HandshakeLog;
use relay::server;
use store::memory::{MemoryEngine, MemoryLimits};

/// Arthas all-in-one server: gateway + relay in one process, in-memory engine.
#[derive(Debug, Parser)]
#[command(name = "arthas", version, about)]
struct Config {
    /// Address for HTTP and WebSocket (`/ws`).
    #[arg(long, env = "ARTHAS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// On SIGTERM, how long connections may take to close (1001), milliseconds.
    #[arg(long, env = "ARTHAS_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
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
    gateway: GatewayArgs,
    #[command(flatten)]
    process: ProcessArgs,
}

fn main() -> ExitCode {
    let command = Config::command();
    let matches = command.clone().get_matches();
    let config = Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let summary = process::config_summary(&command, &matches);
    let process_args = config.process.clone();
    process::run("arthas", &process_args, &summary, run(config))
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let engine = MemoryEngine::new(MemoryLimits::default());
    let clock = config.process.clock();
    let gateway = gateway::Gateway::new(engine.clone(), config.gateway.config(clock.clone())?)?;
    config.gateway.start_daily_topic(&gateway)?;
    let builder = relay::RelayBuilder::new();
    engine.attach(builder.sink());
    let relay_config = config.relay.config(
        &config.edge,
        &config.http,
        "local".into(),
        Duration::ZERO,
        clock,
    );
    let relay = builder.build(
        relay_config,
        engine.clone(),
        engine.clone(),
        Arc::new(gateway.clone()),
    );
    relay.start_background();

    let online = {
        let metrics = relay.metrics.clone();
        Arc::new(move || metrics.connections.get().max(0) as u64)
    };
    let api = gateway::http::HttpApi::new(
        gateway,
        config.gateway.http_config(&config.edge, Vec::new())?,
        online,
    );
    let fallback: Arc<dyn server::HttpFallback> = Arc::new(GatewayRoutes(api));

    let identity = config.tls.identity()?;
    if let Some(identity) = &identity {
        relay
            .metrics
            .registry
            .register(Box::new(identity.expiry_gauge()))?;
    }
    let tls = cli::acceptor(&identity, "public", HandshakeLog::Public, None)?;
    let listener = config.http.bind(config.listen.as_str()).await?;
    let addr = listener.local_addr()?;
    // The one line on stdout (text mode): tests and scripts read the address from it.
    process::announce("listening", cli::scheme(&identity), addr);
    tracing::info!(%addr, "arthas all-in-one server listening (in-memory engine)");

    let accept = tokio::spawn(server::serve(listener, relay.clone(), fallback, tls));
    process::termination().await;
    tracing::info!("shutting down: closing connections with 1001");
    relay
        .shutdown(Duration::from_millis(config.shutdown_grace_ms))
        .await;
    accept.abort();
    Ok(())
}

/// Every request that is not `/ws` goes to the gateway's routes: the web
/// client, `/api/hub`, the room API, `/ping`, health.
struct GatewayRoutes(gateway::http::HttpApi);

#[async_trait::async_trait]
impl server::HttpFallback for GatewayRoutes {
    async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        peer: std::net::SocketAddr,
    ) -> hyper::Response<server::Body> {
        self.0.handle(request, peer).await
    }
}
