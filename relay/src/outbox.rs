//! A connection's outbound path: write straight to the socket when it can,
//! queue (bounded) when it cannot.
//!
//! Hot path ([`Outbox::push`]): fan-out hands each recipient the same
//! shared frame (`Bytes`, a reference-count increment, no copy). If nothing
//! is queued for the connection, the frame is written to its socket right
//! there with one non-blocking vectored write (header + payload) — at chat
//! rates this is nearly every delivery, and it spares a task wake-up per
//! frame. Only when the socket would block, or frames are already waiting,
//! does the frame join the queue, which the connection's own task drains.
//!
//! The queue is bounded in bytes: a member that reads slower than its room
//! talks overflows it and is dropped as a slow consumer (close code 4001)
//! instead of growing memory or losing frames silently. Nothing here blocks
//! or awaits; the lock is held for the push and at most one non-blocking
//! `writev`.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::transport::Transport;

use crate::websocket::{close_code, frame_header, opcode};

/// Queue capacity kept after a burst drains; beyond it the deque shrinks.
const RETAINED_SLOTS: usize = 16;

/// Why a frame was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue overflowed just now: the connection is being dropped as a
    /// slow consumer (the caller may count it).
    Overflow,
    /// The connection is closing already.
    Closed,
}

/// One WebSocket frame to send.
#[derive(Debug, Clone)]
pub struct OutFrame {
    pub opcode: u8,
    pub payload: Bytes,
}

impl OutFrame {
    /// The frame's length on the wire (header + payload).
    fn wire_len(&self) -> usize {
        frame_header(self.opcode, self.payload.len()).1 + self.payload.len()
    }
}

/// Writes what it can of `frame` from byte `offset` of its wire form,
/// without blocking.
#[inline]
pub fn try_write_at(socket: &Transport, frame: &OutFrame, offset: usize) -> io::Result<usize> {
    let (header, header_len) = frame_header(frame.opcode, frame.payload.len());
    if offset < header_len {
        let slices = [
            IoSlice::new(&header[offset..header_len]),
            IoSlice::new(&frame.payload),
        ];
        socket.try_write_vectored(&slices)
    } else {
        socket.try_write(&frame.payload[offset - header_len..])
    }
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<OutFrame>,
    /// Bytes of the front frame's wire form already written.
    front_written: usize,
    /// Payload bytes waiting.
    bytes: usize,
    /// Set once: the close code the connection ends with.
    closing: Option<u16>,
    /// A frame was dropped half-written: no close frame can follow.
    torn: bool,
}

/// The outbound path of one connection.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the connection's task: frames queued, or a close requested.
    ready: Notify,
    /// Most payload bytes allowed to wait.
    max_bytes: usize,
    /// The socket, for direct writes (None: queue only, as in unit tests).
    socket: Option<Arc<Transport>>,
}

impl Outbox {
    /// An empty outbox holding at most `max_bytes` of queued payload, writing
    /// directly to `socket` when it is idle.
    pub fn new(max_bytes: usize, socket: Option<Arc<Transport>>) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            max_bytes,
            socket,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a binary frame (a message envelope). Hot path.
    pub fn push(&self, payload: Bytes) -> Result<(), PushError> {
        self.push_frame(OutFrame {
            opcode: opcode::BINARY,
            payload,
        })
    }

