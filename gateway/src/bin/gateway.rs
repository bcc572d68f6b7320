//! The standalone gateway: the public HTTP surface (directory, room API, web
//! client) on `--listen`, and the internal API relays call on
//! `--internal-listen`, over one store.
//!
//! On start it prints `listening on http://ADDR` and `internal on http://ADDR`
//! on stdout (logs go to stderr, filtered by `ARTHAS_LOG`). SIGTERM or
//! SIGINT stops accepting, lets requests in flight finish, and exits 0.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arthas_gateway::http::{HttpApi, HttpConfig};
use arthas_gateway::internal::{InternalApi, InternalConfig};
use arthas_gateway::password::PasswordConfig;
use arthas_gateway::{Gateway, GatewayConfig};
use clap::{Parser, ValueEnum};
use store::memory::{MemoryEngine, MemoryLimits};
use store::RoomStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Where room state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// One process, in memory (development; one replica only).
    Memory,
}

/// The gateway's configuration: every flag is also an `ARTHAS_*` variable.
#[derive(Parser)]
#[command(
    name = "arthas-gateway",
    version,
    about = "Arthas gateway: rooms, passwords, tickets, directory, web client"
)]
struct Config {
    /// Public HTTP address (directory, room API, web client).
    #[arg(long, env = "ARTHAS_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Internal API address (relays only; keep it off the internet).
    #[arg(long, env = "ARTHAS_INTERNAL_LISTEN", default_value = "127.0.0.1:8082")]
    internal_listen: SocketAddr,
    /// Shared secret relays present as `Authorization: Bearer <secret>`.
    #[arg(long, env = "ARTHAS_INTERNAL_SECRET", hide_env_values = true)]
    internal_secret: String,
    /// HMAC key of join tickets (at least 16 bytes); every replica needs the
    /// same. Default: random per process.
    #[arg(long, env = "ARTHAS_TICKET_SECRET", hide_env_values = true)]
    ticket_secret: Option<String>,
    /// Lifetime of a join ticket, seconds.
    #[arg(long, env = "ARTHAS_TICKET_TTL_SECS", default_value_t = 60)]
    ticket_ttl_secs: u64,
    /// Storage engine.
    #[arg(long, env = "ARTHAS_STORE", value_enum, default_value_t = StoreKind::Memory)]
    store: StoreKind,
    /// Comma list of allowed origins; echoed raw as the directory's CORS origin.
    #[arg(long, env = "ARTHAS_ALLOWED_ORIGINS", default_value = "")]
    allowed_origins: String,
    /// Take the client IP from X-Forwarded-For / X-Real-IP (behind a proxy only).
    #[arg(long, env = "ARTHAS_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// /api/hub requests per client IP per minute.
    #[arg(long, env = "ARTHAS_HUB_REQUESTS_PER_MINUTE", default_value_t = 30)]
    hub_requests_per_minute: u64,
    /// POST /v1/rooms per client IP per minute.
    #[arg(long, env = "ARTHAS_ROOM_CREATIONS_PER_MINUTE", default_value_t = 30)]
    room_creations_per_minute: u64,
    /// Largest JSON request body, bytes.
    #[arg(long, env = "ARTHAS_MAX_BODY_BYTES", default_value_t = arthas_gateway::server::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Members a new room takes.
    #[arg(long, env = "ARTHAS_MAX_ROOM_MEMBERS", default_value_t = 50)]
    max_room_members: u32,
    /// Longest room lifetime (longer requests are clamped), seconds.
    #[arg(long, env = "ARTHAS_MAX_EXPIRY_SECS", default_value_t = 604_800)]
    max_expiry_secs: i64,
    /// A created room nobody joins vanishes after this long, seconds.
    #[arg(long, env = "ARTHAS_UNJOINED_ROOM_TTL_SECS", default_value_t = 60)]
    unjoined_room_ttl_secs: u64,
    /// Most publicly listed rooms.
    #[arg(long, env = "ARTHAS_MAX_PUBLIC_ROOMS", default_value_t = 200)]
    max_public_rooms: usize,
    /// Window in which wrong password guesses are counted, seconds.
    #[arg(long, env = "ARTHAS_PASSWORD_GUESS_WINDOW_SECS", default_value_t = 300)]
    password_guess_window_secs: u64,
    /// Wrong guesses per room per window before E004.
    #[arg(
        long,
        env = "ARTHAS_MAX_PASSWORD_GUESSES_PER_ROOM",
        default_value_t = 10
    )]
    max_password_guesses_per_room: u64,
    /// Wrong guesses per client IP per window before E004.
    #[arg(long, env = "ARTHAS_MAX_PASSWORD_GUESSES_PER_IP", default_value_t = 30)]
    max_password_guesses_per_ip: u64,
    /// argon2id memory per hash, KiB.
    #[arg(long, env = "ARTHAS_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    argon2_memory_kib: u32,
    /// argon2id passes.
    #[arg(long, env = "ARTHAS_ARGON2_ITERATIONS", default_value_t = 2)]
    argon2_iterations: u32,
    /// argon2 jobs running at once.
    #[arg(long, env = "ARTHAS_ARGON2_MAX_CONCURRENT", default_value_t = 2)]
    argon2_max_concurrent: usize,
    /// argon2 jobs allowed to wait; more are refused (E004).
    #[arg(long, env = "ARTHAS_ARGON2_MAX_PENDING", default_value_t = 64)]
    argon2_max_pending: usize,
}

