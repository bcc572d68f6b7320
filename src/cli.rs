//! Flag groups. Every flag is also an environment variable (`--foo-bar` is
//! `ARTHAS_FOO_BAR`); each limit has its unit in its name. The README's
//! configuration tables list them all.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use edge::tls::{HandshakeLog, Identity, TlsAcceptor};
use edge::TrustedProxies;
use gateway::password::PasswordConfig;
use gateway::GatewayConfig;
use relay::RelayConfig;
use store::redis::{RedisConfig, RedisEngine, RedisMode, RedisTls};
use store::{RoomLinger, SharedClock, StoreError};

/// Who may connect, and how client addresses are read.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// Allowed WebSocket origins, comma-separated, exact match ("" = any).
    #[arg(long, env = "ARTHAS_ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: String,
    /// Proxies whose X-Forwarded-For is believed, comma-separated CIDRs or addresses: the client is the rightmost entry not in them ("" = none: the TCP peer).
    #[arg(long, env = "ARTHAS_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: TrustedProxies,
    /// Deprecated (use --trusted-proxies): trust the TCP peer as one proxy hop, whatever its address.
    #[arg(long, env = "ARTHAS_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
}

impl EdgeArgs {
    /// The proxies whose X-Forwarded-For entries are believed.
    pub fn trusted_proxies(&self) -> TrustedProxies {
        if self.trust_forwarded_for {
            tracing::warn!(
                "--trust-forwarded-for is deprecated: it trusts any TCP peer as a proxy; \
                 list your proxies' addresses in --trusted-proxies instead"
            );
            self.trusted_proxies.clone().with_peer_trusted()
        } else {
            self.trusted_proxies.clone()
        }
    }
}

/// Limits on every HTTP connection's request heads (the WebSocket
/// handshake included), against slow and oversized requests.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// An HTTP request head (and so a WebSocket handshake) must arrive within this, also between keep-alive requests, milliseconds.
    #[arg(long, env = "ARTHAS_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Largest HTTP request head (request line and headers), bytes (at least 8192; larger: 431).
    #[arg(long, env = "ARTHAS_MAX_HEADER_BYTES", default_value_t = edge::http::DEFAULT_MAX_HEADER_BYTES)]
    pub max_header_bytes: usize,
    /// Connections the kernel queues on the public listener until the server accepts them (the kernel caps it at net.core.somaxconn); when a reconnect storm overflows it, handshakes are lost.
    #[arg(long, env = "ARTHAS_LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: u32,
}

impl HttpArgs {
    /// Listens on `addr` (the first address it resolves to) with
    /// `--listen-backlog`.
    pub async fn bind(
        &self,
        addr: impl tokio::net::ToSocketAddrs,
    ) -> std::io::Result<tokio::net::TcpListener> {
        let addr = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the listen address resolves to no address",
            )
        })?;
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std's and tokio's bind do: a restarted server may listen at once.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(self.listen_backlog.max(1))
    }

    /// The limits.
    pub fn limits(&self) -> edge::http::HttpLimits {
        edge::http::HttpLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            max_header_bytes: self.max_header_bytes.max(edge::http::MIN_MAX_HEADER_BYTES),
        }
    }
}

/// TLS on every listener of the process (public, internal, admin).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// PEM certificate chain (leaf first) served on every listener: with --tls-key, they speak HTTPS/WSS only ("" = plain HTTP).
    #[arg(long, env = "ARTHAS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "ARTHAS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often the certificate and key files are read again to pick up a rotation, milliseconds.
    #[arg(long, env = "ARTHAS_TLS_RELOAD_INTERVAL_MS", default_value_t = 10_000)]
    pub tls_reload_interval_ms: u64,
}

impl TlsArgs {
    /// The server certificate, reloaded from disk in the background from
    /// now on; `None` when TLS is off. Fails on a certificate that cannot
    /// be served (unreadable, mismatched key, expired).
    pub fn identity(&self) -> Result<Option<Arc<Identity>>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let identity = Identity::load(edge::tls::provider(), cert, key, "server")
            .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
        identity.spawn_reloader(Duration::from_millis(self.tls_reload_interval_ms.max(1)));
        tracing::info!(
            cert = %cert.display(),
            not_after = identity.not_after(),
            "serving TLS"
        );
        Ok(Some(identity))
    }
}

