//! A WebSocket client that sends whatever bytes a test asks for, well
//! formed or not, and reads the server's frames as they are on the wire.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::websocket::opcode;

/// The mask every frame of this client uses.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// How long a test waits for the server by default.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server frame, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    /// The FIN bit.
    pub fin: bool,
    /// The RSV bits (must be 0 from this server).
    pub rsv: u8,
    /// The opcode.
    pub opcode: u8,
    /// The payload (server frames are never masked).
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The close code of a close frame (None: empty close payload).
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == opcode::CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A raw client connection.
pub struct RawClient {
    /// The socket.
    stream: TcpStream,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
}

/// A masked client frame: `first` is the first header byte (FIN, RSV, opcode).
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(first);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 65_535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
    out
}

impl RawClient {
    /// Connects and completes the upgrade on `/ws`.
    pub async fn connect(addr: SocketAddr) -> io::Result<RawClient> {
        let mut client = RawClient::connect_tcp(addr).await?;
        client.send(handshake().as_bytes()).await?;
        client.read_handshake_response().await?;
        Ok(client)
    }

    /// Connects without a handshake (to send a partial or broken one).
    pub async fn connect_tcp(addr: SocketAddr) -> io::Result<RawClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawClient {
            stream,
            buf: Vec::new(),
        })
    }

    async fn read_handshake_response(&mut self) -> io::Result<()> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                if !head.starts_with("HTTP/1.1 101") {
                    return Err(io::Error::other(format!("upgrade refused: {head}")));
                }
                return Ok(());
            }
            if self.fill(WAIT).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Writes one masked frame (`first`: FIN, RSV and opcode).
    pub async fn send_frame(&mut self, first: u8, payload: &[u8]) -> io::Result<()> {
        self.send(&frame(first, payload)).await
    }

    /// A final text frame.
    pub async fn send_text(&mut self, text: &[u8]) -> io::Result<()> {
        self.send_frame(0x80 | opcode::TEXT, text).await
    }

    /// A final binary frame.
    pub async fn send_binary(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(0x80 | opcode::BINARY, payload).await
    }

    /// A close frame with this payload.
    pub async fn send_close(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_frame(0x80 | opcode::CLOSE, payload).await
    }

    async fn fill(&mut self, within: Duration) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = timeout(within, self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next server frame; `Ok(None)` when the server closed the TCP
    /// connection; `TimedOut` when nothing came within `within`.
    pub async fn next_frame_within(&mut self, within: Duration) -> io::Result<Option<ServerFrame>> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            match self.fill(within).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next server frame (waiting at most [`WAIT`]).
    pub async fn next_frame(&mut self) -> io::Result<Option<ServerFrame>> {
        self.next_frame_within(WAIT).await
    }

    /// The next data message, answering nothing (pings are skipped);
    /// `(text, payload)`. Panics on a close or a lost connection.
    pub async fn expect_message(&mut self) -> (bool, Vec<u8>) {
        loop {
            match self.next_frame().await {
                Ok(Some(f)) if f.opcode == opcode::TEXT || f.opcode == opcode::BINARY => {
                    assert!(f.fin, "this server never fragments: {f:?}");
                    return (f.opcode == opcode::TEXT, f.payload);
                }
                Ok(Some(f)) if f.opcode == opcode::PING => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Reads until the server's close frame and returns its code (None:
    /// an empty close frame), then checks the server closes the TCP
    /// connection. Data frames before the close are returned too.
    pub async fn expect_close(&mut self) -> (Option<u16>, Vec<ServerFrame>) {
        let mut before = Vec::new();
        loop {
            match self.next_frame().await {
                Ok(Some(f)) if f.opcode == opcode::CLOSE => {
                    assert!(f.payload.len() != 1, "close payload of 1 byte: {f:?}");
                    let code = f.close_code();
                    // The server drops the TCP connection after its close.
                    let after = self.next_frame().await;
                    assert!(
                        matches!(after, Ok(None)),
                        "after the close frame: {after:?}"
                    );
                    return (code, before);
                }
                Ok(Some(f)) => before.push(f),
                other => panic!("expected a close frame, got {other:?} after {before:?}"),
            }
        }
    }

    /// Whether the server closed the TCP connection within `within`
    /// (frames before that are skipped).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame_within(left).await {
                Ok(None) => return true,
                Ok(Some(_)) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return false,
                Err(_) => return true,
            }
        }
    }
}

/// The upgrade request this client sends.
pub fn handshake() -> String {
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_owned()
}

/// Parses one unmasked server frame from `b`: the frame and the bytes it used.
fn parse_server_frame(b: &[u8]) -> io::Result<Option<(ServerFrame, usize)>> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[1] & 0x80 != 0 {
        return Err(io::Error::other("the server masked a frame"));
    }
    let (len, at) = match b[1] & 0x7F {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[2..10]);
            (u64::from_be_bytes(v) as usize, 10)
        }
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if b.len() < at + len {
        return Ok(None);
    }
    Ok(Some((
        ServerFrame {
            fin: b[0] & 0x80 != 0,
            rsv: (b[0] >> 4) & 0x7,
            opcode: b[0] & 0x0F,
            payload: b[at..at + len].to_vec(),
        },
        at + len,
    )))
}
