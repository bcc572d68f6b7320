//! `arthas-loadgen`: drives relays with real WebSocket clients and measures
//! the figures of docs/ARCHITECTURE.md ("Measured figures"): deliveries per
//! second, loss, delivery latency, and (from /proc) the server processes'
//! CPU per delivery and memory per connection.
//!
//! Chat mode: `--rooms` rooms of `--members` members spread round-robin over
//! the `--url`s; every member sends `--rate` messages per second of
//! `--payload` bytes of ciphertext text for `--duration` seconds. Each
//! message carries its send time, so every recipient measures latency; every
//! expected delivery is counted, so loss is exact. Idle mode: the members
//! join and sit; the report gives the servers' RSS per connection. Joins
//! mode: only the joining (with `--members 1`, every client creates a room).
//!
//! Every mode reports the join phase: joins per second and the servers' CPU
//! per join (`server_cpu_us_per_join`): utime + stime of every `--pid`
//! (`/proc/PID/stat`) from before the first connection to after the last
//! RoomJoined, divided by the members that joined. A join is a new TCP
//! connection, the WebSocket handshake and CreateRoom or JoinRoom up to
//! RoomJoined, with the MemberJoined notices it causes. Joins mode logs
//! "joins done" once every member has joined (the sessions still open):
//! `loadtest/bench.sh` samples the servers' CPU there itself, with the same
//! function for this generator and for the k6 script's joins mode.
//!
//! Chat and idle members start reading (and answering the relays' pings)
//! the moment they have joined, not once their whole room is open: a room
//! whose last members are refused and retry with backoff can take longer to
//! fill than the relays' read timeout (40 s), and a socket nobody reads
//! answers no ping (the relay closes it with 4002). The report counts the
//! connections the servers closed, by close code (`closed_by_server`).

/// The servers' allocator: the generator shares the machine's cores with
/// the servers it measures; with glibc's malloc it spent more CPU per join
/// than the all-in-one server (58–67 µs against 49–53), with mimalloc
/// 46–60 µs (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use fastwebsockets::{handshake, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketWrite};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use protocol::client::{self, CreateRoom, JoinRoom, Sealed};
use protocol::kind;
use protocol::server::{self, Relayed, RoomCreated};
use tokio::io::WriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Every member sends `--rate` messages per second.
    Chat,
    /// Members join and sit (memory per connection).
    Idle,
    /// Members 1.. of every room leave and re-join it in a loop, on their
    /// open connections: the server's join throughput, handshakes excluded.
    Churn,
    /// Only the join phase: connect, handshake, create or join; report the
    /// joins per second and the servers' CPU per join, then leave.
    Joins,
}

/// Where a room's members connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Placement {
    /// Round-robin over the URLs: every room spans the relays.
    Spread,
    /// All of a room's members on one URL, rooms round-robin over them.
    Together,
}