/// The acceptor of one listener (`public`, `internal`, `admin`), or `None`
/// without TLS; `client_auth` requires client certificates.
pub fn acceptor(
    identity: &Option<Arc<Identity>>,
    listener: &'static str,
    log: HandshakeLog,
    client_auth: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Option<TlsAcceptor>, String> {
    identity
        .as_ref()
        .map(|identity| TlsAcceptor::new(identity.clone(), client_auth, listener, log))
        .transpose()
        .map_err(|e| format!("TLS on the {listener} listener: {e}"))
}

/// `https` with TLS, else `http`: the scheme of the address lines.
pub fn scheme(identity: &Option<Arc<Identity>>) -> &'static str {
    if identity.is_some() {
        "https"
    } else {
        "http"
    }
}

/// A relay's limits and timings.
#[derive(Debug, Clone, Args)]
pub struct RelayArgs {
    /// Largest inbound WebSocket message in bytes (larger: close 1009).
    #[arg(long, env = "ARTHAS_MAX_MESSAGE_BYTES", default_value_t = 102_400)]
    pub max_message_bytes: usize,
    /// A WebSocket message (fragmented or slow) must complete within this once started (else close 4003), milliseconds.
    #[arg(long, env = "ARTHAS_MESSAGE_TIMEOUT_MS", default_value_t = 30_000)]
    pub message_timeout_ms: u64,
    /// Longest file transfer id a client may use, bytes, at most 255 (longer: E005).
    #[arg(long, env = "ARTHAS_MAX_TRANSFER_ID_BYTES", default_value_t = 64)]
    pub max_transfer_id_bytes: usize,
    /// Largest directed message (SendDirect's iv and ciphertext together), bytes (larger: E005).
    #[arg(long, env = "ARTHAS_MAX_DIRECT_BYTES", default_value_t = 65_536)]
    pub max_direct_bytes: usize,
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
    /// Most open WebSocket connections per client IP (IPv6: per /64) on this relay (more get HTTP 429).
    #[arg(long, env = "ARTHAS_MAX_CONNECTIONS_PER_IP", default_value_t = 100)]
    pub max_connections_per_ip: usize,
    /// WebSocket handshakes per client IP (IPv6: per /64) per second, as many at once (more get HTTP 429).
    #[arg(long, env = "ARTHAS_HANDSHAKES_PER_IP_PER_SEC", default_value_t = 20)]
    pub handshakes_per_ip_per_sec: u64,
    /// CreateRoom/JoinRoom requests worked on at once per relay; more get E005 (retry), and while all are taken new WebSocket handshakes get HTTP 503 with Retry-After.
    #[arg(long, env = "ARTHAS_MAX_JOINS_IN_FLIGHT", default_value_t = 128)]
    pub max_joins_in_flight: usize,
    /// Second rollbacks of failed joins (10 s after the join failed) waiting at most per relay; beyond it they are dropped, counted and logged.
    #[arg(long, env = "ARTHAS_JOIN_ROLLBACK_QUEUE", default_value_t = 4096)]
    pub join_rollback_queue: usize,
    /// Reactions (SendReaction) per minute per connection, as many at once (more get E004).
    #[arg(long, env = "ARTHAS_REACTIONS_PER_MINUTE", default_value_t = 120)]
    pub reactions_per_minute: u64,
    /// Typing messages per minute per connection, as many at once (more get E004).
    #[arg(long, env = "ARTHAS_TYPING_PER_MINUTE", default_value_t = 120)]
    pub typing_per_minute: u64,
    /// CreateRoom and JoinRoom per minute per connection, as many at once (more get E004).
    #[arg(long, env = "ARTHAS_ROOM_CHANGES_PER_MINUTE", default_value_t = 60)]
    pub room_changes_per_minute: u64,
    /// File frames (meta, chunks, complete, cancel, ack), bytes per second per connection; beyond it the relay pauses reading the connection.
    #[arg(long, env = "ARTHAS_FILE_BYTES_PER_SEC", default_value_t = 4 * 1024 * 1024)]
    pub file_bytes_per_sec: u64,
    /// File bytes a connection may send at once before pacing starts.
    #[arg(long, env = "ARTHAS_FILE_BURST_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub file_burst_bytes: u64,
    /// Chat messages (SendMessage) accepted per window per connection.
    #[arg(long, env = "ARTHAS_CHAT_RATE_LIMIT", default_value_t = 10)]
    pub chat_rate_limit: usize,
    /// The chat rate window, milliseconds.
    #[arg(long, env = "ARTHAS_CHAT_RATE_WINDOW_MS", default_value_t = 10_000)]
    pub chat_rate_window_ms: u64,
    /// How often rooms are checked for expiry and the warning, milliseconds.
    #[arg(long, env = "ARTHAS_EXPIRY_SWEEP_INTERVAL_MS", default_value_t = 1_000)]
    pub expiry_sweep_interval_ms: u64,
    /// The expiry warning goes out this many seconds before expiry.
    #[arg(long, env = "ARTHAS_EXPIRY_WARNING_LEAD_SECS", default_value_t = 300)]
    pub expiry_warning_lead_secs: u64,
    /// An active file transfer is forgotten this many seconds after its Meta.
    #[arg(long, env = "ARTHAS_FILE_TRANSFER_STALE_SECS", default_value_t = 90)]
    pub file_transfer_stale_secs: u64,
    /// How often a relay heartbeats and sweeps dead relays, milliseconds.
    #[arg(long, env = "ARTHAS_HEARTBEAT_INTERVAL_MS", default_value_t = 3_000)]
    pub heartbeat_interval_ms: u64,
    /// A relay silent this long is dead: its members are removed (MemberLeft), milliseconds.
    #[arg(long, env = "ARTHAS_HEARTBEAT_TTL_MS", default_value_t = 10_000)]
    pub heartbeat_ttl_ms: u64,
    /// After Redis lost this relay's rooms (it came back empty, or the relay was swept), wait a random delay below this before writing them back, milliseconds.
    #[arg(long, env = "ARTHAS_HEAL_JITTER_MS", default_value_t = 1_000)]
    pub heal_jitter_ms: u64,
    /// Keep a room subscribed this long after this relay's last member of it left (0 = unsubscribe at once), milliseconds.
    #[arg(long, env = "ARTHAS_ROOM_LINGER_MS", default_value_t = 5_000)]
    pub room_linger_ms: u64,
}

