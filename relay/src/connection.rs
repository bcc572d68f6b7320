//! One WebSocket connection's task: reads frames, hands complete messages
//! to its [`Application`] (the Arthas [`Session`](crate::session::Session)),
//! drains what the outbox could not write directly, pings, and enforces the
//! deadlines.
//!
//! One task per connection, one timer, no buffer held while idle: bytes are
//! read into a per-thread scratch buffer that is reused and never zeroed
//! (it is filled through its uninitialised spare capacity), the frame
//! reader copies out only what it must keep and frees its buffer once
//! nothing is pending, and the large futures of the session (create, join,
//! leave, publish) are boxed so they cost memory only while they run. The
//! socket (a [`Transport`]: plain TCP or TLS) is shared with the outbox,
//! which writes to it directly when nothing is queued; every frame the task
//! sends (pings and pongs included) goes through the outbox so no frame is
//! ever cut into.
//!
//! Deadlines, each a close code: no pong within the read timeout (4002); a
//! message started (a frame partly received, or a fragmented message) and
//! not completed within the message timeout (4003), so a slow or stalled
//! sender cannot pin the message buffer.
//!
//! Cleanup does not depend on this task ending normally: the connection
//! slot ([`ConnectionSlot`]) and the session give back what they hold from
//! `Drop`, which also runs when the task panics or is cancelled.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::kind;
use protocol::server::{self, Ping};
use tokio::time::{sleep_until, timeout, Instant};

use crate::outbox::{try_write_at, OutFrame};
use crate::peer::Peer;
use crate::slot::ConnectionSlot;
use crate::transport::Transport;
use crate::websocket::{close_code, close_payload, opcode, FrameReader, Incoming};
use crate::{Relay, RelayConfig};

/// Bytes read from the socket per wake-up (into the per-thread scratch).
const READ_CHUNK_BYTES: usize = 8 * 1024;
/// How long the last queued frames and the close frame may take to write.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// After our close frame, how long we read (and discard) until the client
/// closes too, so unread input does not turn our close into a reset.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

thread_local! {
    /// The read scratch of every connection served by this thread: filled
    /// through its spare capacity (never zeroed), emptied before the next.
    static READ_SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(READ_CHUNK_BYTES));
}

/// What a connection's messages go to.
pub trait Application: Send {
    /// One complete data message (`text` ones are valid UTF-8).
    fn message(&mut self, text: bool, payload: Vec<u8>) -> impl Future<Output = ()> + Send;
    /// Whether the connection sends the Arthas application Ping (0x18)
    /// beside each WebSocket ping.
    fn app_pings(&self) -> bool;
    /// An application Ping with time `t` was queued (for the round trip
    /// the matching Pong measures).
    fn ping_sent(&mut self, _t: i64) {}
    /// The connection ended (its close frame is written): give back what
    /// the connection held.
    fn disconnect(&mut self) -> impl Future<Output = ()> + Send;
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Send a close frame with this code (none: an empty close frame,
    /// echoing a client's close without a code), then close.
    Close(Option<u16>),
    /// The socket is gone or stuck: just drop it.
    Abort,
}

/// Runs a connection to its end. `leftover` are bytes the HTTP layer read
/// past the upgrade request; `slot` is the connection's place in the limit,
/// given back when it ends (however it ends).
pub async fn run<A: Application>(
    relay: Arc<Relay>,
    stream: Transport,
    leftover: Bytes,
    mut slot: ConnectionSlot,
    application: impl FnOnce(Arc<Relay>, Arc<Peer>) -> A,
) {
    relay.metrics.connections_accepted.inc();
    let stream = Arc::new(stream);
    let config = &relay.config;
    let peer = Arc::new(Peer::new(
        config.max_outbound_queue_bytes,
        config.file_transfer_stale,
        stream.clone(),
    ));
    let mut app = application(relay.clone(), peer.clone());
    let mut reader = FrameReader::new(config.max_message_bytes);
    reader.feed(&leftover);
    drop(leftover);

    let end = serve(&relay, &stream, &peer, &mut app, &mut reader).await;
    let code = match end {
        End::Close(code) => {
            peer.outbox.close(code.unwrap_or(close_code::NO_STATUS));
            Box::pin(finish(&stream, &peer, code)).await;
            code.unwrap_or(close_code::NO_STATUS)
        }
        End::Abort => peer.outbox.closing().unwrap_or(close_code::ABNORMAL),
    };
    relay.metrics.closed(code).inc();
    // Everyone else learns of the departure before the socket lingers.
    Box::pin(app.disconnect()).await;
    if let End::Close(_) = end {
        Box::pin(linger(&stream)).await;
    }
    slot.finished();
}

async fn serve<A: Application>(
    relay: &Relay,
    stream: &Transport,
    peer: &Peer,
    app: &mut A,
    reader: &mut FrameReader,
) -> End {
    let config = &relay.config;
    let mut deadlines = Deadlines {
        read: Instant::now() + config.read_timeout,
        message: None,
    };
    let mut next_ping = Instant::now() + config.ping_interval;
    let mut drain_at: Option<Instant> = None;
    let timer = sleep_until(next_ping.min(deadlines.read));
    tokio::pin!(timer);

    // Frames that arrived with the upgrade request.
    if let Err(end) = process(config, peer, app, reader, &mut deadlines).await {
        return end;
    }
    loop {
        let mut wake_at = next_ping.min(deadlines.read);
        for at in [drain_at, deadlines.message].into_iter().flatten() {
            wake_at = wake_at.min(at);
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
                    Ok(n) => relay.metrics.received_bytes.inc_by(n as u64),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => return End::Abort,
                }
                if let Err(end) = process(config, peer, app, reader, &mut deadlines).await {
                    return end;
                }
            }
            _ = &mut timer => {
                let now = Instant::now();
                if now >= deadlines.read {
                    return End::Close(Some(close_code::READ_TIMEOUT));
                }
                if deadlines.message.is_some_and(|d| now >= d) {
                    return End::Close(Some(close_code::MESSAGE_TIMEOUT));
                }
                if drain_at.is_some_and(|d| now >= d) {
                    return End::Close(Some(close_code::GOING_AWAY));
                }
                if now >= next_ping {
                    next_ping = now + config.ping_interval;
                    let ws_ping = OutFrame { opcode: opcode::PING, payload: Bytes::new() };
                    let _ = peer.outbox.push_frame(ws_ping);
                    if app.app_pings() {
                        let t = relay.config.clock.now_millis();
                        app.ping_sent(t);
                        let ping = server::encode(kind::PING, &Ping { t });
                        relay.metrics.sent(&ping, 1);
                        let _ = peer.outbox.push(ping);
                    }
                }
            }
            _ = relay.shutdown.cancelled(), if drain_at.is_none() => {
                let spread = config.drain_window.mul_f64(rand::random::<f64>());
                drain_at = Some(Instant::now() + spread);
            }
        }
    }
}