#[derive(Debug, Parser)]
#[command(about = "Load generator for the Arthas relay")]
struct Args {
    /// WebSocket URLs (repeat or comma-separate); members go round-robin.
    #[arg(long, value_delimiter = ',', default_value = "ws://127.0.0.1:8080/ws")]
    url: Vec<String>,
    #[arg(long, value_enum, default_value_t = Mode::Chat)]
    mode: Mode,
    /// How a room's members are placed on the URLs.
    #[arg(long, value_enum, default_value_t = Placement::Spread)]
    placement: Placement,
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Messages per second per member (the server allows 1/s by default).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Seconds of measurement (after every member joined).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Ciphertext length in bytes.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Server process ids to sample CPU and RSS from (/proc).
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Names for the `--pid`s in the report, in the same order (e.g.
    /// `redis,gateway,relay0`).
    #[arg(long, value_delimiter = ',')]
    pid_name: Vec<String>,
    /// Connections opened at once while joining.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Rooms started per second (0: no limit, only `--connect-concurrency`),
    /// to compare a join load at another tool's rate (k6's is CPU-bound).
    #[arg(long, default_value_t = 0.0)]
    rooms_per_second: f64,
    /// Joins mode: keep the connections open this many seconds after the
    /// report is printed (so the servers can be inspected before the leaves).
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// PEM CA bundle the servers' certificates chain to, for `wss://` URLs.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// Refusals a client retries, as the web client does after a refused
    /// handshake (HTTP 503), a refused create/join (E005 "retry") or a
    /// connection that failed before its WebSocket opened: it
    /// waits 1 s doubling to 30 s, each wait jittered by ±50 %, and tries
    /// again; 0 (the default) gives up at the first refusal. For storms:
    /// `--connect-concurrency 100000 --retry-budget 8`.
    #[arg(long, default_value_t = 0)]
    retry_budget: u32,
    /// Connections to a loopback address go out from this many source
    /// addresses (127.0.0.1, 127.0.0.2, ...), round-robin. From one source
    /// to one server address the kernel has ~28k ephemeral ports, and
    /// `connect` spends ever longer finding a free one as they fill up (at
    /// 15k connections it is the generator, not the server, that sets the
    /// joins/s). The servers see that many client addresses.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    source_addresses: u8,
}

/// `--retry-budget`, for the join helpers.
static RETRY_BUDGET: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
/// Refusals retried, in total and the most by one client.
static RETRIES: AtomicU64 = AtomicU64::new(0);
static MOST_RETRIES: AtomicU64 = AtomicU64::new(0);
/// `--source-addresses`, and the connections made so far (the round-robin).
static SOURCE_ADDRESSES: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
static CONNECTIONS_MADE: AtomicU64 = AtomicU64::new(0);
/// Members that got their RoomJoined (rooms given up included).
static JOINED: AtomicU64 = AtomicU64::new(0);

/// The web client's reconnect delay for attempt `n` (1 s doubling to 30 s),
/// jittered by ±50 %.
fn backoff(n: u32) -> Duration {
    let base = (1000u64 << n.min(5)).min(30_000) as f64;
    Duration::from_millis((base * (0.5 + rand::random::<f64>())) as u64)
}

/// Connects to `url` and sends `request`, until a frame of type `want`
/// answers it; a refused or failed handshake or an E005 "retry" is retried within
/// `--retry-budget` (each on a new connection, as the web client does).
async fn enter(url: &str, request: &[u8], want: u8) -> Result<(Reader, Writer, Vec<u8>), String> {
    let budget = RETRY_BUDGET.load(Ordering::Relaxed);
    let mut attempt = 0u32;
    loop {
        let outcome = async {
            let (mut rx, mut tx) = connect(url).await?;
            send(&mut tx, request.to_vec()).await?;
            let frame = read_until(&mut rx, want).await?;
            Ok::<_, String>((rx, tx, frame))
        }
        .await;
        match outcome {
            Ok(done) => {
                MOST_RETRIES.fetch_max(attempt as u64, Ordering::Relaxed);
                return Ok(done);
            }
            Err(e)
                if attempt < budget
                    && (e.contains("503") || e.starts_with("E005") || e.starts_with(TRANSPORT)) =>
            {
                RETRIES.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The TLS client configuration of `wss://` URLs (from `--tls-ca`).
static TLS: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();

/// Shared counters.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
    /// Latencies in microseconds of deliveries during the measured window.
    latencies: Mutex<Vec<u32>>,
    /// Only deliveries of messages sent inside the window count.
    measuring: std::sync::atomic::AtomicBool,
    window_sent: AtomicU64,
    /// Deliveries the window's messages owe: each one's room size less
    /// the sender (a room some of whose members were refused is smaller).
    window_expected: AtomicU64,
    window_received: AtomicU64,
    /// Members' connections the server closed, by close code (0: a close
    /// frame without a code).
    closes: Mutex<std::collections::BTreeMap<u16, u64>>,
    /// Members' connections that ended without a close frame.
    dropped: AtomicU64,
}

struct Executor;
impl<F> hyper::rt::Executor<F> for Executor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

type Reader = FragmentCollectorRead<tokio::io::ReadHalf<TokioIo<Upgraded>>>;
type Writer = WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;

async fn connect(url: &str) -> Result<(Reader, Writer), String> {
    let (tls, rest) = match url.strip_prefix("wss://") {
        Some(rest) => (true, rest),
        None => (
            false,
            url.strip_prefix("ws://")
                .ok_or("only ws:// and wss:// URLs")?,
        ),
    };
    let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
    let stream = open(host).await.map_err(transport)?;
    stream.set_nodelay(true).map_err(transport)?;
    let request = hyper::Request::builder()
        .uri(format!("/{}", path.trim_start_matches('/')))
        .header("Host", host)
        .header("Upgrade", "websocket")
        .header("Connection", "upgrade")
        .header("Sec-WebSocket-Key", handshake::generate_key())
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let (ws, _) = if tls {
        let config = TLS.get().ok_or("wss:// needs --tls-ca")?.clone();
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned();
        let name = rustls::pki_types::ServerName::try_from(name).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(transport)?;
        handshake::client(&Executor, request, stream).await
    } else {
        handshake::client(&Executor, request, stream).await
    }
    .map_err(|e| match e.to_string() {
        // A refusal (`Retry-After`) is retried as a refusal.
        refused if refused.contains("503") => refused,
        other => transport(other),
    })?;
    let (rx, tx) = ws.split(tokio::io::split);
    Ok((FragmentCollectorRead::new(rx), tx))
}

/// A TCP connection to `host` (`address:port`); to a loopback IPv4
/// address, from the next of `--source-addresses` source addresses.
async fn open(host: &str) -> std::io::Result<TcpStream> {
    let sources = SOURCE_ADDRESSES.load(Ordering::Relaxed);
    let server = match host.parse::<std::net::SocketAddr>() {
        Ok(server @ std::net::SocketAddr::V4(v4)) if sources > 1 && v4.ip().is_loopback() => server,
        _ => return TcpStream::connect(host).await,
    };
    let n = CONNECTIONS_MADE.fetch_add(1, Ordering::Relaxed) % u64::from(sources);
    let last = u8::try_from(n).unwrap_or(0).saturating_add(1);
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, last], 0)))?;
    socket.connect(server).await
}