impl RelayArgs {
    /// `--room-linger-ms`: the relay's room linger, for its hub and its
    /// engine alike ([`store::linger`]).
    pub fn room_linger(&self) -> RoomLinger {
        RoomLinger::new(Duration::from_millis(self.room_linger_ms))
    }

    /// The relay configuration for node `node_id`; `drain_window` spreads
    /// the 1001 closes on shutdown; `clock` is `ProcessArgs::clock`.
    pub fn config(
        &self,
        edge: &EdgeArgs,
        http: &HttpArgs,
        node_id: String,
        drain_window: Duration,
        clock: SharedClock,
    ) -> RelayConfig {
        RelayConfig {
            node_id,
            allowed_origins: edge.allowed_origins.clone(),
            trusted_proxies: edge.trusted_proxies(),
            max_message_bytes: self.max_message_bytes,
            message_timeout: Duration::from_millis(self.message_timeout_ms.max(1)),
            http: http.limits(),
            max_transfer_id_bytes: self.max_transfer_id_bytes,
            max_direct_bytes: self.max_direct_bytes,
            ping_interval: Duration::from_millis(self.ping_interval_ms.max(1)),
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            max_outbound_queue_bytes: self.max_outbound_queue_bytes,
            chat_rate_limit: self.chat_rate_limit,
            chat_rate_window: Duration::from_millis(self.chat_rate_window_ms),
            expiry_sweep_interval: Duration::from_millis(self.expiry_sweep_interval_ms.max(1)),
            expiry_warning_lead: Duration::from_secs(self.expiry_warning_lead_secs),
            file_transfer_stale: Duration::from_secs(self.file_transfer_stale_secs),
            drain_window,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            handshakes_per_ip_per_sec: self.handshakes_per_ip_per_sec,
            max_joins_in_flight: self.max_joins_in_flight.max(1),
            join_rollback_queue: self.join_rollback_queue.max(1),
            budgets: relay::MessageBudgets {
                reactions_per_minute: self.reactions_per_minute,
                typing_per_minute: self.typing_per_minute,
                room_changes_per_minute: self.room_changes_per_minute,
                file_bytes_per_sec: self.file_bytes_per_sec,
                file_burst_bytes: self.file_burst_bytes,
            },
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms.max(1)),
            heartbeat_ttl: Duration::from_millis(self.heartbeat_ttl_ms),
            heal_jitter: Duration::from_millis(self.heal_jitter_ms),
            room_linger: self.room_linger(),
            clock,
        }
    }
}

