//! One WebSocket connection's task: reads frames, runs the session, drains
//! the outbound queue, pings, and enforces the read deadline.
//!
//! One task per connection, one timer, no buffer held while idle: the read
//! scratch lives on the stack of a synchronous function, the frame reader
//! frees its buffer once nothing is pending, and the large futures of the
//! session (create, join, leave, publish) are boxed so they cost memory only
//! while they run.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::kind;
use protocol::server::{self, Ping};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};

use crate::hub::Peer;
use crate::session::Session;
use crate::websocket::{
    close_code, close_payload, opcode, write_frame, FrameError, FrameReader, Incoming,
};
use crate::Relay;

/// Bytes read from the socket per wake-up (stack scratch, not kept).
const READ_CHUNK_BYTES: usize = 8 * 1024;
/// How long a close frame may take to write to a client.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// After our close frame, how long we read (and discard) until the client
/// closes too, so unread input does not turn our close into a reset.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Send a close frame with this code, then close.
    Close(u16),
    /// The socket is gone or stuck: just drop it.
    Abort,
}

/// Runs a connection to its end. `leftover` are bytes the HTTP layer read
/// past the upgrade request.
pub async fn run(relay: Arc<Relay>, mut stream: TcpStream, leftover: Bytes, ip: IpAddr) {
    relay.metrics.connections.inc();
    relay.metrics.connections_total.inc();
    let config = &relay.config;
    let peer = Arc::new(Peer::new(
        config.max_outbound_queue_bytes,
        config.file_transfer_stale,
    ));
    let mut session = Session::new(relay.clone(), peer.clone(), ip);
    let mut reader = FrameReader::new(config.max_message_bytes);
    reader.feed(&leftover);
    drop(leftover);

    let end = serve(&relay, &mut stream, &peer, &mut session, &mut reader).await;
    let code = match end {
        End::Close(code) => {
            let _ = timeout(
                CLOSE_WRITE_TIMEOUT,
                write_frame(&mut stream, opcode::CLOSE, &close_payload(code)),
            )
            .await;
            code
        }
        End::Abort => peer.outbox.closing().unwrap_or(1006),
    };
    relay
        .metrics
        .closes
        .with_label_values(&[&code.to_string()])
        .inc();
    // Everyone else learns of the departure before the socket lingers.
    Box::pin(session.disconnect()).await;
    if let End::Close(_) = end {
        Box::pin(linger(&mut stream)).await;
    }
    relay.metrics.connections.dec();
}

async fn serve(
    relay: &Relay,
    stream: &mut TcpStream,
    peer: &Peer,
    session: &mut Session,
    reader: &mut FrameReader,
) -> End {
    let config = &relay.config;
    let mut read_deadline = Instant::now() + config.read_timeout;
    let mut next_ping = Instant::now() + config.ping_interval;
    let mut drain_at: Option<Instant> = None;
    let timer = sleep_until(next_ping.min(read_deadline));
    tokio::pin!(timer);

    // Frames that arrived with the upgrade request.
    if let Err(end) = process(
        stream,
        session,
        reader,
        &mut read_deadline,
        config.read_timeout,
    )
    .await
    {
        return end;
    }
    loop {
        let wake_at = drain_at.map_or(next_ping.min(read_deadline), |d| {
            d.min(next_ping).min(read_deadline)
        });
        if timer.deadline() != wake_at {
            timer.as_mut().reset(wake_at);
        }
        tokio::select! {
            biased;
            _ = peer.outbox.ready() => {
                if let Err(end) = flush(stream, peer, config.write_timeout).await {
                    return end;
                }
            }
            readable = stream.readable() => {
                if readable.is_err() {
                    return End::Abort;
                }
                match read_available(stream, reader) {
                    Ok(0) => return End::Abort,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => return End::Abort,
                }
                if let Err(end) = process(stream, session, reader, &mut read_deadline, config.read_timeout).await {
                    return end;
                }
            }
            _ = &mut timer => {
                let now = Instant::now();
                if now >= read_deadline {
                    return End::Close(close_code::READ_TIMEOUT);
                }
                if drain_at.is_some_and(|d| now >= d) {
                    peer.outbox.close(close_code::GOING_AWAY);
                    drain_at = None;
                }
                if now >= next_ping {
                    next_ping = now + config.ping_interval;
                    if timeout(config.write_timeout, write_frame(stream, opcode::PING, &[])).await.map_or(true, |r| r.is_err()) {
                        return End::Abort;
                    }
                    let ping = server::encode(kind::PING, &Ping { t: store::unix_millis() });
                    let _ = peer.outbox.push(ping);
                }
            }
            _ = relay.shutdown.cancelled(), if drain_at.is_none() && peer.outbox.closing().is_none() => {
                let spread = config.drain_window.mul_f64(rand::random::<f64>());
                drain_at = Some(Instant::now() + spread);
            }
        }
    }
}

