//! WebSocket framing (RFC 6455), server side, after the upgrade.
//!
//! fastwebsockets performs the HTTP upgrade handshake; the frames themselves
//! are read here and written by the outbox (`crate::outbox`), because two
//! measured limits of fastwebsockets 0.10 matter for this service (see
//! `docs/ARCHITECTURE.md`): its read half keeps an 8 KiB buffer for the
//! connection's whole life, and an oversized frame drops the TCP connection
//! instead of answering with close 1009.
//!
//! Every byte a client sends is hostile, so [`FrameReader`] is strict and
//! cheap to refuse with:
//! - it fails as early as the bytes allow: reserved bits, an unknown opcode,
//!   an unmasked frame, a continuation with no message started or a new data
//!   frame inside a fragmented one are refused from the frame's first two
//!   bytes (1002), before its payload is read;
//! - lengths are checked before anything is buffered: a 64-bit length with
//!   its most significant bit set, or one that is not in its shortest form,
//!   is 1002; a control frame over 125 bytes or fragmented is 1002; a data
//!   frame that would take the message being assembled past the limit is
//!   1009, from its header; every length sum is checked arithmetic;
//! - text is UTF-8, checked as fragments arrive (a message that can no
//!   longer become valid UTF-8 is 1007 at once, not at its last fragment);
//! - a close frame's code and reason are checked (RFC 6455 §7.4): a 1-byte
//!   payload or a code that may not be sent is 1002, a reason that is not
//!   UTF-8 is 1007.
//!
//! Memory: the reader holds bytes only while a frame or a fragmented message
//! is incomplete (an idle connection holds no buffer at all), and never more
//! than one frame's bytes plus one read beyond the message limit.

use std::fmt;

/// Frame opcodes.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Close codes this server sends (documented in `docs/PROTOCOL.md` §10).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down or draining.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame broke RFC 6455.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The client's close frame carried no code (never sent on the wire:
    /// the echo is then an empty close frame; used as a metric label).
    pub const NO_STATUS: u16 = 1005;
    /// The connection ended without a close frame (metric label only).
    pub const ABNORMAL: u16 = 1006;
    /// A text message (or a close reason) was not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message was larger than the limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The server failed while serving the connection (a bug: counted).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The server lost the member's place in its room (the store could not
    /// take it back after a loss): reconnect and join again.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The member's outbound queue overflowed: it reads slower than its room talks.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// No WebSocket pong arrived within the read timeout.
    pub const READ_TIMEOUT: u16 = 4002;
    /// A message (a fragmented one, or a frame arriving slowly) did not
    /// complete within the message timeout.
    pub const MESSAGE_TIMEOUT: u16 = 4003;
}

/// Whether a peer may put `code` in a close frame (RFC 6455 §7.4.1 and the
/// IANA registry: 1004–1006 and 1015 are reserved, below 1000 and 1016–2999
/// are not used, 3000–4999 are for libraries and applications).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Longest control-frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest frame header a client sends: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_CLIENT_HEADER: usize = 14;

/// One thing a client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A complete (reassembled, unmasked) data message; `text` ones are
    /// valid UTF-8.
    Message { text: bool, payload: Vec<u8> },
    /// A ping; answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong: the client is alive.
    Pong,
    /// The client closes, with its (valid) code if it gave one. Echo the
    /// code (or an empty close frame when there was none), then close.
    Close(Option<u16>),
}

/// A framing violation; the connection is closed with [`close_code`](Self::close_code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message would exceed the limit (1009).
    #[error("message larger than the limit")]
    TooBig,
    /// A frame broke RFC 6455 (1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or close reason is not UTF-8 (1007).
    #[error("invalid UTF-8 in a {0}")]
    InvalidUtf8(&'static str),
}

impl FrameError {
    /// The close code that answers this error.
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::TooBig => close_code::MESSAGE_TOO_BIG,
            FrameError::Protocol(_) => close_code::PROTOCOL_ERROR,
            FrameError::InvalidUtf8(_) => close_code::INVALID_PAYLOAD,
        }
    }
}

/// A fragmented data message being assembled.
struct Partial {
    /// Text (UTF-8 checked) or binary.
    text: bool,
    /// The payload so far, unmasked.
    payload: Vec<u8>,
    /// How much of `payload` is known to be valid UTF-8 (text only); the
    /// rest is at most the first 3 bytes of one character.
    utf8_checked: usize,
}