/// The gateway's limits: rooms, passwords, the directory.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Members per room.
    #[arg(long, env = "ARTHAS_MAX_ROOM_MEMBERS", default_value_t = 50)]
    pub max_room_members: u32,
    /// Longest room lifetime in seconds (longer requests are clamped).
    #[arg(long, env = "ARTHAS_MAX_EXPIRY_SECS", default_value_t = 604_800)]
    pub max_expiry_secs: i64,
    /// A created room nobody joins vanishes after this long, seconds.
    #[arg(long, env = "ARTHAS_UNJOINED_ROOM_TTL_SECS", default_value_t = 60)]
    pub unjoined_room_ttl_secs: u64,
    /// Most publicly listed rooms.
    #[arg(long, env = "ARTHAS_MAX_PUBLIC_ROOMS", default_value_t = 200)]
    pub max_public_rooms: usize,
    /// /api/hub requests per minute per client IP.
    #[arg(long, env = "ARTHAS_HUB_REQUESTS_PER_MINUTE", default_value_t = 30)]
    pub hub_requests_per_minute: u64,
    /// Room creations per minute per client IP (IPv6: per /64), every path together: WebSocket CreateRoom and POST /v1/rooms (more get E004).
    #[arg(long, env = "ARTHAS_ROOM_CREATIONS_PER_MINUTE", default_value_t = 30)]
    pub room_creations_per_minute: u64,
    /// Public directory listings per hour per client IP (beyond: the room is created private, E004).
    #[arg(long, env = "ARTHAS_PUBLIC_LISTINGS_PER_HOUR", default_value_t = 10)]
    pub public_listings_per_hour: u64,
    /// GET /v1/rooms/{id} per minute per client IP (more get 429).
    #[arg(long, env = "ARTHAS_ROOM_LOOKUPS_PER_MINUTE", default_value_t = 60)]
    pub room_lookups_per_minute: u64,
    /// Largest JSON request body, bytes.
    #[arg(long, env = "ARTHAS_MAX_BODY_BYTES", default_value_t = gateway::server::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// A request body must arrive within this (else 408), milliseconds.
    #[arg(long, env = "ARTHAS_BODY_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_read_timeout_ms: u64,
    /// The window for counting password guesses, seconds.
    #[arg(long, env = "ARTHAS_PASSWORD_GUESS_WINDOW_SECS", default_value_t = 300)]
    pub password_guess_window_secs: u64,
    /// Guesses per room per window (everyone's) before each further check of the room is delayed; never a refusal.
    #[arg(
        long,
        env = "ARTHAS_MAX_PASSWORD_GUESSES_PER_ROOM",
        default_value_t = 10
    )]
    pub max_password_guesses_per_room: u64,
    /// Wrong guesses per room per client IP per window before that IP gets E004 on that room.
    #[arg(
        long,
        env = "ARTHAS_MAX_PASSWORD_GUESSES_PER_ROOM_IP",
        default_value_t = 5
    )]
    pub max_password_guesses_per_room_ip: u64,
    /// Wrong guesses per client IP per window, all rooms, before E004.
    #[arg(long, env = "ARTHAS_MAX_PASSWORD_GUESSES_PER_IP", default_value_t = 30)]
    pub max_password_guesses_per_ip: u64,
    /// Delay of the first check beyond the room's guess threshold; it doubles per further guess, milliseconds.
    #[arg(long, env = "ARTHAS_PASSWORD_GUESS_DELAY_MS", default_value_t = 250)]
    pub password_guess_delay_ms: u64,
    /// Longest delay of a password check (keep it well below the relays' 10 s gateway deadline), milliseconds.
    #[arg(
        long,
        env = "ARTHAS_PASSWORD_GUESS_MAX_DELAY_MS",
        default_value_t = 5_000
    )]
    pub password_guess_max_delay_ms: u64,
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
    /// argon2 hashes of password room creations running or queued at once, out of --argon2-max-concurrent (the rest stay for joins).
    #[arg(
        long,
        env = "ARTHAS_ARGON2_MAX_CONCURRENT_CREATIONS",
        default_value_t = 1
    )]
    pub argon2_max_concurrent_creations: usize,
    /// Password room creations allowed to wait for argon2 (their own line); more are refused with E004.
    #[arg(
        long,
        env = "ARTHAS_ARGON2_MAX_PENDING_CREATIONS",
        default_value_t = 16
    )]
    pub argon2_max_pending_creations: usize,
    /// HMAC key of join tickets (at least 16 bytes; the same on every gateway). Default: random per process.
    #[arg(long, env = "ARTHAS_TICKET_SECRET", hide_env_values = true)]
    pub ticket_secret: Option<String>,
    /// Lifetime of a join ticket, seconds.
    #[arg(long, env = "ARTHAS_TICKET_TTL_SECS", default_value_t = 60)]
    pub ticket_ttl_secs: u64,
    /// Do not create the daily topic (a public room per UTC day, made once across all gateways).
    #[arg(long, env = "ARTHAS_DISABLE_DAILY_TOPIC")]
    pub disable_daily_topic: bool,
    /// Origins the web client's pages may connect to besides their own, comma-separated (`wss://relays.example.com`; the CSP's connect-src) ("" = only their own origin).
    #[arg(long, env = "ARTHAS_WEB_CONNECT_ORIGINS", default_value = "")]
    pub web_connect_origins: String,
}

