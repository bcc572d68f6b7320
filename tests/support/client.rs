//! A WebSocket client that speaks the Arthas envelope, for driving the server in tests.
//!
//! Built on fastwebsockets' client handshake over a tokio `TcpStream`, with TLS (rustls) for
//! `wss://` URLs, trusting the test CA unless told otherwise. Every receive has
//! a timeout (default 5 s) that fails the test with a message naming the client and what it
//! waited for, so a missing frame never hangs the suite. Close frames are handled here, not
//! by the library, so the test sees the close code even when the server drops the TCP
//! connection right after sending it.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, WebSocketError};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rmpv::Value;
use tokio::net::TcpSocket;

use super::msg::{self, ValueExt};

/// How long `recv` waits for a frame by default.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// Message type numbers (PROTOCOL.md §2).
pub mod t {
    pub const CREATE_ROOM: u8 = 0x01;
    pub const JOIN_ROOM: u8 = 0x02;
    pub const SEND_MESSAGE: u8 = 0x03;
    pub const LEAVE_ROOM: u8 = 0x04;
    pub const TYPING: u8 = 0x05;
    pub const PONG: u8 = 0x06;
    pub const SEND_REACTION: u8 = 0x07;
    pub const FILE_META: u8 = 0x08;
    pub const FILE_CHUNK: u8 = 0x09;
    pub const FILE_COMPLETE: u8 = 0x0A;
    pub const FILE_CANCEL: u8 = 0x0B;
    pub const FILE_ACK: u8 = 0x0C;
    pub const ROOM_CREATED: u8 = 0x10;
    pub const ROOM_JOINED: u8 = 0x11;
    pub const MEMBER_JOINED: u8 = 0x12;
    pub const MEMBER_LEFT: u8 = 0x13;
    pub const RELAY_MESSAGE: u8 = 0x14;
    pub const MEMBER_TYPING: u8 = 0x15;
    pub const ROOM_CLOSED: u8 = 0x16;
    pub const ERROR: u8 = 0x17;
    pub const PING: u8 = 0x18;
    pub const RELAY_REACTION: u8 = 0x19;
    pub const RELAY_FILE_META: u8 = 0x1A;
    pub const RELAY_FILE_CHUNK: u8 = 0x1B;
    pub const RELAY_FILE_COMPLETE: u8 = 0x1C;
    pub const RELAY_FILE_CANCEL: u8 = 0x1D;
    pub const RELAY_FILE_ACK: u8 = 0x1E;
    pub const MATCH_ERROR: u8 = 0x2B;
    pub const KICK: u8 = 0x40;
    pub const SEND_DIRECT: u8 = 0x41;
    pub const SET_ROOM_SECRET: u8 = 0x42;
    pub const RELAY_DIRECT: u8 = 0x50;
    pub const ROOM_SECRET_SET: u8 = 0x51;
}

/// A readable name for a message type, for failure messages.
pub fn type_name(ty: u8) -> &'static str {
    match ty {
        0x10 => "RoomCreated",
        0x11 => "RoomJoined",
        0x12 => "MemberJoined",
        0x13 => "MemberLeft",
        0x14 => "RelayMessage",
        0x15 => "MemberTyping",
        0x16 => "RoomClosed",
        0x17 => "Error",
        0x18 => "Ping",
        0x19 => "RelayReaction",
        0x1A => "RelayFileMeta",
        0x1B => "RelayFileChunk",
        0x1C => "RelayFileComplete",
        0x1D => "RelayFileCancel",
        0x1E => "RelayFileAck",
        0x28..=0x2F => "match message",
        0x50 => "RelayDirect",
        0x51 => "RoomSecretSet",
        _ => "unknown",
    }
}

/// Something that arrived on the socket.
#[derive(Debug)]
pub enum Event {
    /// A binary frame holding an envelope.
    Msg(u8, Value),
    /// A close frame: its code (None for an empty payload) and reason.
    Close(Option<u16>, String),
    /// A WebSocket ping (only seen when auto-pong is off) with its payload.
    Ping(Vec<u8>),
    /// A WebSocket pong.
    Pong,
    /// The connection ended without a close frame, or failed.
    Gone(String),
}