/// Reassembles client frames from the bytes read off the socket.
pub struct FrameReader {
    /// Bytes read; those before `consumed` are processed already. Empty,
    /// with no capacity, when nothing is pending.
    buf: Vec<u8>,
    /// How many bytes of `buf` are processed.
    consumed: usize,
    /// A fragmented message being assembled (boxed: rare, and an idle
    /// connection should pay one pointer for it).
    partial: Option<Box<Partial>>,
    /// The largest message accepted, in bytes.
    max_message_bytes: usize,
    /// A close frame or an error was returned: nothing more is read.
    done: bool,
}

impl fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the bytes: they are a client's (encrypted) messages.
        f.debug_struct("FrameReader")
            .field("pending_bytes", &self.pending_bytes())
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

impl FrameReader {
    /// A reader that refuses messages over `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            consumed: 0,
            partial: None,
            max_message_bytes,
            done: false,
        }
    }

    /// Adds bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.done || bytes.is_empty() {
            return;
        }
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held: unprocessed input plus the message being assembled.
    pub fn pending_bytes(&self) -> usize {
        (self.buf.len() - self.consumed) + self.partial.as_ref().map_or(0, |p| p.payload.len())
    }

    /// Whether a message (or a frame) has started and not completed: the
    /// connection holds bytes for it, so it must complete in time.
    pub fn is_mid_message(&self) -> bool {
        self.pending_bytes() > 0 || self.partial.is_some()
    }

    /// Returns the next complete event, `None` when more bytes are needed.
    /// After a close frame or an error nothing more is returned.
    pub fn next_event(&mut self) -> Result<Option<Incoming>, FrameError> {
        if self.done {
            return Ok(None);
        }
        match self.next_event_inner() {
            Ok(event) => {
                if matches!(event, Some(Incoming::Close(_))) {
                    self.finish();
                }
                self.release_idle_buffer();
                Ok(event)
            }
            Err(e) => {
                self.finish();
                Err(e)
            }
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.buf = Vec::new();
        self.consumed = 0;
        self.partial = None;
    }

    fn next_event_inner(&mut self) -> Result<Option<Incoming>, FrameError> {
        loop {
            let Some(frame) = self.parse_header()? else {
                return Ok(None);
            };
            let start = self.consumed + frame.header_len;
            let end = start
                .checked_add(frame.payload_len)
                .ok_or(FrameError::TooBig)?;
            if self.buf.len() < end {
                return Ok(None);
            }
            self.consumed = end;
            if let Some(event) = self.assemble(frame, start, end)? {
                return Ok(Some(event));
            }
        }
    }

    /// Frees the read buffer once nothing is pending, so an idle connection
    /// holds no buffer at all.
    fn release_idle_buffer(&mut self) {
        if self.consumed == self.buf.len() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
            self.consumed = 0;
        }
    }

    /// The next frame's header, refusing what breaks the RFC or the limit
    /// as soon as the bytes that show it are there.
    fn parse_header(&self) -> Result<Option<FrameHeader>, FrameError> {
        let b = &self.buf[self.consumed..];
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        let fin = first & 0x80 != 0;
        if first & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        let op = first & 0x0F;
        let is_control = op & 0x8 != 0;
        match op {
            opcode::CONTINUATION if self.partial.is_none() => {
                return Err(FrameError::Protocol("continuation without a message"));
            }
            opcode::TEXT | opcode::BINARY if self.partial.is_some() => {
                return Err(FrameError::Protocol("new message inside a fragmented one"));
            }
            opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !fin {
                    return Err(FrameError::Protocol("fragmented control frame"));
                }
            }
            _ => return Err(FrameError::Protocol("unknown opcode")),
        }
        let Some(&second) = b.get(1) else {
            return Ok(None);
        };
        if second & 0x80 == 0 {
            return Err(FrameError::Protocol("client frame not masked"));
        }
        let (payload_len, len_bytes) = match second & 0x7F {
            126 => {
                let Some(ext) = b.get(2..4) else {
                    return Ok(None);
                };
                let len = u16::from_be_bytes([ext[0], ext[1]]);
                if len < 126 {
                    return Err(FrameError::Protocol("length not in its shortest form"));
                }
                (u64::from(len), 2)
            }
            127 => {
                let Some(ext) = b.get(2..10) else {
                    return Ok(None);
                };
                let mut v = [0u8; 8];
                v.copy_from_slice(ext);
                let len = u64::from_be_bytes(v);
                if len >> 63 != 0 {
                    return Err(FrameError::Protocol("64-bit length with its top bit set"));
                }
                if len <= u64::from(u16::MAX) {
                    return Err(FrameError::Protocol("length not in its shortest form"));
                }
                (len, 8)
            }
            n => (u64::from(n), 0),
        };
        if is_control {
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(FrameError::Protocol("control frame longer than 125 bytes"));
            }
        } else {
            // Refuse an oversized message from its header alone.
            let assembled = self.partial.as_ref().map_or(0, |p| p.payload.len()) as u64;
            let total = assembled
                .checked_add(payload_len)
                .ok_or(FrameError::TooBig)?;
            if total > self.max_message_bytes as u64 {
                return Err(FrameError::TooBig);
            }
        }
        let payload_len = usize::try_from(payload_len).map_err(|_| FrameError::TooBig)?;
        let mask_at = 2 + len_bytes;
        let Some(mask) = b.get(mask_at..mask_at + 4) else {
            return Ok(None);
        };
        Ok(Some(FrameHeader {
            fin,
            opcode: op,
            mask: [mask[0], mask[1], mask[2], mask[3]],
            header_len: mask_at + 4,
            payload_len,
        }))
    }

    /// Handles one complete frame whose payload is `buf[start..end]`.
    fn assemble(
        &mut self,
        frame: FrameHeader,
        start: usize,
        end: usize,
    ) -> Result<Option<Incoming>, FrameError> {
        let masked = &self.buf[start..end];
        match frame.opcode {
            opcode::TEXT | opcode::BINARY => {
                let text = frame.opcode == opcode::TEXT;
                let mut payload = masked.to_vec();
                unmask(&mut payload, frame.mask);
                if frame.fin {
                    if text && std::str::from_utf8(&payload).is_err() {
                        return Err(FrameError::InvalidUtf8("text message"));
                    }
                    return Ok(Some(Incoming::Message { text, payload }));
                }
                let mut partial = Partial {
                    text,
                    payload,
                    utf8_checked: 0,
                };
                partial.check_utf8(false)?;
                self.partial = Some(Box::new(partial));
                Ok(None)
            }
            opcode::CONTINUATION => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(FrameError::Protocol("continuation without a message"));
                };
                let from = partial.payload.len();
                partial.payload.extend_from_slice(masked);
                unmask(&mut partial.payload[from..], frame.mask);
                partial.check_utf8(frame.fin)?;
                if !frame.fin {
                    return Ok(None);
                }
                Ok(self.partial.take().map(|p| Incoming::Message {
                    text: p.text,
                    payload: p.payload,
                }))
            }
            opcode::PING => {
                let mut payload = masked.to_vec();
                unmask(&mut payload, frame.mask);
                Ok(Some(Incoming::Ping(payload)))
            }
            opcode::PONG => Ok(Some(Incoming::Pong)),
            opcode::CLOSE => {
                let mut payload = masked.to_vec();
                unmask(&mut payload, frame.mask);
                parse_close(&payload).map(|code| Some(Incoming::Close(code)))
            }
            _ => Err(FrameError::Protocol("unknown opcode")),
        }
    }
}