/// A connection that failed before the WebSocket was open (refused,
/// reset, a handshake cut off when a storm overflows the server's accept
/// queue): the web client reconnects after such a failure, so it is
/// retried within `--retry-budget` like a refusal.
fn transport(e: impl std::fmt::Display) -> String {
    format!("{TRANSPORT}{e}")
}

/// How [`transport`] errors begin.
const TRANSPORT: &str = "transport: ";

/// Reads until a frame of `want` arrives; returns its encoded bytes.
async fn read_until(rx: &mut Reader, want: u8) -> Result<Vec<u8>, String> {
    loop {
        let frame = rx
            .read_frame(&mut |_| async { Ok::<_, std::io::Error>(()) })
            .await
            .map_err(|e| e.to_string())?;
        if frame.opcode != OpCode::Binary {
            continue;
        }
        let (t, _) = server::decode(&frame.payload).map_err(|e| e.to_string())?;
        if t == want {
            return Ok(frame.payload.to_vec());
        }
        if t == kind::ERROR {
            let (_, data) = server::decode(&frame.payload).map_err(|e| e.to_string())?;
            let e: server::ErrorData = server::data(data).map_err(|e| e.to_string())?;
            return Err(format!("{} {}", e.code, e.msg));
        }
    }
}

async fn send(tx: &mut Writer, bytes: Vec<u8>) -> Result<(), String> {
    tx.write_frame(Frame::binary(Payload::Owned(bytes)))
        .await
        .map_err(|e| e.to_string())
}