/// How to connect.
#[derive(Clone, Debug)]
pub struct ConnectOpts {
    /// The `Origin` header to send, if any.
    pub origin: Option<String>,
    /// Answer WS pings automatically (what every real client does).
    pub auto_pong: bool,
    /// Shrink the socket's receive buffer (SO_RCVBUF), to make a slow consumer quickly.
    pub recv_buffer: Option<u32>,
    /// Extra request headers for the upgrade (e.g. X-Forwarded-For).
    pub headers: Vec<(String, String)>,
    /// The local (source) address to connect from, e.g. another loopback address 127.0.0.x,
    /// so one test can be several clients by IP.
    pub local_ip: Option<std::net::IpAddr>,
    /// The TLS client configuration for `wss://` (default: trust the test CA).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for ConnectOpts {
    fn default() -> Self {
        Self {
            origin: None,
            auto_pong: true,
            recv_buffer: None,
            headers: Vec::new(),
            local_ip: None,
            tls: None,
        }
    }
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the upgrade with this HTTP status instead of 101.
    Status(u16),
    /// Anything else.
    Other(String),
}

/// Ties hyper's executor to the tokio runtime.
struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::task::spawn(fut);
    }
}

/// Splits `ws://host:port/path` (or `wss://`, `http://`, `https://`) into (TLS or not,
/// `host:port`, `/path`).
pub fn split_url(url: &str) -> (bool, String, String) {
    let (tls, rest) = if let Some(rest) = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("https://"))
    {
        (true, rest)
    } else {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("unsupported url {url}"));
        (false, rest)
    };
    match rest.find('/') {
        Some(i) => (tls, rest[..i].to_string(), rest[i..].to_string()),
        None => (tls, rest.to_string(), "/".to_string()),
    }
}

/// One WebSocket connection to a node.
pub struct Client {
    /// The socket, reassembling fragmented messages.
    ws: FragmentCollector<TokioIo<Upgraded>>,
    /// A name for failure messages (the display name once in a room).
    pub label: String,
    /// How long `recv` waits.
    pub timeout: Duration,
    /// Set once a close frame or the end of the connection was seen.
    pub closed: bool,
    /// Skip app-level Ping (0x18) messages in `recv`/`expect` (for tests with a short
    /// ping interval that are about something else).
    pub skip_app_pings: bool,
}

