//! The all-in-one server's configuration: one flag per limit, each also an
//! `ARTHAS_*` environment variable (the README's table lists them all).

use std::time::Duration;

use clap::{Parser, ValueEnum};
use gateway::GatewayConfig;
use relay::RelayConfig;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Arthas all-in-one server: gateway + relay in one process, in-memory engine.
#[derive(Debug, Parser)]
#[command(name = "arthas", version, about)]
pub struct Config {
    /// Address for HTTP and WebSocket (`/ws`).
    #[arg(long, env = "ARTHAS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Allowed WebSocket origins, comma-separated, exact match ("" = any).
    #[arg(long, env = "ARTHAS_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: String,
    /// Take client IPs from X-Forwarded-For / X-Real-IP (only behind a trusted proxy).
    #[arg(long, env = "ARTHAS_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Largest inbound WebSocket message in bytes (larger: close 1009).
    #[arg(long, env = "ARTHAS_MAX_MESSAGE_BYTES", default_value_t = 102_400)]
    pub max_message_bytes: usize,
    /// Server ping period (WebSocket ping + Ping 0x18), milliseconds.
    #[arg(long, env = "ARTHAS_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,
    /// Close a connection without a WebSocket pong for this long (4002), milliseconds.
    #[arg(long, env = "ARTHAS_READ_TIMEOUT_MS", default_value_t = 40_000)]
    pub read_timeout_ms: u64,
    /// Longest time one frame may take to write, milliseconds.
    #[arg(long, env = "ARTHAS_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub write_timeout_ms: u64,
    /// Most bytes queued to one connection; overflow closes it as a slow consumer (4001).
    #[arg(long, env = "ARTHAS_MAX_OUTBOUND_QUEUE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_outbound_queue_bytes: usize,
    /// Most open WebSocket connections (more get HTTP 503).
    #[arg(long, env = "ARTHAS_MAX_CONNECTIONS", default_value_t = 19_000)]
    pub max_connections: usize,
    /// Members per room.
    #[arg(long, env = "ARTHAS_MAX_ROOM_MEMBERS", default_value_t = 50)]
    pub max_room_members: u32,
    /// Chat messages (SendMessage) accepted per window per connection.
    #[arg(long, env = "ARTHAS_CHAT_RATE_LIMIT", default_value_t = 10)]
    pub chat_rate_limit: usize,
    /// The chat rate window, milliseconds.
    #[arg(long, env = "ARTHAS_CHAT_RATE_WINDOW_MS", default_value_t = 10_000)]
    pub chat_rate_window_ms: u64,
    /// Longest room lifetime in seconds (longer requests are clamped).
    #[arg(long, env = "ARTHAS_MAX_EXPIRY_SECS", default_value_t = 604_800)]
    pub max_expiry_secs: i64,
    /// How often rooms are checked for expiry and the warning, milliseconds.
    #[arg(long, env = "ARTHAS_EXPIRY_SWEEP_INTERVAL_MS", default_value_t = 1_000)]
    pub expiry_sweep_interval_ms: u64,
    /// The expiry warning goes out this many seconds before expiry.
    #[arg(long, env = "ARTHAS_EXPIRY_WARNING_LEAD_SECS", default_value_t = 300)]
    pub expiry_warning_lead_secs: u64,
    /// An active file transfer is forgotten this many seconds after its Meta.
    #[arg(long, env = "ARTHAS_FILE_TRANSFER_STALE_SECS", default_value_t = 90)]
    pub file_transfer_stale_secs: u64,
    /// Most publicly listed rooms.
    #[arg(long, env = "ARTHAS_MAX_PUBLIC_ROOMS", default_value_t = 200)]
    pub max_public_rooms: usize,
    /// /api/hub requests per minute per client IP.
    #[arg(long, env = "ARTHAS_HUB_REQUESTS_PER_MINUTE", default_value_t = 30)]
    pub hub_requests_per_minute: u64,
    /// The window for counting wrong password guesses, seconds.
    #[arg(long, env = "ARTHAS_PASSWORD_GUESS_WINDOW_SECS", default_value_t = 300)]
    pub password_guess_window_secs: u64,
    /// Wrong guesses per room per window before E004.
    #[arg(
        long,
        env = "ARTHAS_MAX_PASSWORD_GUESSES_PER_ROOM",
        default_value_t = 10
    )]
    pub max_password_guesses_per_room: u64,
    /// Wrong guesses per client IP per window before E004.
    #[arg(long, env = "ARTHAS_MAX_PASSWORD_GUESSES_PER_IP", default_value_t = 30)]
    pub max_password_guesses_per_ip: u64,
    /// argon2id memory per hash, KiB.
    #[arg(long, env = "ARTHAS_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,
    /// argon2id passes.
    #[arg(long, env = "ARTHAS_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,
    /// argon2 jobs running at once.
    #[arg(long, env = "ARTHAS_ARGON2_MAX_CONCURRENT", default_value_t = 2)]
    pub argon2_max_concurrent: usize,
    /// argon2 jobs allowed to wait; more are refused with E004.
    #[arg(long, env = "ARTHAS_ARGON2_MAX_PENDING", default_value_t = 64)]
    pub argon2_max_pending: usize,
    /// Runtime threads: 1 = a single-threaded runtime (cheapest per message).
    #[arg(long, env = "ARTHAS_WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: usize,
    /// On shutdown, how long connections may take to close, milliseconds.
    #[arg(long, env = "ARTHAS_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// Log format on stderr (level: ARTHAS_LOG, e.g. "info" or "trace").
    #[arg(long, env = "ARTHAS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    /// The relay's part.
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            node_id: "local".into(),
            allowed_origins: self.allowed_origins.clone(),
            trust_forwarded_for: self.trust_forwarded_for,
            max_message_bytes: self.max_message_bytes,
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            max_outbound_queue_bytes: self.max_outbound_queue_bytes,
            chat_rate_limit: self.chat_rate_limit,
            chat_rate_window: Duration::from_millis(self.chat_rate_window_ms),
            expiry_sweep_interval: Duration::from_millis(self.expiry_sweep_interval_ms.max(1)),
            expiry_warning_lead: Duration::from_secs(self.expiry_warning_lead_secs),
            file_transfer_stale: Duration::from_secs(self.file_transfer_stale_secs),
            drain_window: Duration::ZERO,
            max_connections: self.max_connections,
            ..RelayConfig::default()
        }
    }

    /// The gateway's part.
    pub fn gateway_config(&self) -> GatewayConfig {
        GatewayConfig {
            max_room_members: self.max_room_members,
            max_expiry_secs: self.max_expiry_secs,
            max_public_rooms: self.max_public_rooms,
            password_guess_window: Duration::from_secs(self.password_guess_window_secs),
            max_password_guesses_per_room: self.max_password_guesses_per_room,
            max_password_guesses_per_ip: self.max_password_guesses_per_ip,
            password: gateway::password::PasswordConfig {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
                max_concurrent: self.argon2_max_concurrent,
                max_pending: self.argon2_max_pending,
            },
            ..GatewayConfig::default()
        }
    }

    /// The gateway's public HTTP routes.
    pub fn http_config(&self) -> gateway::http::HttpConfig {
        gateway::http::HttpConfig {
            allowed_origins: self.allowed_origins.clone(),
            hub_requests_per_minute: self.hub_requests_per_minute,
            trust_forwarded_for: self.trust_forwarded_for,
            ..gateway::http::HttpConfig::default()
        }
    }

    /// How long shutdown waits for connections.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}