    /// Sends a frame of any opcode (pings and pongs go through here too, so
    /// they never cut into a half-written frame).
    pub fn push_frame(&self, frame: OutFrame) -> Result<(), PushError> {
        let mut q = self.lock();
        if q.closing.is_some() {
            return Err(PushError::Closed);
        }
        let mut frame = Some(frame);
        if q.frames.is_empty() {
            if let (Some(socket), Some(f)) = (&self.socket, &frame) {
                match try_write_at(socket, f, 0) {
                    Ok(n) if n == f.wire_len() => {
                        // TLS: encrypted, but not all on the socket yet;
                        // the connection's task writes the rest.
                        if socket.has_pending_output() {
                            drop(q);
                            self.ready.notify_one();
                        }
                        return Ok(());
                    }
                    Ok(n) => q.front_written = n,
                    // WouldBlock, or an error the task will meet and end on.
                    Err(_) => {}
                }
                // Falls through to queueing (the written part is remembered).
                let f = frame.take();
                if let Some(f) = f {
                    q.bytes += f.payload.len();
                    q.frames.push_back(f);
                }
            }
        }
        if let Some(f) = frame {
            if q.bytes + f.payload.len() > self.max_bytes {
                q.closing = Some(close_code::SLOW_CONSUMER);
                q.torn = q.front_written > 0;
                q.frames = VecDeque::new();
                q.front_written = 0;
                q.bytes = 0;
                drop(q);
                self.ready.notify_one();
                return Err(PushError::Overflow);
            }
            q.bytes += f.payload.len();
            q.frames.push_back(f);
        }
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// The frame to write next and how much of it is written already. It
    /// stays queued (so no direct write can cut in) until [`advance`](Self::advance)
    /// completes it.
    pub fn front(&self) -> Option<(OutFrame, usize)> {
        let q = self.lock();
        q.frames.front().map(|f| (f.clone(), q.front_written))
    }

    /// Records `n` more bytes of the front frame written.
    pub fn advance(&self, n: usize) {
        let mut q = self.lock();
        let Some(front) = q.frames.front() else {
            return;
        };
        let wire_len = front.wire_len();
        let payload_len = front.payload.len();
        q.front_written = q.front_written.saturating_add(n);
        if q.front_written >= wire_len {
            q.frames.pop_front();
            q.front_written = 0;
            q.bytes -= payload_len;
            if q.frames.is_empty() && q.frames.capacity() > RETAINED_SLOTS {
                q.frames = VecDeque::new();
            }
        }
    }

    /// Asks the connection to close with `code` once queued frames are
    /// written (the first request wins).
    pub fn close(&self, code: u16) {
        let mut q = self.lock();
        if q.closing.is_none() {
            q.closing = Some(code);
        }
        drop(q);
        self.ready.notify_one();
    }

    /// The close code requested, if any.
    pub fn closing(&self) -> Option<u16> {
        self.lock().closing
    }

    /// Whether a frame was dropped half-written (no close frame may follow).
    pub fn is_torn(&self) -> bool {
        self.lock().torn
    }

    /// Resolves when frames were queued or a close was requested since the
    /// last wake-up (a stored permit means a wake-up is never lost).
    pub async fn ready(&self) {
        self.ready.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(o: &Outbox) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some((f, _)) = o.front() {
            out.push(f.payload.clone());
            o.advance(f.wire_len());
        }
        out
    }

    #[test]
    fn frames_come_out_in_order() {
        let o = Outbox::new(100, None);
        o.push(Bytes::from_static(b"a")).unwrap();
        o.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(
            drain(&o),
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
    }

    #[test]
    fn a_frame_leaves_the_queue_only_when_fully_written() {
        let o = Outbox::new(100, None);
        o.push(Bytes::from_static(b"abc")).unwrap();
        o.advance(2); // header only
        assert_eq!(o.front().unwrap().1, 2);
        o.advance(3);
        assert!(o.front().is_none());
    }

    #[test]
    fn overflow_closes_as_slow_consumer_and_drops_the_queue() {
        let o = Outbox::new(3, None);
        o.push(Bytes::from_static(b"ab")).unwrap();
        assert_eq!(o.push(Bytes::from_static(b"cd")), Err(PushError::Overflow));
        assert_eq!(o.closing(), Some(4001));
        assert!(o.front().is_none());
        assert!(!o.is_torn());
        assert_eq!(o.push(Bytes::from_static(b"e")), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn a_push_before_waiting_is_not_lost() {
        let o = Outbox::new(10, None);
        o.push(Bytes::from_static(b"a")).unwrap();
        o.ready().await;
        assert!(o.front().is_some());
    }

    #[tokio::test]
    async fn an_idle_socket_is_written_directly_and_a_blocked_one_queues() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let o = Outbox::new(64 << 20, Some(Arc::new(Transport::Plain(server))));
        o.push(Bytes::from_static(b"hello")).unwrap();
        assert!(o.front().is_none(), "written straight to the socket");
        let mut buf = [0u8; 7];
        client.readable().await.unwrap();
        assert_eq!(client.try_read(&mut buf).unwrap(), 7);
        assert_eq!(&buf, b"\x82\x05hello");
        // The client stops reading: eventually frames queue, in order.
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let mut pushed = 0;
        while o.front().is_none() {
            o.push(big.clone()).unwrap();
            pushed += 1;
            assert!(pushed < 1000, "the socket never filled up");
        }
        o.push(Bytes::from_static(b"after")).unwrap();
        let queued: Vec<usize> = {
            let mut v = Vec::new();
            while let Some((f, _)) = o.front() {
                v.push(f.payload.len());
                o.advance(usize::MAX);
            }
            v
        };
        assert_eq!(queued.last(), Some(&5));
    }
}