impl GatewayArgs {
    /// The gateway configuration, deciding by `clock`.
    pub fn config(&self, clock: SharedClock) -> Result<GatewayConfig, String> {
        let defaults = GatewayConfig::default();
        let ticket_secret = match &self.ticket_secret {
            Some(s) if s.len() < gateway::ticket::MIN_SECRET_BYTES => {
                return Err(format!(
                    "--ticket-secret must be at least {} bytes",
                    gateway::ticket::MIN_SECRET_BYTES
                ))
            }
            Some(s) => s.as_bytes().to_vec(),
            None => defaults.ticket_secret.clone(),
        };
        Ok(GatewayConfig {
            max_room_members: self.max_room_members,
            max_expiry_secs: self.max_expiry_secs,
            unjoined_room_ttl: Duration::from_secs(self.unjoined_room_ttl_secs),
            max_public_rooms: self.max_public_rooms,
            room_creations_per_minute: self.room_creations_per_minute,
            public_listings_per_hour: self.public_listings_per_hour,
            password_guess_window: Duration::from_secs(self.password_guess_window_secs),
            max_password_guesses_per_room: self.max_password_guesses_per_room,
            max_password_guesses_per_room_ip: self.max_password_guesses_per_room_ip,
            max_password_guesses_per_ip: self.max_password_guesses_per_ip,
            password_guess_delay: Duration::from_millis(self.password_guess_delay_ms),
            password_guess_max_delay: Duration::from_millis(self.password_guess_max_delay_ms),
            password: PasswordConfig {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
                max_concurrent: self.argon2_max_concurrent,
                max_pending: self.argon2_max_pending,
                max_concurrent_creations: self.argon2_max_concurrent_creations,
                max_pending_creations: self.argon2_max_pending_creations,
            },
            ticket_secret,
            ticket_ttl: Duration::from_secs(self.ticket_ttl_secs),
            clock,
        })
    }