/// A room's id and its members' socket halves (none when a [`Starter`]
/// took them).
type OpenRoom = (String, Vec<(Reader, Writer)>);

/// Starts a joined member's reader (which answers pings) and sender, in
/// chat and idle modes.
#[derive(Clone)]
struct Starter {
    rate: f64,
    payload: usize,
    start: Instant,
    schedule: watch::Receiver<Option<Instant>>,
    stats: Arc<Stats>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Members per room (member `n` is in room `n / members`).
    members: usize,
    /// Members joined, per room.
    room_sizes: Arc<Vec<AtomicU64>>,
}

impl Starter {
    /// Starts member `n`, which has just joined (its index in the run sets
    /// its room and its send phase).
    fn start(&self, n: usize, rx: Reader, tx: Writer) {
        let room = n / self.members.max(1);
        if let Some(size) = self.room_sizes.get(room) {
            size.fetch_add(1, Ordering::Relaxed);
        }
        let (pong_tx, pong_rx) = mpsc::channel(4);
        let phase = Duration::from_secs_f64(if self.rate > 0.0 {
            (n as f64 * 0.618_034 % 1.0) / self.rate
        } else {
            0.0
        });
        let pace = Pace {
            rate: self.rate,
            payload: self.payload,
            start: self.start,
            stop: self.schedule.clone(),
            phase,
            room_sizes: self.room_sizes.clone(),
            room,
        };
        let reader = tokio::spawn(receive(rx, pong_tx, self.stats.clone(), self.start));
        let writer = tokio::spawn(transmit(tx, pong_rx, pace, self.stats.clone()));
        if let Ok(mut t) = self.tasks.lock() {
            t.extend([reader, writer]);
        }
    }
}

/// Opens a room's members and joins them. With a `starter`, each member is
/// started the moment it has joined (so it answers pings while the rest of
/// its room joins); without, the sockets are returned unread.
async fn open_room(
    urls: &[String],
    first: usize,
    members: usize,
    starter: Option<Starter>,
) -> Result<OpenRoom, String> {
    let mut out = Vec::with_capacity(members);
    let create = CreateRoom {
        name: "m0",
        ..Default::default()
    };
    let (mut rx, tx, created) = enter(
        &urls[first % urls.len()],
        &client::encode(kind::CREATE_ROOM, &create),
        kind::ROOM_CREATED,
    )
    .await?;
    let (_, data) = server::decode(&created).map_err(|e| e.to_string())?;
    let created: RoomCreated = server::data(data).map_err(|e| e.to_string())?;
    let room_id = created.room_id.to_owned();
    read_until(&mut rx, kind::ROOM_JOINED).await?;
    JOINED.fetch_add(1, Ordering::Relaxed);
    match &starter {
        Some(s) => s.start(first, rx, tx),
        None => out.push((rx, tx)),
    }
    // The other members join at once, as a room filling up would.
    let joins: Vec<_> = (1..members)
        .map(|i| {
            let url = urls[(first + i) % urls.len()].clone();
            let room_id = room_id.clone();
            let starter = starter.clone();
            tokio::spawn(async move {
                let name = format!("m{i}");
                let join = JoinRoom {
                    room_id: &room_id,
                    name: &name,
                    ..Default::default()
                };
                let join = client::encode(kind::JOIN_ROOM, &join);
                let (rx, tx, _) = enter(&url, &join, kind::ROOM_JOINED).await?;
                JOINED.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(match starter {
                    Some(s) => {
                        s.start(first + i, rx, tx);
                        None
                    }
                    None => Some((rx, tx)),
                })
            })
        })
        .collect();
    for join in joins {
        out.extend(join.await.map_err(|e| e.to_string())??);
    }
    Ok((room_id, out))
}

