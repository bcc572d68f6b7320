//! A connection's bounded outbound queue.
//!
//! Fan-out pushes shared frames (`Bytes`, a reference-count increment, no
//! copy) from whatever task delivers a room's message; the connection's own
//! task drains the queue to its socket. The queue is bounded in bytes: a
//! member that reads slower than its room talks overflows it and is closed
//! as a slow consumer (close code 4001) instead of growing memory or losing
//! frames silently. Pushing never blocks and never awaits.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Queue capacity kept after a burst drains; beyond it the deque shrinks.
const RETAINED_SLOTS: usize = 16;

/// Why a push was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue overflowed just now: the connection is being closed as a
    /// slow consumer (the caller may count it).
    Overflow,
    /// The connection is closing already.
    Closed,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// Payload bytes waiting.
    bytes: usize,
    /// Set once: the close code the connection ends with.
    closing: Option<u16>,
}

/// The bounded queue plus the wake-up of the connection's task.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    ready: Notify,
    /// Most payload bytes allowed to wait.
    max_bytes: usize,
}

impl Outbox {
    /// An empty queue that holds at most `max_bytes` of payload.
    pub fn new(max_bytes: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame for the socket. Hot path: no allocation while the
    /// deque has room, one short lock.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut q = self.lock();
        if q.closing.is_some() {
            return Err(PushError::Closed);
        }
        if q.bytes + frame.len() > self.max_bytes {
            q.closing = Some(crate::websocket::close_code::SLOW_CONSUMER);
            q.frames = VecDeque::new();
            q.bytes = 0;
            drop(q);
            self.ready.notify_one();
            return Err(PushError::Overflow);
        }
        q.bytes += frame.len();
        q.frames.push_back(frame);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// Takes the next frame to write.
    pub fn pop(&self) -> Option<Bytes> {
        let mut q = self.lock();
        let frame = q.frames.pop_front()?;
        q.bytes -= frame.len();
        if q.frames.is_empty() && q.frames.capacity() > RETAINED_SLOTS {
            q.frames = VecDeque::new();
        }
        Some(frame)
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

    /// Resolves when frames were pushed or a close was requested since the
    /// last wake-up (a stored permit makes a wake-up never lost).
    pub async fn ready(&self) {
        self.ready.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order() {
        let o = Outbox::new(100);
        o.push(Bytes::from_static(b"a")).unwrap();
        o.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(o.pop().unwrap(), "a");
        assert_eq!(o.pop().unwrap(), "b");
        assert!(o.pop().is_none());
    }

    #[test]
    fn overflow_closes_as_slow_consumer_and_drops_the_queue() {
        let o = Outbox::new(3);
        o.push(Bytes::from_static(b"ab")).unwrap();
        assert_eq!(o.push(Bytes::from_static(b"cd")), Err(PushError::Overflow));
        assert_eq!(o.closing(), Some(4001));
        assert!(o.pop().is_none());
        assert_eq!(o.push(Bytes::from_static(b"e")), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn a_push_before_waiting_is_not_lost() {
        let o = Outbox::new(10);
        o.push(Bytes::from_static(b"a")).unwrap();
        o.ready().await;
        assert!(o.pop().is_some());
    }
}
