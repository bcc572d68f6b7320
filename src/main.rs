//! The all-in-one Arthas server: the gateway and one relay in one process,
//! with the in-memory engine. `cargo run --release` starts a working chat
//! on 127.0.0.1:8080.

mod config;

use std::sync::Arc;

use clap::Parser;
use relay::server;
use store::memory::{MemoryEngine, MemoryLimits};
use tracing_subscriber::EnvFilter;

use config::Config;

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    init_logging(&config);
    let runtime = match config.worker_threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "arthas stopped");
            eprintln!("arthas: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_env("ARTHAS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_format == config::LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let engine = MemoryEngine::new(MemoryLimits::default());
    let gateway = gateway::Gateway::new(engine.clone(), config.gateway_config())?;
    let builder = relay::RelayBuilder::new();
    engine.attach(builder.sink());
    let relay = builder.build(
        config.relay_config(),
        engine.clone(),
        engine.clone(),
        Arc::new(gateway.clone()),
    );
    relay.start_background();

    let online = {
        let metrics = relay.metrics.clone();
        Arc::new(move || metrics.connections.get().max(0) as u64)
    };
    let api = gateway::http::HttpApi::new(gateway, config.http_config(), online);
    let fallback: Arc<dyn server::HttpFallback> = Arc::new(GatewayRoutes(api));

    let listener = tokio::net::TcpListener::bind(&config.listen).await?;
    let addr = listener.local_addr()?;
    // The one line on stdout: tests and scripts read the address from it.
    println!("listening on http://{addr}");
    tracing::info!(%addr, "arthas all-in-one server listening (in-memory engine)");

    let accept = tokio::spawn(server::serve(listener, relay.clone(), fallback));
    shutdown_signal().await;
    tracing::info!("shutting down: closing connections with 1001");
    relay.shutdown(config.shutdown_grace()).await;
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

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