impl Config {
    fn gateway_config(&self) -> Result<GatewayConfig, String> {
        let defaults = GatewayConfig::default();
        let ticket_secret = match &self.ticket_secret {
            Some(secret) if secret.len() < arthas_gateway::ticket::MIN_SECRET_BYTES => {
                return Err(format!(
                    "--ticket-secret must be at least {} bytes",
                    arthas_gateway::ticket::MIN_SECRET_BYTES
                ))
            }
            Some(secret) => secret.as_bytes().to_vec(),
            None => {
                tracing::info!(
                    "no ticket secret configured: tickets are valid on this process only"
                );
                defaults.ticket_secret.clone()
            }
        };
        Ok(GatewayConfig {
            max_room_members: self.max_room_members,
            max_expiry_secs: self.max_expiry_secs,
            unjoined_room_ttl: Duration::from_secs(self.unjoined_room_ttl_secs),
            max_public_rooms: self.max_public_rooms,
            password_guess_window: Duration::from_secs(self.password_guess_window_secs),
            max_password_guesses_per_room: self.max_password_guesses_per_room,
            max_password_guesses_per_ip: self.max_password_guesses_per_ip,
            password: PasswordConfig {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
                max_concurrent: self.argon2_max_concurrent,
                max_pending: self.argon2_max_pending,
            },
            ticket_secret,
            ticket_ttl: Duration::from_secs(self.ticket_ttl_secs),
        })
    }

    fn http_config(&self) -> HttpConfig {
        HttpConfig {
            allowed_origins: self.allowed_origins.clone(),
            hub_requests_per_minute: self.hub_requests_per_minute,
            room_creations_per_minute: self.room_creations_per_minute,
            trust_forwarded_for: self.trust_forwarded_for,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// The store behind the gateway. Adding an engine is one arm here.
fn open_store(kind: StoreKind) -> Arc<dyn RoomStore> {
    match kind {
        StoreKind::Memory => MemoryEngine::new(MemoryLimits::default()),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

async fn run(config: Config) -> Result<(), String> {
    if config.internal_secret.is_empty() {
        return Err("--internal-secret (ARTHAS_INTERNAL_SECRET) must not be empty".into());
    }
    let gateway = Gateway::new(open_store(config.store), config.gateway_config()?)
        .map_err(|e| format!("gateway: {e}"))?;
    let http = Arc::new(HttpApi::new(
        gateway.clone(),
        config.http_config(),
        // WebSockets live on the relays; the standalone gateway has none.
        Arc::new(|| 0),
    ));
    let internal = Arc::new(InternalApi::new(
        gateway,
        InternalConfig {
            secret: config.internal_secret.clone(),
            max_body_bytes: config.max_body_bytes,
        },
    ));
    let public_listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let internal_listener = TcpListener::bind(config.internal_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.internal_listen))?;
    let public_addr = public_listener.local_addr().map_err(|e| e.to_string())?;
    let internal_addr = internal_listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on http://{public_addr}");
    println!("internal on http://{internal_addr}");
    tracing::info!(%public_addr, %internal_addr, store = ?config.store, "gateway started");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let public = tokio::spawn(arthas_gateway::server::serve(
        public_listener,
        http,
        stopped(stop_rx.clone()),
    ));
    let internal = tokio::spawn(arthas_gateway::server::serve(
        internal_listener,
        internal,
        stopped(stop_rx),
    ));
    termination().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::join!(public, internal);
    tracing::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ARTHAS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("arthas-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("arthas-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