    /// How long a request body may take to arrive.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms.max(1))
    }

    /// Starts the daily topic on the current runtime unless it is disabled.
    pub fn start_daily_topic(
        &self,
        gateway: &gateway::Gateway,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
        if self.disable_daily_topic {
            tracing::info!("daily topic disabled");
            return Ok(None);
        }
        gateway::daily::spawn(gateway.clone(), gateway.clock().clone())
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// The public HTTP routes' configuration for a web client that
    /// connects to `relay_urls` (empty: its own origin's `/ws`); fails on a
    /// `--web-connect-origins` entry that is not an origin. The page's CSP
    /// allows exactly its own origin, `--web-connect-origins` and the relays'
    /// origins.
    pub fn http_config(
        &self,
        edge: &EdgeArgs,
        relay_urls: Vec<String>,
    ) -> Result<gateway::http::HttpConfig, String> {
        let mut connect_origins: Vec<String> = self
            .web_connect_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        connect_origins.extend(relay_urls.iter().filter_map(|u| gateway::web::origin_of(u)));
        let content_security_policy = gateway::web::ContentSecurityPolicy::new(&connect_origins)
            .map_err(|e| format!("--web-connect-origins: {e}"))?;
        Ok(gateway::http::HttpConfig {
            allowed_origins: edge.allowed_origins.clone(),
            hub_requests_per_minute: self.hub_requests_per_minute,
            room_lookups_per_minute: self.room_lookups_per_minute,
            body_read_timeout: self.body_read_timeout(),
            trusted_proxies: edge.trusted_proxies(),
            max_body_bytes: self.max_body_bytes,
            relay_urls,
            content_security_policy,
        })
    }
}

/// Redis topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedisModeArg {
    /// One server: PUBLISH/SUBSCRIBE.
    Standalone,
    /// Redis Cluster 7+: sharded pub/sub (SPUBLISH/SSUBSCRIBE).
    Cluster,
    /// A primary under Redis Sentinel: the URL lists the sentinels; commands
    /// and the bus follow the primary they name across failovers.
    Sentinel,
}

/// Where the cluster's shared state lives.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL (`redis://host:port`); for a cluster, comma-separated seed nodes; for sentinel, comma-separated sentinels (`redis://host:26379,...`).
    #[arg(
        long,
        env = "ARTHAS_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Redis topology.
    #[arg(long, env = "ARTHAS_REDIS_MODE", value_enum, default_value_t = RedisModeArg::Standalone)]
    pub redis_mode: RedisModeArg,
    /// Name the sentinels monitor the primary under (`--redis-mode sentinel`).
    #[arg(long, env = "ARTHAS_REDIS_SENTINEL_MASTER", default_value = "mymaster")]
    pub redis_sentinel_master: String,
    /// Shared multiplexed connections for Redis commands (round-robin).
    #[arg(long, env = "ARTHAS_REDIS_POOL_SIZE", default_value_t = 4)]
    pub redis_pool_size: usize,
    /// Most Redis commands in flight per process; more wait (within the command timeout).
    #[arg(long, env = "ARTHAS_REDIS_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub redis_max_in_flight: usize,
    /// Longest a Redis command may take, milliseconds.
    #[arg(long, env = "ARTHAS_REDIS_COMMAND_TIMEOUT_MS", default_value_t = 2_000)]
    pub redis_command_timeout_ms: u64,
    /// Longest a publish may take before the sender is told the bus is down, milliseconds.
    #[arg(long, env = "ARTHAS_REDIS_PUBLISH_TIMEOUT_MS", default_value_t = 500)]
    pub redis_publish_timeout_ms: u64,
    /// How long an expired room answers E007 before it is gone (E001), seconds.
    #[arg(long, env = "ARTHAS_EXPIRED_ROOM_GRACE_SECS", default_value_t = 60)]
    pub expired_room_grace_secs: u64,
    /// PEM CA bundle Redis servers' certificates must chain to (`rediss://`; default: the system's roots, SSL_CERT_FILE).
    #[arg(long, env = "ARTHAS_REDIS_TLS_CA")]
    pub redis_tls_ca: Option<PathBuf>,
    /// PEM client certificate chain for Redis servers with `tls-auth-clients yes` (read at start-up).
    #[arg(long, env = "ARTHAS_REDIS_TLS_CERT", requires = "redis_tls_key")]
    pub redis_tls_cert: Option<PathBuf>,
    /// PEM private key of --redis-tls-cert.
    #[arg(long, env = "ARTHAS_REDIS_TLS_KEY", requires = "redis_tls_cert")]
    pub redis_tls_key: Option<PathBuf>,
}