impl Client {
    /// Connects with default options; panics when the upgrade fails.
    pub async fn connect(url: &str) -> Client {
        Self::connect_opts(url, &ConnectOpts::default())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e:?}"))
    }

    /// Connects from the loopback address `local_ip` (127.0.0.x: another client IP); panics
    /// when the upgrade fails.
    pub async fn connect_from(url: &str, local_ip: &str) -> Client {
        let opts = ConnectOpts {
            local_ip: Some(local_ip.parse().expect("an IP address")),
            ..ConnectOpts::default()
        };
        Self::connect_opts(url, &opts)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url} from {local_ip}: {e:?}"))
    }

    /// Connects with an `Origin` header; panics when the upgrade fails.
    pub async fn connect_origin(url: &str, origin: &str) -> Client {
        let opts = ConnectOpts {
            origin: Some(origin.to_string()),
            ..ConnectOpts::default()
        };
        Self::connect_opts(url, &opts)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url} with Origin {origin}: {e:?}"))
    }

    /// Connects with `opts`, reporting a refused upgrade as `ConnectError::Status`.
    pub async fn connect_opts(url: &str, opts: &ConnectOpts) -> Result<Client, ConnectError> {
        let (tls, host, path) = split_url(url);
        let addr: std::net::SocketAddr = host
            .parse()
            .map_err(|e| ConnectError::Other(format!("bad address {host}: {e}")))?;
        let socket = TcpSocket::new_v4().map_err(|e| ConnectError::Other(e.to_string()))?;
        if let Some(size) = opts.recv_buffer {
            socket
                .set_recv_buffer_size(size)
                .map_err(|e| ConnectError::Other(e.to_string()))?;
        }
        if let Some(ip) = opts.local_ip {
            socket
                .bind(std::net::SocketAddr::new(ip, 0))
                .map_err(|e| ConnectError::Other(format!("bind {ip}: {e}")))?;
        }
        let stream = tokio::time::timeout(RECV_TIMEOUT, socket.connect(addr))
            .await
            .map_err(|_| ConnectError::Other("connect timed out".into()))?
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut req = Request::builder()
            .method("GET")
            .uri(format!("http://{host}{path}"))
            .header("Host", &host)
            .header(hyper::header::UPGRADE, "websocket")
            .header(hyper::header::CONNECTION, "upgrade")
            .header(
                "Sec-WebSocket-Key",
                fastwebsockets::handshake::generate_key(),
            )
            .header("Sec-WebSocket-Version", "13");
        if let Some(origin) = &opts.origin {
            req = req.header(hyper::header::ORIGIN, origin);
        }
        for (name, value) in &opts.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        let handshake = async {
            if tls {
                let config = opts.tls.clone().unwrap_or_else(super::tls::client_config);
                let stream = super::tls::connect(stream, &host, config)
                    .await
                    .map_err(WebSocketError::IoError)?;
                fastwebsockets::handshake::client(&SpawnExecutor, req, stream).await
            } else {
                fastwebsockets::handshake::client(&SpawnExecutor, req, stream).await
            }
        };
        let (mut ws, _) = match tokio::time::timeout(RECV_TIMEOUT, handshake).await {
            Err(_) => return Err(ConnectError::Other("handshake timed out".into())),
            Ok(Err(WebSocketError::InvalidStatusCode(code))) => {
                return Err(ConnectError::Status(code))
            }
            Ok(Err(e)) => return Err(ConnectError::Other(e.to_string())),
            Ok(Ok(pair)) => pair,
        };
        ws.set_auto_close(false);
        ws.set_auto_pong(opts.auto_pong);
        Ok(Client {
            ws: FragmentCollector::new(ws),
            label: "client".to_string(),
            timeout: RECV_TIMEOUT,
            closed: false,
            skip_app_pings: false,
        })
    }

    /// Sends an envelope `{type, data}` as one binary frame.
    pub async fn send(&mut self, ty: u8, data: Value) {
        self.send_bytes(msg::envelope(ty, data)).await;
    }

    /// Sends raw bytes as one binary frame; panics when the socket is gone.
    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        if let Err(e) = self.try_send_frame(OpCode::Binary, bytes).await {
            panic!("{}: send failed: {e}", self.label);
        }
    }

    /// Sends raw bytes as one **text** frame (the payload need not be UTF-8).
    pub async fn send_text_bytes(&mut self, bytes: Vec<u8>) {
        if let Err(e) = self.try_send_frame(OpCode::Text, bytes).await {
            panic!("{}: send failed: {e}", self.label);
        }
    }

    /// Sends one frame and reports failure instead of panicking.
    pub async fn try_send_frame(&mut self, opcode: OpCode, bytes: Vec<u8>) -> Result<(), String> {
        let frame = Frame::new(true, opcode, None, Payload::Owned(bytes));
        self.write(frame).await
    }

    /// Sends an envelope and reports failure instead of panicking.
    pub async fn try_send(&mut self, ty: u8, data: Value) -> Result<(), String> {
        self.try_send_frame(OpCode::Binary, msg::envelope(ty, data))
            .await
    }

    /// Sends `bytes` as a fragmented binary message of the given fragment sizes.
    pub async fn send_fragmented(&mut self, bytes: &[u8], fragment: usize) -> Result<(), String> {
        let chunks: Vec<&[u8]> = bytes.chunks(fragment).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let opcode = if i == 0 {
                OpCode::Binary
            } else {
                OpCode::Continuation
            };
            let fin = i + 1 == chunks.len();
            let frame = Frame::new(fin, opcode, None, Payload::Owned(chunk.to_vec()));
            self.write(frame).await?;
        }
        Ok(())
    }

    /// Sends a WebSocket pong control frame.
    pub async fn send_ws_pong(&mut self, payload: Vec<u8>) {
        let _ = self.write(Frame::pong(Payload::Owned(payload))).await;
    }

    /// Sends a close frame with `code`.
    pub async fn send_close(&mut self, code: u16) {
        let _ = self.write(Frame::close(code, b"")).await;
    }

    async fn write(&mut self, frame: Frame<'_>) -> Result<(), String> {
        match tokio::time::timeout(RECV_TIMEOUT, self.ws.write_frame(frame)).await {
            Err(_) => Err("write timed out".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads the next event, waiting at most `within`; `None` on timeout.
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        if self.closed {
            return Some(Event::Gone("already closed".into()));
        }
        let frame = match tokio::time::timeout(within, self.ws.read_frame()).await {
            Err(_) => return None,
            Ok(Err(e)) => {
                self.closed = true;
                return Some(Event::Gone(e.to_string()));
            }
            Ok(Ok(frame)) => frame,
        };
        let event = match frame.opcode {
            OpCode::Binary => match msg::decode_envelope(&frame.payload) {
                Ok((ty, data)) => Event::Msg(ty, data),
                Err(e) => panic!("{}: server sent an invalid envelope: {e}", self.label),
            },
            OpCode::Text => panic!(
                "{}: server sent a text frame (PROTOCOL.md §1: always binary): {:?}",
                self.label,
                String::from_utf8_lossy(&frame.payload)
            ),
            OpCode::Close => {
                let payload = frame.payload.to_vec();
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                let reason =
                    String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).to_string();
                self.closed = true;
                // Answer the close as a well-behaved client would; the server may be gone.
                let _ = tokio::time::timeout(
                    Duration::from_millis(500),
                    self.ws
                        .write_frame(Frame::close_raw(Payload::Owned(payload))),
                )
                .await;
                Event::Close(code, reason)
            }
            OpCode::Ping => Event::Ping(frame.payload.to_vec()),
            OpCode::Pong => Event::Pong,
            OpCode::Continuation => panic!("{}: stray continuation frame", self.label),
        };
        Some(event)
    }

    /// The next event within the client's timeout; panics on timeout, saying what was awaited.
    pub async fn event(&mut self, waiting_for: &str) -> Event {
        let timeout = self.timeout;
        match self.next_event(timeout).await {
            Some(ev) => ev,
            None => panic!(
                "{}: nothing received within {timeout:?} while waiting for {waiting_for}",
                self.label
            ),
        }
    }

    /// The next message; panics on timeout, close or WS control frames.
    pub async fn recv(&mut self) -> (u8, Value) {
        self.recv_for("a message").await
    }

    async fn recv_for(&mut self, waiting_for: &str) -> (u8, Value) {
        loop {
            match self.event(waiting_for).await {
                Event::Msg(ty, _) if ty == t::PING && self.skip_app_pings => continue,
                Event::Msg(ty, data) => return (ty, data),
                Event::Pong => continue,
                Event::Ping(_) if self.skip_app_pings => continue,
                other => panic!("{}: expected {waiting_for}, got {other:?}", self.label),
            }
        }
    }

    /// The next message must be of type `ty`; returns its data.
    pub async fn expect(&mut self, ty: u8) -> Value {
        let what = format!("{} (0x{ty:02X})", type_name(ty));
        let (got, data) = self.recv_for(&what).await;
        assert_eq!(
            got,
            ty,
            "{}: expected {what}, got {} (0x{got:02X}) {data}",
            self.label,
            type_name(got)
        );
        data
    }

    /// The next message must be Error `{code, msg}` with exactly this code and text.
    pub async fn expect_error(&mut self, code: &str, text: &str) {
        let what = format!("Error {code} {text:?}");
        let (got, data) = self.recv_for(&what).await;
        assert_eq!(
            got,
            t::ERROR,
            "{}: expected {what}, got {} (0x{got:02X}) {data}",
            self.label,
            type_name(got)
        );
        assert_eq!(
            (data.str("code"), data.str("msg")),
            (code, text),
            "{}: wrong error",
            self.label
        );
        super::msg::assert_keys(&data, &["code", "msg"]);
    }

    /// The next message must be an Error with this code (whatever its text); returns the text.
    pub async fn expect_error_code(&mut self, code: &str) -> String {
        let data = self.expect(t::ERROR).await;
        assert_eq!(
            data.str("code"),
            code,
            "{}: wrong error code in {data}",
            self.label
        );
        data.str("msg").to_string()
    }

    /// The server must close the connection with a close frame carrying `code`, after at most
    /// `within`. Messages arriving before the close are skipped.
    pub async fn expect_close_within(&mut self, code: u16, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                None => panic!("{}: no close {code} within {within:?}", self.label),
                Some(Event::Close(got, reason)) => {
                    assert_eq!(
                        got,
                        Some(code),
                        "{}: wrong close code (reason {reason:?})",
                        self.label
                    );
                    return;
                }
                Some(Event::Gone(e)) => panic!(
                    "{}: connection ended without a close frame (expected close {code}): {e}",
                    self.label
                ),
                Some(_) => continue,
            }
        }
    }

    /// The server must close the connection with `code` (messages before it are skipped).
    pub async fn expect_close(&mut self, code: u16) {
        self.expect_close_within(code, self.timeout).await;
    }
}

impl Client {
    /// A barrier: sends a request whose reply is known (CreateRoom with an empty name, which
    /// is E005 whether or not the client is in a room) and requires that reply to be the next
    /// frame. Proves that nothing else was queued for this client before it.
    pub async fn sync(&mut self) {
        self.send(t::CREATE_ROOM, crate::map! {"name" => "", "password" => ""})
            .await;
        let (ty, data) = self.recv_for("the barrier's E005 reply").await;
        assert!(
            ty == t::ERROR && data.str("code") == "E005",
            "{}: expected nothing before the barrier reply, got {} (0x{ty:02X}) {data}",
            self.label,
            type_name(ty)
        );
    }
}
