//! The bus's connections: our own RESP3 connection that only sends
//! `HELLO 3`, SUBSCRIBE, UNSUBSCRIBE, PUBLISH and PING (on a Redis Cluster,
//! [`Channels::Sharded`]: SSUBSCRIBE, SUNSUBSCRIBE and SPUBLISH, one
//! connection per master; see [`cluster_bus`](super::cluster_bus)), plus the
//! EVALSHA of the store's two hot scripts (a join, a leave: their room's
//! keys live on the server the connection reaches), and reads the message
//! pushes and the answers with the [`resp`] reader. RESP3 lets
//! a subscribed connection run any command, so a relay's publishes and
//! joins share the connection that carries its subscriptions: no
//! general-purpose client on the delivery path or a join's.
//!
//! One task owns the connection. It reads into one reusable buffer, parses
//! every complete frame of a read in one pass, splits the parsed bytes off
//! the buffer once and hands each message's payload to the relay's sink
//! copied once into its own `Bytes` (see [`READ_BUFFER`]); commands
//! reach it through a bounded queue, every command waiting there when the
//! task wakes is written with one write, and their answers are matched in
//! order (a SUBSCRIBE of n channels is confirmed by n `subscribe` pushes, a
//! PUBLISH by its receiver count, an EVALSHA by its integer or bulk string
//! or an error (which ends only that command), a PING by PONG; an
//! `unsubscribe` push for a channel the oldest UNSUBSCRIBE did not name is
//! the server dropping it: [`BusEvent::ChannelDropped`] when the room is
//! still wanted).
//!
//! The connection does not reconnect: when it fails (the server closed it,
//! a read or write error, a malformed frame, an answer out of order)
//! it marks the bus down, tells the supervisor ([`BusEvent::ConnectionLost`])
//! and ends; the supervisor ([`bus`](super::bus),
//! [`cluster_bus`](super::cluster_bus)) opens a new one and subscribes every
//! hosted room again. A retired connection (replaced after a failover, or
//! suspected after a failed probe) first delivers what its server counted
//! for it, then delivers nothing more and closes ([`Subscriber::retire`]).
//!
//! TLS (`rediss://`) uses rustls with the material of [`RedisTls`]: the
//! configured CA or the system's roots, and the client certificate if any,
//! as the engine's other connections.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use redis::{ConnectionAddr, ConnectionInfo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::timeout;

use super::resp::{self, Frame};
use super::{keys, BusEvent, BusShared, RedisTls};
use crate::bus::{BusError, BusMessage};

/// The read buffer's block: 16 KiB, or the size of the incomplete frame it
/// holds when larger (up to [`resp::MAX_FRAME_LEN`]). Successive reads fill
/// one block; a new one is allocated when less than [`MIN_READ_SPACE`] is
/// left. Each message's payload is copied out once (one allocation per
/// push, shared by every local recipient), so a slow client's queue holds
/// its messages and never a block: memory stays what the outbound queues'
/// byte budgets say. A read of one block carries ~50 pushes of 300 bytes.
pub const READ_BUFFER: usize = 16 * 1024;

/// Least free space a read is given before a new block is allocated.
pub const MIN_READ_SPACE: usize = 1024;

/// Commands (publishes, mostly) waiting to be written to the connection; a
/// caller waits for room within its own timeout (the publish timeout).
pub const COMMAND_QUEUE: usize = 1024;

/// Commands written and not yet answered. At the limit the task writes
/// nothing more until answers arrive (the queue above fills and callers
/// wait within their timeouts); a server that stopped answering fails the
/// supervisor's PING probe, which replaces the connection.
pub const MAX_UNANSWERED: usize = 1024;

/// Most bytes of queued commands gathered into one write.
pub const WRITE_BATCH: usize = 64 * 1024;

/// A byte stream to Redis (TCP, TLS or a Unix socket).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Which channels a connection subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channels {
    /// SUBSCRIBE/UNSUBSCRIBE (standalone, Sentinel).
    Plain,
    /// SSUBSCRIBE/SUNSUBSCRIBE: shard channels on a Redis Cluster master.
    Sharded,
}

/// What a command is answered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Subscribe,
    Unsubscribe,
    Publish,
    Ping,
    /// EVALSHA of a store script (a join or a leave: the store's hot path).
    Script,
}

