//! One WebSocket connection's task: reads frames, runs the session, drains
//! what the outbox could not write directly, pings, and enforces the read
//! deadline.
//!
//! One task per connection, one timer, no buffer held while idle: the read
//! scratch lives on the stack of a synchronous function, the frame reader
//! frees its buffer once nothing is pending, and the large futures of the
//! session (create, join, leave, publish) are boxed so they cost memory only
//! while they run. The socket (a [`Transport`]: plain TCP or TLS) is shared
//! with the outbox,
//! which writes to it directly when nothing is queued; every frame the task
//! sends (pings and pongs included) goes through the outbox so no frame is
//! ever cut into.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::kind;
use protocol::server::{self, Ping};
use tokio::time::{sleep_until, timeout, Instant};

use crate::hub::Peer;
use crate::outbox::{try_write_at, OutFrame};
use crate::session::Session;
use crate::transport::Transport;
use crate::websocket::{close_code, close_payload, opcode, FrameReader, Incoming};
use crate::Relay;

/// Bytes read from the socket per wake-up (stack scratch, not kept).
const READ_CHUNK_BYTES: usize = 8 * 1024;
/// How long the last queued frames and the close frame may take to write.
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
pub async fn run(relay: Arc<Relay>, stream: Transport, leftover: Bytes, ip: IpAddr) {
    relay.metrics.connections.inc();
    relay.metrics.connections_total.inc();
    let stream = Arc::new(stream);
    let config = &relay.config;
    let peer = Arc::new(Peer::new(
        config.max_outbound_queue_bytes,
        config.file_transfer_stale,
        stream.clone(),
    ));
    let mut session = Session::new(relay.clone(), peer.clone(), ip);
    let mut reader = FrameReader::new(config.max_message_bytes);
    reader.feed(&leftover);
    drop(leftover);

    let end = serve(&relay, &stream, &peer, &mut session, &mut reader).await;
    let code = match end {
        End::Close(code) => {
            peer.outbox.close(code);
            Box::pin(finish(&stream, &peer, code)).await;
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
        Box::pin(linger(&stream)).await;
    }
    relay.metrics.connections.dec();
}

async fn serve(
    relay: &Relay,
    stream: &Transport,
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
        peer,
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
        let mut wake_at = next_ping.min(read_deadline);
        if let Some(d) = drain_at {
            wake_at = wake_at.min(d);
        }
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
                if let Err(end) = process(peer, session, reader, &mut read_deadline, config.read_timeout).await {
                    return end;
                }
            }
            _ = &mut timer => {
                let now = Instant::now();
                if now >= read_deadline {
                    return End::Close(close_code::READ_TIMEOUT);
                }
                if drain_at.is_some_and(|d| now >= d) {
                    return End::Close(close_code::GOING_AWAY);
                }
                if now >= next_ping {
                    next_ping = now + config.ping_interval;
                    let ws_ping = OutFrame { opcode: opcode::PING, payload: Bytes::new() };
                    let _ = peer.outbox.push_frame(ws_ping);
                    let _ = peer.outbox.push(server::encode(kind::PING, &Ping { t: store::unix_millis() }));
                }
            }
            _ = relay.shutdown.cancelled(), if drain_at.is_none() => {
                let spread = config.drain_window.mul_f64(rand::random::<f64>());
                drain_at = Some(Instant::now() + spread);
            }
        }
    }
}

/// Reads what the socket has (one wake-up's worth) into the frame reader.
/// The scratch buffer lives on this synchronous function's stack only.
fn read_available(stream: &Transport, reader: &mut FrameReader) -> io::Result<usize> {
    let mut scratch = [0u8; READ_CHUNK_BYTES];
    let n = stream.try_read(&mut scratch)?;
    reader.feed(&scratch[..n]);
    Ok(n)
}

/// Handles every complete event the reader holds.
async fn process(
    peer: &Peer,
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
                let pong = OutFrame {
                    opcode: opcode::PONG,
                    payload: Bytes::from(payload),
                };
                let _ = peer.outbox.push_frame(pong);
            }
            Ok(Some(Incoming::Pong)) => *read_deadline = Instant::now() + read_timeout,
            Ok(Some(Incoming::Close(_))) => return Err(End::Close(close_code::NORMAL)),
            Err(e) => {
                tracing::debug!(error = %e, "closing on a framing error");
                return Err(End::Close(e.close_code()));
            }
        }
    }
}

/// Writes what is queued. Ends the connection when a close was asked for
/// (drain, slow consumer) or the socket fails or stalls past the timeout.
async fn flush(stream: &Transport, peer: &Peer, write_timeout: Duration) -> Result<(), End> {
    while let Some((frame, offset)) = peer.outbox.front() {
        let advance = |n| peer.outbox.advance(n);
        let write = timeout(write_timeout, write_rest(stream, &frame, offset, &advance));
        tokio::pin!(write);
        // A write blocked on a client that does not read must not delay its
        // removal: once its queue overflows, drop it at once.
        let written = loop {
            tokio::select! {
                biased;
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
    // TLS: ciphertext of frames written directly may still wait.
    if stream.has_pending_output()
        && !matches!(
            timeout(write_timeout, stream.flush_pending()).await,
            Ok(Ok(()))
        )
    {
        return Err(End::Abort);
    }
    match peer.outbox.closing() {
        Some(_) if peer.outbox.is_torn() => Err(End::Abort),
        Some(code) => Err(End::Close(code)),
        None => Ok(()),
    }
}

/// Writes the rest of a frame from `offset`, reporting each write's bytes.
async fn write_rest(
    stream: &Transport,
    frame: &OutFrame,
    mut offset: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> io::Result<()> {
    let total =
        crate::websocket::frame_header(frame.opcode, frame.payload.len()).1 + frame.payload.len();
    while offset < total {
        stream.writable().await?;
        match try_write_at(stream, frame, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                offset += n;
                progress(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes what is still queued, then the close frame, within
/// [`CLOSE_WRITE_TIMEOUT`] (unless a frame was torn: then nothing).
async fn finish(stream: &Transport, peer: &Peer, code: u16) {
    if peer.outbox.is_torn() {
        return;
    }
    let _ = timeout(CLOSE_WRITE_TIMEOUT, async {
        while let Some((frame, offset)) = peer.outbox.front() {
            if write_rest(stream, &frame, offset, &|n| peer.outbox.advance(n))
                .await
                .is_err()
            {
                return;
            }
        }
        let close = OutFrame {
            opcode: opcode::CLOSE,
            payload: Bytes::copy_from_slice(&close_payload(code)),
        };
        let _ = write_rest(stream, &close, 0, &|_| {}).await;
        let _ = stream.flush_pending().await;
    })
    .await;
}

/// Half-closes (after TLS close_notify) and drains the client's remaining
/// input for a moment, so the close frame is not lost to a TCP reset.
async fn linger(stream: &Transport) {
    stream.shutdown_write();
    let stream = stream.tcp();
    let _ = timeout(CLOSE_LINGER, async {
        let mut sink = [0u8; 1024];
        loop {
            if stream.readable().await.is_err() {
                break;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    })
    .await;
}