impl Partial {
    /// Checks the UTF-8 of what arrived since the last check; `complete`
    /// when the message ended (no character may be left unfinished).
    fn check_utf8(&mut self, complete: bool) -> Result<(), FrameError> {
        if !self.text {
            return Ok(());
        }
        let unchecked = &self.payload[self.utf8_checked..];
        match std::str::from_utf8(unchecked) {
            Ok(_) => self.utf8_checked = self.payload.len(),
            // An unfinished character at the end may still complete.
            Err(e) if e.error_len().is_none() && !complete => {
                self.utf8_checked += e.valid_up_to();
            }
            Err(_) => return Err(FrameError::InvalidUtf8("text message")),
        }
        Ok(())
    }
}

/// A close frame's code (RFC 6455 §5.5.1, §7.4): none, or a code a peer may
/// send followed by a UTF-8 reason.
fn parse_close(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(FrameError::Protocol("close code that may not be sent"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(FrameError::InvalidUtf8("close reason"));
            }
            Ok(Some(code))
        }
    }
}

/// XORs `payload` with the frame's mask (RFC 6455 §5.3), 8 bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// The header of an unmasked server frame (FIN set), and its length.
pub fn frame_header(opcode: u8, payload_len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    if payload_len < 126 {
        h[1] = payload_len as u8;
        (h, 2)
    } else if let Ok(len) = u16::try_from(payload_len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&len.to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        (h, 10)
    }
}

/// The payload of a close frame: the code, big-endian.
pub fn close_payload(code: u16) -> [u8; 2] {
    code.to_be_bytes()
}

#[cfg(test)]
mod tests;