/// The connection's read deadlines.
struct Deadlines {
    /// A WebSocket pong must arrive before this.
    read: Instant,
    /// The message being received must complete before this (None: no
    /// message is in progress).
    message: Option<Instant>,
}

/// Reads what the socket has (one wake-up's worth) into the frame reader,
/// through the per-thread scratch buffer.
fn read_available(stream: &Transport, reader: &mut FrameReader) -> io::Result<usize> {
    READ_SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        if scratch.capacity() < READ_CHUNK_BYTES {
            scratch.reserve_exact(READ_CHUNK_BYTES);
        }
        let n = stream.try_read_buf(scratch)?;
        reader.feed(&scratch[..n]);
        Ok(n)
    })
}

/// Handles every complete event the reader holds, then restarts or stops
/// the message deadline.
async fn process<A: Application>(
    config: &RelayConfig,
    peer: &Peer,
    app: &mut A,
    reader: &mut FrameReader,
    deadlines: &mut Deadlines,
) -> Result<(), End> {
    let mut completed = false;
    loop {
        match reader.next_event() {
            Ok(None) => break,
            Ok(Some(Incoming::Message { text, payload })) => {
                completed = true;
                Box::pin(app.message(text, payload)).await
            }
            Ok(Some(Incoming::Ping(payload))) => {
                let pong = OutFrame {
                    opcode: opcode::PONG,
                    payload: Bytes::from(payload),
                };
                let _ = peer.outbox.push_frame(pong);
            }
            Ok(Some(Incoming::Pong)) => deadlines.read = Instant::now() + config.read_timeout,
            Ok(Some(Incoming::Close(code))) => return Err(End::Close(code)),
            Err(e) => {
                tracing::debug!(error = %e, "closing on a framing error");
                return Err(End::Close(Some(e.close_code())));
            }
        }
    }
    if !reader.is_mid_message() {
        deadlines.message = None;
    } else if completed || deadlines.message.is_none() {
        deadlines.message = Some(Instant::now() + config.message_timeout);
    }
    Ok(())
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
        Some(code) => Err(End::Close(Some(code))),
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

/// Writes what is still queued, then the close frame (with `code`, or
/// empty), within [`CLOSE_WRITE_TIMEOUT`] (unless a frame was torn: then
/// nothing).
async fn finish(stream: &Transport, peer: &Peer, code: Option<u16>) {
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
        let payload = match code {
            Some(code) => Bytes::copy_from_slice(&close_payload(code)),
            None => Bytes::new(),
        };
        let close = OutFrame {
            opcode: opcode::CLOSE,
            payload,
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