impl Command {
    fn name(self, channels: Channels) -> &'static [u8] {
        match (self, channels) {
            (Command::Subscribe, Channels::Plain) => b"SUBSCRIBE",
            (Command::Subscribe, Channels::Sharded) => b"SSUBSCRIBE",
            (Command::Unsubscribe, Channels::Plain) => b"UNSUBSCRIBE",
            (Command::Unsubscribe, Channels::Sharded) => b"SUNSUBSCRIBE",
            (Command::Publish, Channels::Plain) => b"PUBLISH",
            (Command::Publish, Channels::Sharded) => b"SPUBLISH",
            (Command::Ping, _) => b"PING",
            (Command::Script, _) => b"EVALSHA",
        }
    }
}

/// What a command was answered with.
#[derive(Debug)]
pub(crate) enum Reply {
    /// PUBLISH's receiver count, or a script's integer.
    Integer(i64),
    /// A script's bulk string (a slice of the block it was read into).
    Bulk(Bytes),
    /// A (un)subscription confirmed, a PONG.
    Done,
}

type Answer = oneshot::Sender<Result<Reply, String>>;

struct Request {
    command: Command,
    /// SUBSCRIBE's and UNSUBSCRIBE's channels.
    channels: Vec<String>,
    /// PUBLISH and EVALSHA: the whole command, encoded by the caller.
    encoded: Bytes,
    answer: Answer,
}

/// A command written, waiting for its confirmations.
struct Pending {
    command: Command,
    /// Confirmations still expected (one per channel; one for PING).
    remaining: usize,
    /// An UNSUBSCRIBE's channels not yet confirmed (empty for the others):
    /// an `unsubscribe` push for another channel is the server's own.
    channels: Vec<String>,
    answer: Option<Answer>,
}

/// Opens subscriber connections (one TLS configuration for all of them).
pub(crate) struct Connector {
    tls: RedisTls,
    config: OnceLock<Arc<rustls::ClientConfig>>,
}

impl Connector {
    pub(crate) fn new(tls: RedisTls) -> Connector {
        Connector {
            tls,
            config: OnceLock::new(),
        }
    }

    /// The rustls configuration, built on first use.
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some(config) = self.config.get() {
            return Ok(config.clone());
        }
        let config = Arc::new(rustls_config(&self.tls)?);
        Ok(self.config.get_or_init(|| config).clone())
    }

    /// Connects to `info`'s server and says `HELLO 3` (with its
    /// credentials), within `connect_timeout`; `retire_wait` bounds its
    /// retirement ([`Subscriber::retire`]).
    pub(crate) async fn connect(
        &self,
        info: &ConnectionInfo,
        channels: Channels,
        connect_timeout: Duration,
        retire_wait: Duration,
        shared: Arc<BusShared>,
    ) -> Result<Subscriber, BusError> {
        let settings = info.redis_settings();
        let hello = hello(settings.username(), settings.password());
        let opened = timeout(connect_timeout, async {
            let mut stream = self.open(info.addr()).await?;
            stream
                .write_all(&hello)
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut buf = BytesMut::with_capacity(READ_BUFFER);
            loop {
                match resp::parse(&buf).map_err(|e| e.to_string())? {
                    Some((Frame::Reply, used)) => {
                        let _ = buf.split_to(used);
                        return Ok((stream, buf));
                    }
                    Some((Frame::Error { text }, _)) => {
                        return Err(format!("HELLO: {}", String::from_utf8_lossy(&buf[text])))
                    }
                    Some(_) => return Err("HELLO: unexpected answer".into()),
                    None => {}
                }
                buf.reserve(READ_BUFFER);
                if stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| format!("read: {e}"))?
                    == 0
                {
                    return Err("closed by the server".into());
                }
            }
        })
        .await;
        let (stream, buf) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => return Err(BusError(format!("subscriber connection: {e}"))),
            Err(_) => return Err(BusError("subscriber connection: no answer in time".into())),
        };
        let (requests, queue) = mpsc::channel(COMMAND_QUEUE);
        let live = Arc::new(AtomicBool::new(true));
        let retired = Arc::new(Notify::new());
        let (ended_tx, ended) = watch::channel(false);
        tokio::spawn(
            Reader {
                stream,
                buf,
                channels,
                shared,
                live: live.clone(),
                frames: Vec::new(),
                pending: VecDeque::new(),
                out: Vec::new(),
                retiring: false,
                retire_wait,
                ended: ended_tx,
            }
            .run(queue, retired.clone()),
        );
        Ok(Subscriber {
            requests,
            live,
            retired,
            ended,
            retire_wait,
            channels,
        })
    }

    async fn open(&self, addr: &ConnectionAddr) -> Result<Box<dyn Io>, String> {
        match addr {
            ConnectionAddr::Tcp(host, port) => Ok(Box::new(tcp(host, *port).await?)),
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => {
                if *insecure {
                    return Err("insecure TLS is not supported".into());
                }
                let name = ServerName::try_from(host.clone())
                    .map_err(|e| format!("TLS server name {host}: {e}"))?;
                let tcp = tcp(host, *port).await?;
                let tls = tokio_rustls::TlsConnector::from(self.tls_config()?)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                Ok(Box::new(tls))
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Ok(Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| format!("connect {}: {e}", path.display()))?,
            )),
            other => Err(format!("unsupported address {other}")),
        }
    }
}