impl RedisArgs {
    /// Connects the engine (fails fast if Redis does not answer now); a
    /// relay passes its room linger (`RelayArgs::room_linger`), a gateway
    /// `RoomLinger::OFF`.
    pub async fn connect(&self, room_linger: RoomLinger) -> Result<Arc<RedisEngine>, StoreError> {
        let list = || -> Vec<String> {
            self.redis_url
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mode = match self.redis_mode {
            RedisModeArg::Standalone => RedisMode::Standalone {
                url: self.redis_url.clone(),
            },
            RedisModeArg::Cluster => RedisMode::Cluster { nodes: list() },
            RedisModeArg::Sentinel => RedisMode::Sentinel {
                sentinels: list(),
                master_name: self.redis_sentinel_master.clone(),
            },
        };
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| StoreError(format!("{flag} {}: {e}", path.display())))
        };
        let tls = RedisTls {
            ca_pem: self
                .redis_tls_ca
                .as_ref()
                .map(|p| read("--redis-tls-ca", p))
                .transpose()?,
            client_pem: match (&self.redis_tls_cert, &self.redis_tls_key) {
                (Some(cert), Some(key)) => Some((
                    read("--redis-tls-cert", cert)?,
                    read("--redis-tls-key", key)?,
                )),
                _ => None,
            },
        };
        let config = RedisConfig {
            pool_size: self.redis_pool_size.max(1),
            max_in_flight: self.redis_max_in_flight.max(1),
            tls,
            command_timeout: Duration::from_millis(self.redis_command_timeout_ms),
            publish_timeout: Duration::from_millis(self.redis_publish_timeout_ms),
            expired_room_grace: Duration::from_secs(self.expired_room_grace_secs),
            room_linger,
            ..RedisConfig::default()
        };
        RedisEngine::connect(mode, config).await
    }
}

/// Log format on stderr (the level comes from `ARTHAS_LOG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Process-wide settings.
#[derive(Debug, Clone, Args)]
pub struct ProcessArgs {
    /// Runtime threads: 1 = a single-threaded runtime (cheapest per message).
    #[arg(long, env = "ARTHAS_WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: usize,
    /// Log format on stderr (level: ARTHAS_LOG, e.g. "info" or "trace").
    #[arg(long, env = "ARTHAS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// OTLP/gRPC collector for trace export, e.g. `http://otel-collector:4317` ("" = no export).
    #[arg(long, env = "ARTHAS_OTLP_ENDPOINT", default_value = "")]
    pub otlp_endpoint: String,
    /// service.name of exported spans ("" = the binary's name).
    #[arg(long, env = "ARTHAS_OTLP_SERVICE_NAME", default_value = "")]
    pub otlp_service_name: String,
    /// Tests only (hidden): decide by the system clock plus the milliseconds written in this
    /// file (`store::clock::OffsetFileClock`), so a test moves the time of every process it
    /// started instead of waiting for it.
    #[arg(long, env = "ARTHAS_TEST_CLOCK_OFFSET_FILE", hide = true)]
    pub test_clock_offset_file: Option<PathBuf>,
}

impl ProcessArgs {
    /// The clock this process decides by: the system clock, unless a test gave
    /// `--test-clock-offset-file`.
    pub fn clock(&self) -> SharedClock {
        match &self.test_clock_offset_file {
            Some(path) => store::OffsetFileClock::new(path),
            None => store::clock::system(),
        }
    }
}