/// Leaves and re-joins `room_id` until `stop`, counting completed joins.
async fn churn(
    mut rx: Reader,
    mut tx: Writer,
    room_id: String,
    name: String,
    stop: Instant,
    joins: Arc<AtomicU64>,
) {
    while Instant::now() < stop {
        let join = JoinRoom {
            room_id: &room_id,
            name: &name,
            ..Default::default()
        };
        let leave = client::encode(kind::LEAVE_ROOM, &serde_json::json!({}));
        if send(&mut tx, leave).await.is_err()
            || send(&mut tx, client::encode(kind::JOIN_ROOM, &join))
                .await
                .is_err()
        {
            return;
        }
        match read_until(&mut rx, kind::ROOM_JOINED).await {
            Ok(_) => {
                joins.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                eprintln!("churn: {e}");
                return;
            }
        }
    }
}

fn now_micros(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// Receives until the connection ends, counting deliveries and latency.
async fn receive(mut rx: Reader, pong: mpsc::Sender<Vec<u8>>, stats: Arc<Stats>, start: Instant) {
    loop {
        let pong = pong.clone();
        let frame = rx
            .read_frame(&mut move |f: Frame<'_>| {
                let pong = pong.clone();
                // fastwebsockets answers a Ping by handing us the Pong to
                // send (auto_pong): the transmit task writes it.
                let payload = f.payload.to_vec();
                let is_pong = f.opcode == OpCode::Pong;
                async move {
                    if is_pong {
                        let _ = pong.try_send(payload);
                    }
                    Ok::<_, std::io::Error>(())
                }
            })
            .await;
        let Ok(frame) = frame else {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if frame.opcode == OpCode::Close {
            let code = match *frame.payload {
                [a, b, ..] => u16::from_be_bytes([a, b]),
                _ => 0,
            };
            if let Ok(mut closes) = stats.closes.lock() {
                *closes.entry(code).or_default() += 1;
            }
            return;
        }
        if frame.opcode != OpCode::Binary {
            continue;
        }
        let Ok((t, data)) = server::decode(&frame.payload) else {
            continue;
        };
        match t {
            kind::RELAY_MESSAGE => {
                stats.received.fetch_add(1, Ordering::Relaxed);
                let Ok(m) = server::data::<Relayed>(data) else {
                    continue;
                };
                // ciphertext = "<sent micros>:<window flag>:<padding>"
                let mut parts = m.ciphertext.splitn(3, ':');
                let sent: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                let in_window = parts.next() == Some("w");
                if in_window {
                    stats.window_received.fetch_add(1, Ordering::Relaxed);
                    let latency = now_micros(start).saturating_sub(sent);
                    if let Ok(mut l) = stats.latencies.lock() {
                        l.push(latency.min(u32::MAX as u64) as u32);
                    }
                }
            }
            kind::ERROR => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// When and what a member sends.
#[derive(Clone)]
struct Pace {
    /// Messages per second (0: idle, only pongs).
    rate: f64,
    /// Ciphertext bytes.
    payload: usize,
    /// The run's time origin (latency timestamps).
    start: Instant,
    /// When sending stops; `None` until every room is open (the member
    /// answers pings meanwhile, so a long join phase loses nobody).
    stop: watch::Receiver<Option<Instant>>,
    /// Offset of this member's first message, so senders do not align.
    phase: Duration,
    /// Members joined per room, and this member's room.
    room_sizes: Arc<Vec<AtomicU64>>,
    room: usize,
}

/// Sends at `pace.rate` per second until `pace.stop`, answering pings in between.
async fn transmit(
    mut tx: Writer,
    mut pongs: mpsc::Receiver<Vec<u8>>,
    pace: Pace,
    stats: Arc<Stats>,
) {
    let Pace {
        rate,
        payload,
        start,
        mut stop,
        phase,
        room_sizes,
        room,
    } = pace;
    let stop = loop {
        if let Some(stop) = *stop.borrow_and_update() {
            break stop;
        }
        tokio::select! {
            Some(p) = pongs.recv() => {
                if tx.write_frame(Frame::pong(Payload::Owned(p))).await.is_err() { return; }
            }
            changed = stop.changed() => if changed.is_err() { return; },
            // The reader ended (the connection closed).
            else => return,
        }
    };
    let period = Duration::from_secs_f64(if rate > 0.0 { 1.0 / rate } else { 1.0 });
    let mut next = tokio::time::Instant::now() + phase;
    let padding = "x".repeat(payload.saturating_sub(24));
    loop {
        tokio::select! {
            Some(p) = pongs.recv() => {
                if tx.write_frame(Frame::pong(Payload::Owned(p))).await.is_err() { return; }
            }
            _ = tokio::time::sleep_until(next), if rate > 0.0 => {
                next += period;
                if Instant::now() >= stop { return; }
                let window = stats.measuring.load(Ordering::Relaxed);
                let ciphertext = format!("{}:{}:{}", now_micros(start), if window { "w" } else { "-" }, padding);
                let msg = Sealed { iv: "AAAAAAAAAAAAAAAA", ciphertext: &ciphertext };
                if send(&mut tx, client::encode(kind::SEND_MESSAGE, &msg)).await.is_err() { return; }
                stats.sent.fetch_add(1, Ordering::Relaxed);
                if window {
                    stats.window_sent.fetch_add(1, Ordering::Relaxed);
                    let size = room_sizes.get(room).map_or(0, |s| s.load(Ordering::Relaxed));
                    stats.window_expected.fetch_add(size.saturating_sub(1), Ordering::Relaxed);
                }
            }
            // The reader ended and nothing is to be sent (idle members).
            else => return,
        }
    }
}

/// utime + stime of a process, in clock ticks, and its RSS in KiB.
fn proc_sample(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let cpu = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((cpu, rss))
}

fn sample_all(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .filter_map(|p| proc_sample(*p))
        .fold((0, 0), |(c, r), (c2, r2)| (c + c2, r + r2))
}

/// utime + stime of each process, in clock ticks (0 for one that is gone).
fn per_pid_cpu(pids: &[u32]) -> Vec<u64> {
    pids.iter()
        .map(|p| proc_sample(*p).map_or(0, |s| s.0))
        .collect()
}

/// CPU seconds each process spent since `before` (from [`per_pid_cpu`]).
fn cpu_since(pids: &[u32], before: &[u64], ticks_per_sec: f64) -> Vec<f64> {
    per_pid_cpu(pids)
        .iter()
        .zip(before)
        .map(|(now, then)| now.saturating_sub(*then) as f64 / ticks_per_sec)
        .collect()
}

/// The join phase: joins per second and the servers' CPU per join, in
/// total and by process.
fn join_report(args: &Args, joined: usize, secs: f64, cpu: &[f64]) -> serde_json::Value {
    let total: f64 = cpu.iter().sum();
    let per_join = |c: f64| {
        if joined > 0 {
            (c * 1e6 / joined as f64 * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    let by_process: Vec<serde_json::Value> = args
        .pid
        .iter()
        .zip(cpu)
        .enumerate()
        .map(|(i, (pid, c))| {
            serde_json::json!({
                "pid": pid,
                "name": args.pid_name.get(i).cloned().unwrap_or_else(|| pid.to_string()),
                "cpu_seconds": c,
                "cpu_us_per_join": per_join(*c),
            })
        })
        .collect();
    serde_json::json!({
        "joins": joined,
        "seconds": secs,
        "joins_per_second": if secs > 0.0 { joined as f64 / secs } else { 0.0 },
        "server_cpu_seconds": total,
        "server_cpu_us_per_join": per_join(total),
        "refusals_retried": RETRIES.load(Ordering::Relaxed),
        "most_refusals_of_one_client": MOST_RETRIES.load(Ordering::Relaxed),
        "by_process": by_process,
    })
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    RETRY_BUDGET.store(args.retry_budget, Ordering::Relaxed);
    SOURCE_ADDRESSES.store(args.source_addresses, Ordering::Relaxed);
    if args.url.is_empty() {
        eprintln!("at least one --url is needed");
        std::process::exit(2);
    }
    if let Some(ca) = &args.tls_ca {
        match edge::tls::client_config(Some(ca), None) {
            Ok(config) => {
                let _ = TLS.set(config);
            }
            Err(e) => {
                eprintln!("--tls-ca: {e}");
                std::process::exit(2);
            }
        }
    }
    let ticks_per_sec = 100.0; // Linux USER_HZ
    let (_, rss_before) = sample_all(&args.pid);
    let join_cpu0 = per_pid_cpu(&args.pid);
    let start = Instant::now();
    let stats = Arc::new(Stats::default());

    let rate = if matches!(args.mode, Mode::Idle | Mode::Joins) {
        0.0
    } else {
        args.rate
    };
    // Chat and idle members start reading (and answering pings) as soon as
    // they have joined; they send once every room is open (`go`).
    let (go, schedule) = watch::channel(None);
    let member_tasks = Arc::new(Mutex::new(Vec::new()));
    let starter = matches!(args.mode, Mode::Chat | Mode::Idle).then(|| Starter {
        rate,
        payload: args.payload,
        start,
        schedule,
        stats: stats.clone(),
        tasks: member_tasks.clone(),
        members: args.members,
        room_sizes: Arc::new((0..args.rooms).map(|_| AtomicU64::new(0)).collect()),
    });

    // Join every room, a few at a time.
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    let mut joins = Vec::new();
    for r in 0..args.rooms {
        let urls = match args.placement {
            Placement::Spread => args.url.clone(),
            Placement::Together => vec![args.url[r % args.url.len()].clone()],
        };
        let permit = semaphore.clone();
        let members = args.members;
        let starter = starter.clone();
        let at = (args.rooms_per_second > 0.0).then(|| {
            tokio::time::Instant::from_std(start)
                + Duration::from_secs_f64(r as f64 / args.rooms_per_second)
        });
        joins.push(tokio::spawn(async move {
            if let Some(at) = at {
                tokio::time::sleep_until(at).await;
            }
            let _p = permit.acquire_owned().await;
            open_room(&urls, r * members, members, starter).await
        }));
    }
    drop(starter);
    let mut rooms = Vec::new();
    for j in joins {
        match j.await {
            Ok(Ok(room)) => rooms.push(room),
            Ok(Err(e)) => eprintln!("join failed: {e}"),
            Err(e) => eprintln!("join task failed: {e}"),
        }
    }
    let joined = JOINED.load(Ordering::Relaxed) as usize;
    let join_secs = start.elapsed().as_secs_f64();
    let join_cpu = cpu_since(&args.pid, &join_cpu0, ticks_per_sec);
    eprintln!(
        "{joined} members in {} rooms joined in {join_secs:.1}s",
        rooms.len()
    );
    let join_report = join_report(&args, joined, join_secs, &join_cpu);
    if args.mode == Mode::Joins {
        println!(
            "{}",
            serde_json::to_string_pretty(&join_report).unwrap_or_default()
        );
        eprintln!("joins done");
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
        return;
    }

    let stop = Instant::now() + Duration::from_secs(args.warmup + args.duration);
    let _ = go.send(Some(stop));
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = member_tasks
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default();
    let churned = Arc::new(AtomicU64::new(0));
    let mut creators = Vec::new();
    // Churn: the rooms came back with their members' sockets.
    for (room_id, members) in rooms {
        for (k, (rx, tx)) in members.into_iter().enumerate() {
            if k == 0 {
                // The creator stays, so the room never empties.
                creators.push((rx, tx));
            } else {
                let name = format!("c{k}");
                let joins = churned.clone();
                tasks.push(tokio::spawn(churn(
                    rx,
                    tx,
                    room_id.clone(),
                    name,
                    stop,
                    joins,
                )));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let (cpu0, _) = sample_all(&args.pid);
    let per_pid0: Vec<u64> = args
        .pid
        .iter()
        .map(|p| proc_sample(*p).map_or(0, |s| s.0))
        .collect();
    let (self0, _) = proc_sample(std::process::id()).unwrap_or((0, 0));
    let received0 = stats.received.load(Ordering::Relaxed);
    let churned0 = churned.load(Ordering::Relaxed);
    stats.measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    stats.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, rss_after) = sample_all(&args.pid);
    let per_pid_cpu: Vec<f64> = args
        .pid
        .iter()
        .zip(&per_pid0)
        .map(|(p, c0)| {
            proc_sample(*p).map_or(0, |s| s.0).saturating_sub(*c0) as f64 / ticks_per_sec
        })
        .collect();
    let (self1, _) = proc_sample(std::process::id()).unwrap_or((0, 0));
    let received = stats.received.load(Ordering::Relaxed) - received0;
    let churned_joins = churned.load(Ordering::Relaxed) - churned0;
    // Let in-flight window messages land before counting loss.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let expected = stats.window_expected.load(Ordering::Relaxed);
    let window_received = stats.window_received.load(Ordering::Relaxed);
    let mut lat = stats
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    let cpu_secs = (cpu1 - cpu0) as f64 / ticks_per_sec;
    let deliveries_per_sec = received as f64 / elapsed;
    let report = serde_json::json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "urls": args.url,
        "rooms": args.rooms,
        "members_per_room": args.members,
        "connections": joined,
        "join_seconds": join_secs,
        "churn_joins_per_second": churned_joins as f64 / elapsed,
        "joins_per_second": joined as f64 / join_secs,
        "join_phase": join_report,
        "rate_per_member": rate,
        "payload_bytes": args.payload,
        "measured_seconds": elapsed,
        "deliveries_per_second": deliveries_per_sec,
        "messages_sent_in_window": stats.window_sent.load(Ordering::Relaxed),
        "expected_deliveries": expected,
        "received_deliveries": window_received,
        "lost": expected.saturating_sub(window_received),
        "error_frames": stats.errors.load(Ordering::Relaxed),
        "latency_us": { "p50": percentile(&lat, 0.5), "p99": percentile(&lat, 0.99), "max": lat.last().copied().unwrap_or(0) },
        "server_cpu_seconds": cpu_secs,
        "server_cpu_seconds_by_pid": args.pid.iter().zip(&per_pid_cpu).map(|(p, c)| serde_json::json!({"pid": p, "cpu_seconds": c})).collect::<Vec<_>>(),
        "loadgen_cpu_seconds": (self1 - self0) as f64 / ticks_per_sec,
        "server_cpu_us_per_delivery": if received > 0 { cpu_secs * 1e6 / received as f64 } else { 0.0 },
        "server_rss_kib_before": rss_before,
        "server_rss_kib_after": rss_after,
        "server_rss_bytes_per_connection": if joined > 0 { (rss_after as f64 - rss_before as f64) * 1024.0 / joined as f64 } else { 0.0 },
        "closed_by_server": stats.closes.lock().map(|c| c.iter().map(|(code, n)| (code.to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>()).unwrap_or_default(),
        "connections_dropped": stats.dropped.load(Ordering::Relaxed),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    for t in tasks {
        t.abort();
    }
    drop(creators);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_to_loopback_go_out_from_each_source_address_in_turn() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap().to_string();
        SOURCE_ADDRESSES.store(3, Ordering::Relaxed);
        let mut sources = Vec::new();
        for _ in 0..4 {
            let client = open(&server).await.unwrap();
            let (_, peer) = listener.accept().await.unwrap();
            assert_eq!(client.local_addr().unwrap(), peer);
            sources.push(peer.ip().to_string());
        }
        let first: u8 = sources[0].rsplit('.').next().unwrap().parse().unwrap();
        let expected: Vec<String> = (0..4)
            .map(|i| format!("127.0.0.{}", (first - 1 + i) % 3 + 1))
            .collect();
        assert_eq!(sources, expected);
    }
}