async fn tcp(host: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The rustls client configuration for `rediss://`: the configured CA (or
/// the system's roots, honouring `SSL_CERT_FILE`) and client certificate.
fn rustls_config(tls: &RedisTls) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("redis CA: {e}"))?;
                roots.add(cert).map_err(|e| format!("redis CA: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if let Some(e) = found.errors.first() {
                return Err(format!("system roots: {e}"));
            }
            for cert in found.certs {
                roots.add(cert).map_err(|e| format!("system roots: {e}"))?;
            }
        }
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    match &tls.client_pem {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("redis client certificate: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("redis client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("redis client certificate: {e}"))
        }
    }
}

/// `HELLO 3`, with `AUTH` when there is a password.
fn hello(username: Option<&str>, password: Option<&str>) -> Vec<u8> {
    let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
    if let Some(password) = password {
        args.extend([
            b"AUTH".as_slice(),
            username.unwrap_or("default").as_bytes(),
            password.as_bytes(),
        ]);
    }
    let mut out = Vec::new();
    encode(&mut out, &args);
    out
}

/// Appends a command (an array of bulk strings) to `out`.
fn encode<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    put_header(out, b'*', args.len());
    for arg in args {
        put_bulk(out, &[arg.as_ref()]);
    }
}

/// `<marker><n>\r\n`: an array's or a bulk string's length line.
fn put_header(out: &mut impl BufMut, marker: u8, n: usize) {
    out.put_u8(marker);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

/// One bulk string made of `parts`, concatenated.
fn put_bulk(out: &mut impl BufMut, parts: &[&[u8]]) {
    put_header(out, b'$', parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.put_slice(part);
    }
    out.put_slice(b"\r\n");
}

/// `PUBLISH arthas:{<room_id>} <message>` (or SPUBLISH), encoded in one
/// buffer: the channel as [`keys::channel`] names it and the message as
/// [`BusMessage::to_wire`] writes it, neither built on its own.
fn encode_publish(name: &[u8], room_id: &str, message: &BusMessage) -> Bytes {
    let payload_len = message.wire_len();
    let mut out = BytesMut::with_capacity(payload_len + room_id.len() + 64);
    put_header(&mut out, b'*', 3);
    put_bulk(&mut out, &[name]);
    put_bulk(
        &mut out,
        &[keys::CHANNEL_PREFIX.as_bytes(), room_id.as_bytes(), b"}"],
    );
    put_header(&mut out, b'$', payload_len);
    message.write_wire(&mut out);
    out.put_slice(b"\r\n");
    out.freeze()
}

/// `EVALSHA <sha> <number of keys> <keys...> <args...>` in one buffer.
pub(crate) fn encode_script<K: AsRef<[u8]>>(sha: &str, keys: &[K], args: &[&[u8]]) -> Bytes {
    let parts = keys.iter().map(AsRef::as_ref).chain(args.iter().copied());
    let len: usize = parts.clone().map(|a| a.len() + 16).sum();
    let mut out = BytesMut::with_capacity(len + sha.len() + 48);
    put_header(&mut out, b'*', 3 + keys.len() + args.len());
    put_bulk(&mut out, &[b"EVALSHA"]);
    put_bulk(&mut out, &[sha.as_bytes()]);
    put_bulk(
        &mut out,
        &[itoa::Buffer::new().format(keys.len()).as_bytes()],
    );
    for part in parts {
        put_bulk(&mut out, &[part]);
    }
    out.freeze()
}

/// A handle on a subscriber connection (cheap to clone).
#[derive(Clone)]
pub(crate) struct Subscriber {
    requests: mpsc::Sender<Request>,
    /// Cleared when the connection ends or is retired: it delivers nothing
    /// more.
    live: Arc<AtomicBool>,
    /// Tells the connection's task to close.
    retired: Arc<Notify>,
    /// Set when the connection's task ended.
    ended: watch::Receiver<bool>,
    /// How long a retirement may take.
    retire_wait: Duration,
    /// Plain (PUBLISH) or sharded (SPUBLISH) channels.
    channels: Channels,
}

impl Subscriber {
    /// Whether `other` is a handle on the same connection.
    pub(crate) fn same(&self, other: &Subscriber) -> bool {
        Arc::ptr_eq(&self.live, &other.live)
    }

    /// Whether the connection ended (failed or retired).
    pub(crate) fn is_closed(&self) -> bool {
        !self.live.load(Ordering::Acquire) || self.requests.is_closed()
    }

    /// Closes the connection, after delivering every push its server
    /// counted for it: the connection sends UNSUBSCRIBE (every channel) and
    /// PING, delivers what arrives before the PONG, then closes. Redis runs
    /// one connection's commands in order, so each PUBLISH it ran before the
    /// UNSUBSCRIBE (its publisher was answered "received by this relay")
    /// reaches the relay, and a PUBLISH after it no longer counts this relay
    /// (its publisher sees fewer receivers and its sender is told). Waits at
    /// most `retire_wait` (a dead server: at once); no
    /// [`BusEvent::ConnectionLost`] follows.
    pub(crate) async fn retire(&self) {
        self.retired.notify_one();
        let mut ended = self.ended.clone();
        // The task bounds its own wait; this bound only guards against a bug.
        let _ = timeout(self.retire_wait * 2, ended.wait_for(|ended| *ended)).await;
    }

    /// Subscribes `channels`; returns once Redis confirmed every one.
    pub(crate) async fn subscribe(
        &self,
        channels: Vec<String>,
        wait: Duration,
    ) -> Result<(), String> {
        self.confirmed(Command::Subscribe, channels, wait).await
    }

    /// Unsubscribes `channels`; returns once Redis confirmed every one.
    pub(crate) async fn unsubscribe(
        &self,
        channels: Vec<String>,
        wait: Duration,
    ) -> Result<(), String> {
        self.confirmed(Command::Unsubscribe, channels, wait).await
    }

    /// A (un)subscription of `channels` (none: nothing to send).
    async fn confirmed(
        &self,
        command: Command,
        channels: Vec<String>,
        wait: Duration,
    ) -> Result<(), String> {
        if channels.is_empty() {
            return Ok(());
        }
        self.call(command, channels, Bytes::new(), wait)
            .await
            .map(drop)
    }

    /// Hot path: PUBLISH (SPUBLISH on a shard connection) `payload` on
    /// `room_id`'s channel; returns how many subscriptions received it. The
    /// command is encoded here, in the caller's task, into one buffer.
    pub(crate) async fn publish(
        &self,
        room_id: &str,
        message: &BusMessage,
        wait: Duration,
    ) -> Result<i64, String> {
        let encoded = encode_publish(Command::Publish.name(self.channels), room_id, message);
        match self
            .call(Command::Publish, Vec::new(), encoded, wait)
            .await?
        {
            Reply::Integer(receivers) => Ok(receivers),
            other => Err(format!("unexpected answer to a publish: {other:?}")),
        }
    }

    /// A store script's EVALSHA (`encoded` by [`encode_script`]): its
    /// answer, or the error Redis gave (NOSCRIPT, MOVED, READONLY: the
    /// script did not run). Never sent twice: without an answer the caller
    /// cannot know whether it ran.
    pub(crate) async fn script(&self, encoded: Bytes, wait: Duration) -> Result<Reply, String> {
        self.call(Command::Script, Vec::new(), encoded, wait).await
    }

    /// One round trip.
    pub(crate) async fn ping(&self, wait: Duration) -> Result<(), String> {
        self.call(Command::Ping, Vec::new(), Bytes::new(), wait)
            .await
            .map(drop)
    }

    async fn call(
        &self,
        command: Command,
        channels: Vec<String>,
        encoded: Bytes,
        wait: Duration,
    ) -> Result<Reply, String> {
        let (answer, answered) = oneshot::channel();
        let request = Request {
            command,
            channels,
            encoded,
            answer,
        };
        let outcome = timeout(wait, async {
            self.requests
                .send(request)
                .await
                .map_err(|_| "connection closed".to_string())?;
            answered
                .await
                .map_err(|_| "connection closed".to_string())?
        })
        .await;
        match outcome {
            Ok(outcome) => outcome,
            Err(_) => Err("no answer in time".into()),
        }
    }
}

/// The connection's task.
struct Reader {
    stream: Box<dyn Io>,
    /// The read buffer: parsed frames are split off its front.
    buf: BytesMut,
    /// Plain or shard channels.
    channels: Channels,
    shared: Arc<BusShared>,
    live: Arc<AtomicBool>,
    /// The frames of one read (reused).
    frames: Vec<Frame>,
    /// Commands written, oldest first.
    pending: VecDeque<Pending>,
    /// The commands being written (reused).
    out: Vec<u8>,
    /// Retiring: only pushes and the answers of publishes, scripts and pings
    /// matter.
    retiring: bool,
    /// How long a retirement may take.
    retire_wait: Duration,
    /// Set when the task ends.
    ended: watch::Sender<bool>,
}

impl Reader {
    async fn run(mut self, mut queue: mpsc::Receiver<Request>, retired: Arc<Notify>) {
        // Registered once, not once per wake-up.
        let mut retired = std::pin::pin!(retired.notified());
        let outcome: Result<(), String> = loop {
            if self.buf.capacity() - self.buf.len() < MIN_READ_SPACE {
                // Doubles for a large frame (no quadratic copying).
                self.buf.reserve(READ_BUFFER.max(self.buf.len()));
            }
            // Commands first: a steady stream of pushes must not hold them
            // back. None is taken while MAX_UNANSWERED are unanswered.
            let room = self.pending.len() < MAX_UNANSWERED;
            tokio::select! {
                biased;
                _ = &mut retired => break self.retire().await,
                request = queue.recv(), if room => match request {
                    // Every handle is gone: the engine was dropped.
                    None => break Ok(()),
                    Some(request) => {
                        if let Err(e) = self.write(request, &mut queue).await {
                            break Err(e);
                        }
                    }
                },
                read = self.stream.read_buf(&mut self.buf) => match read {
                    Ok(0) => break Err("closed by the server".into()),
                    Ok(_) => {
                        if let Err(e) = self.frames() {
                            break Err(e);
                        }
                    }
                    Err(e) => break Err(format!("read: {e}")),
                },
            }
        };
        // Unanswered commands fail now (their senders are dropped).
        self.pending.clear();
        let _ = self.ended.send(true);
        if self.live.swap(false, Ordering::AcqRel) {
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "redis bus: subscriber connection lost");
                self.shared.set_down();
                self.shared.report(BusEvent::ConnectionLost);
            }
        }
    }

    /// The retirement ([`Subscriber::retire`]): UNSUBSCRIBE and PING, then
    /// pushes are delivered until the PONG, within `retire_wait`. Publishes,
    /// scripts and pings already written are still answered (a publish Redis
    /// ran was received by whoever it counted; a script's caller learns what
    /// it did); subscriptions in flight are abandoned (their callers see the
    /// connection closed).
    async fn retire(&mut self) -> Result<(), String> {
        self.pending.retain(|p| {
            matches!(
                p.command,
                Command::Publish | Command::Ping | Command::Script
            )
        });
        self.pending.push_back(Pending {
            command: Command::Ping,
            remaining: 1,
            channels: Vec::new(),
            answer: None,
        });
        self.retiring = true;
        self.out.clear();
        encode(&mut self.out, &[Command::Unsubscribe.name(self.channels)]);
        encode(&mut self.out, &[b"PING".as_slice()]);
        let drained = timeout(self.retire_wait, async {
            self.stream
                .write_all(&self.out)
                .await
                .map_err(|e| format!("write: {e}"))?;
            while !self.pending.is_empty() {
                if self.buf.capacity() - self.buf.len() < MIN_READ_SPACE {
                    self.buf.reserve(READ_BUFFER.max(self.buf.len()));
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) => return Err("closed by the server".to_string()),
                    Ok(_) => self.frames()?,
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            Ok(())
        })
        .await;
        if let Ok(Err(e)) | Err(e) = drained.map_err(|_| "no answer in time".to_string()) {
            tracing::debug!(error = %e, "redis bus: a retired subscriber connection closed before its last answer");
        }
        Ok(())
    }

    /// Writes `first` and every command queued behind it (up to
    /// [`WRITE_BATCH`] bytes and [`MAX_UNANSWERED`] unanswered) with one
    /// write.
    async fn write(
        &mut self,
        first: Request,
        queue: &mut mpsc::Receiver<Request>,
    ) -> Result<(), String> {
        self.out.clear();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            if matches!(request.command, Command::Publish | Command::Script) {
                self.out.extend_from_slice(&request.encoded);
            } else {
                let name: &[u8] = request.command.name(self.channels);
                let args: Vec<&[u8]> = std::iter::once(name)
                    .chain(request.channels.iter().map(|c| c.as_bytes()))
                    .collect();
                encode(&mut self.out, &args);
            }
            let remaining = request.channels.len().max(1);
            let channels = match request.command {
                Command::Unsubscribe => request.channels,
                Command::Subscribe | Command::Publish | Command::Ping | Command::Script => {
                    Vec::new()
                }
            };
            self.pending.push_back(Pending {
                command: request.command,
                remaining,
                channels,
                answer: Some(request.answer),
            });
            if self.out.len() < WRITE_BATCH && self.pending.len() < MAX_UNANSWERED {
                next = queue.try_recv().ok();
            }
        }
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// Handles every complete frame in the buffer, in one pass: the parsed
    /// bytes are split off once and each payload is a slice of them.
    fn frames(&mut self) -> Result<(), String> {
        let mut used = 0;
        let mut failure = None;
        loop {
            match resp::parse(&self.buf[used..]) {
                Ok(Some((frame, len))) => {
                    self.frames.push(shift(frame, used));
                    used += len;
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if used > 0 {
            let chunk = self.buf.split_to(used).freeze();
            let live = self.live.load(Ordering::Acquire);
            let mut frames = std::mem::take(&mut self.frames);
            for frame in frames.drain(..) {
                if self.retiring
                    && matches!(frame, Frame::Subscribed { .. } | Frame::Unsubscribed { .. })
                {
                    // The retirement's UNSUBSCRIBE, or subscriptions abandoned.
                    continue;
                }
                match frame {
                    Frame::Message { channel, payload } => {
                        if live {
                            // One copy per push, shared by every recipient: a slice
                            // of `chunk` would pin its whole block for as long as the
                            // slowest recipient queues the message.
                            let payload = Bytes::copy_from_slice(&chunk[payload]);
                            self.shared.deliver(&chunk[channel], payload);
                        }
                    }
                    Frame::Subscribed { .. } => self.confirm(Command::Subscribe, Reply::Done)?,
                    Frame::Unsubscribed { channel } => {
                        let requested = match &channel {
                            None => self.expects(Command::Unsubscribe),
                            Some(channel) => self.requested(&chunk[channel.clone()]),
                        };
                        if requested {
                            self.confirm(Command::Unsubscribe, Reply::Done)?;
                        } else if let Some(channel) = channel {
                            // Not ours: the server dropped a channel.
                            if let Some(room_id) = keys::room_of_channel(&chunk[channel]) {
                                if self.shared.rooms().contains(room_id) {
                                    self.shared
                                        .report(BusEvent::ChannelDropped(room_id.to_owned()));
                                }
                            }
                        }
                    }
                    Frame::Reply => self.confirm(Command::Ping, Reply::Done)?,
                    Frame::Integer(n) => {
                        let command = if self.expects(Command::Script) {
                            Command::Script
                        } else {
                            Command::Publish
                        };
                        self.confirm(command, Reply::Integer(n))?
                    }
                    Frame::Bulk { data } => {
                        self.confirm(Command::Script, Reply::Bulk(chunk.slice(data)))?
                    }
                    Frame::Error { text } => {
                        let text = String::from_utf8_lossy(&chunk[text]).into_owned();
                        let Some(pending) = self.pending.pop_front() else {
                            return Err(format!("unexpected error: {text}"));
                        };
                        if let Some(answer) = pending.answer {
                            let _ = answer.send(Err(text));
                        }
                    }
                    Frame::OtherPush => {}
                }
            }
            self.frames = frames;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn expects(&self, command: Command) -> bool {
        self.pending.front().is_some_and(|p| p.command == command)
    }

    /// Whether the oldest command is an UNSUBSCRIBE naming `channel` (then
    /// struck off its list): an `unsubscribe` push for it is its answer.
    fn requested(&mut self, channel: &[u8]) -> bool {
        let Some(pending) = self.pending.front_mut() else {
            return false;
        };
        if pending.command != Command::Unsubscribe {
            return false;
        }
        match pending
            .channels
            .iter()
            .position(|c| c.as_bytes() == channel)
        {
            Some(i) => {
                pending.channels.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// One confirmation of the oldest command, which must be a `command`;
    /// the last one answers it with `value`.
    fn confirm(&mut self, command: Command, value: Reply) -> Result<(), String> {
        let Some(pending) = self.pending.front_mut() else {
            return Err(format!("unexpected {command:?} confirmation"));
        };
        if pending.command != command {
            return Err(format!(
                "{command:?} confirmation while waiting for {:?}",
                pending.command
            ));
        }
        pending.remaining = pending.remaining.saturating_sub(1);
        if pending.remaining == 0 {
            if let Some(answer) = self.pending.pop_front().and_then(|p| p.answer) {
                let _ = answer.send(Ok(value));
            }
        }
        Ok(())
    }
}

/// `frame` with its ranges moved `by` bytes on.
fn shift(frame: Frame, by: usize) -> Frame {
    let at = |r: std::ops::Range<usize>| r.start + by..r.end + by;
    match frame {
        Frame::Message { channel, payload } => Frame::Message {
            channel: at(channel),
            payload: at(payload),
        },
        Frame::Subscribed { channel } => Frame::Subscribed {
            channel: at(channel),
        },
        Frame::Unsubscribed { channel } => Frame::Unsubscribed {
            channel: channel.map(at),
        },
        Frame::Error { text } => Frame::Error { text: at(text) },
        Frame::Bulk { data } => Frame::Bulk { data: at(data) },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_encoded_as_one_evalsha() {
        assert_eq!(
            &encode_script("abc", &["k1", "key2"], &[b"", b"7"])[..],
            b"*7\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n2\r\n$2\r\nk1\r\n$4\r\nkey2\r\n$0\r\n\r\n$1\r\n7\r\n"
        );
    }

    #[test]
    fn a_publish_is_encoded_as_one_resp_array() {
        // The command up to the payload's length line, then the payload.
        let check = |name: &[u8], room: &str, frame: &'static [u8], head: &[u8]| {
            let message = BusMessage {
                target: crate::bus::Target::Room { except: None },
                frame: Bytes::from_static(frame),
            };
            let mut expected = head.to_vec();
            expected.extend_from_slice(&message.to_wire());
            expected.extend_from_slice(b"\r\n");
            assert_eq!(&encode_publish(name, room, &message)[..], &expected[..]);
        };
        check(
            b"PUBLISH",
            "r1",
            b"p\r\nq",
            b"*3\r\n$7\r\nPUBLISH\r\n$11\r\narthas:{r1}\r\n$6\r\n",
        );
        check(
            b"SPUBLISH",
            "room",
            b"",
            b"*3\r\n$8\r\nSPUBLISH\r\n$13\r\narthas:{room}\r\n$2\r\n",
        );
        assert_eq!(keys::channel("room").len(), 13);
    }
}