/// Reads what the socket has (one wake-up's worth) into the frame reader.
/// The scratch buffer lives on this synchronous function's stack only.
fn read_available(stream: &TcpStream, reader: &mut FrameReader) -> io::Result<usize> {
    let mut scratch = [0u8; READ_CHUNK_BYTES];
    let n = stream.try_read(&mut scratch)?;
    reader.feed(&scratch[..n]);
    Ok(n)
}

/// Handles every complete event the reader holds.
async fn process(
    stream: &mut TcpStream,
    session: &mut Session,
    reader: &mut FrameReader,
    read_deadline: &mut Instant,
    read_timeout: Duration,
) -> Result<(), End> {
    loop {
        match reader.next_event() {
            Ok(None) => return Ok(()),
            Ok(Some(Incoming::Message(message))) => Box::pin(session.handle(&message)).await,
            Ok(Some(Incoming::Ping(payload))) => {
                // Control frames may interleave with queued data frames.
                if write_frame(stream, opcode::PONG, &payload).await.is_err() {
                    return Err(End::Abort);
                }
            }
            Ok(Some(Incoming::Pong)) => {
                *read_deadline = Instant::now() + read_timeout;
            }
            Ok(Some(Incoming::Close(_))) => return Err(End::Close(close_code::NORMAL)),
            Err(e @ FrameError::TooBig) | Err(e @ FrameError::Protocol(_)) => {
                tracing::debug!(error = %e, "closing on a framing error");
                return Err(End::Close(e.close_code()));
            }
        }
    }
}

/// Writes every queued frame; ends the connection when a close was asked
/// for (slow consumer, drain) or the socket fails.
async fn flush(stream: &mut TcpStream, peer: &Peer, write_timeout: Duration) -> Result<(), End> {
    while let Some(frame) = peer.outbox.pop() {
        let write = timeout(write_timeout, write_frame(stream, opcode::BINARY, &frame));
        tokio::pin!(write);
        // A write blocked on a client that does not read must not delay its
        // removal: once its queue overflows, drop the socket at once (a
        // close frame cannot get through a full socket anyway).
        let written = loop {
            tokio::select! {
                written = &mut write => break written,
                _ = peer.outbox.ready() => {
                    if peer.outbox.closing() == Some(close_code::SLOW_CONSUMER) {
                        return Err(End::Abort);
                    }
                }
            }
        };
        if !matches!(written, Ok(Ok(()))) {
            return Err(End::Abort);
        }
    }
    match peer.outbox.closing() {
        Some(code) => Err(End::Close(code)),
        None => Ok(()),
    }
}

/// Half-closes and drains the client's remaining input for a moment, so the
/// close frame is not lost to a TCP reset.
async fn linger(stream: &mut TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = stream.shutdown().await;
    let _ = timeout(CLOSE_LINGER, async {
        let mut sink = [0u8; 1024];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
