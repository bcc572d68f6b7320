//! WebSocket framing (RFC 6455), server side, after the upgrade.
//!
//! fastwebsockets performs the HTTP upgrade handshake; the frames themselves
//! are read and written here because two measured limits of
//! fastwebsockets 0.10 matter for this service (see `docs/ARCHITECTURE.md`):
//! its read half keeps an 8 KiB buffer for the connection's whole life, and
//! an oversized frame drops the TCP connection instead of answering with
//! close 1009. [`FrameReader`] holds bytes only while a frame is incomplete
//! (an idle connection holds none) and refuses an oversized message from its
//! header, before reading the payload. Frames are written by the outbox
//! (`crate::outbox`), header and shared payload in one vectored write.

/// Frame opcodes.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Close codes this server sends (documented in `docs/PROTOCOL.md`).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down or draining.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame broke RFC 6455.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message was larger than the limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The member's outbound queue overflowed: it reads slower than its room talks.
    pub const SLOW_CONSUMER: u16 = 4001;
    /// No WebSocket pong arrived within the read timeout.
    pub const READ_TIMEOUT: u16 = 4002;
}

/// Longest control-frame payload (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// One thing a client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A complete (reassembled) text or binary message, unmasked.
    Message(Vec<u8>),
    /// A ping; answer with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong: the client is alive.
    Pong,
    /// The client closes, with its code if it gave one.
    Close(Option<u16>),
}

/// A framing violation; the connection is closed with the given code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message larger than the limit")]
    TooBig,
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

impl FrameError {
    /// The close code that answers this error.
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::TooBig => close_code::MESSAGE_TOO_BIG,
            FrameError::Protocol(_) => close_code::PROTOCOL_ERROR,
        }
    }
}

/// Reassembles client frames from the bytes read off the socket.
#[derive(Debug)]
pub struct FrameReader {
    /// Bytes read but not yet consumed (empty, with no capacity, when idle).
    buf: Vec<u8>,
    /// A fragmented message being assembled.
    partial: Option<Vec<u8>>,
    /// The largest message accepted, in bytes.
    max_message_bytes: usize,
}

impl FrameReader {
    /// A reader that refuses messages over `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            partial: None,
            max_message_bytes,
        }
    }

    /// Adds bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Returns the next complete event, `None` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Incoming>, FrameError> {
        loop {
            let Some(frame) = self.parse_header()? else {
                self.release_idle_buffer();
                return Ok(None);
            };
            if self.buf.len() < frame.header_len + frame.payload_len {
                return Ok(None);
            }
            let mut payload: Vec<u8> =
                self.buf[frame.header_len..frame.header_len + frame.payload_len].to_vec();
            self.buf.drain(..frame.header_len + frame.payload_len);
            unmask(&mut payload, frame.mask);
            if let Some(event) = self.assemble(frame, payload)? {
                self.release_idle_buffer();
                return Ok(Some(event));
            }
        }
    }

    /// Frees the read buffer once nothing is pending, so an idle connection
    /// holds no buffer at all.
    fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
        }
    }

    fn parse_header(&self) -> Result<Option<FrameHeader>, FrameError> {
        let b = &self.buf;
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        let opcode = b[0] & 0x0F;
        if b[1] & 0x80 == 0 {
            return Err(FrameError::Protocol("client frame not masked"));
        }
        let (payload_len, len_bytes) = match b[1] & 0x7F {
            126 => {
                let Some(ext) = b.get(2..4) else {
                    return Ok(None);
                };
                (u16::from_be_bytes([ext[0], ext[1]]) as u64, 2)
            }
            127 => {
                let Some(ext) = b.get(2..10) else {
                    return Ok(None);
                };
                let mut v = [0u8; 8];
                v.copy_from_slice(ext);
                (u64::from_be_bytes(v), 8)
            }
            n => (n as u64, 0),
        };
        let is_control = opcode & 0x8 != 0;
        if is_control {
            if !fin {
                return Err(FrameError::Protocol("fragmented control frame"));
            }
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(FrameError::Protocol("control frame too long"));
            }
        } else {
            // Refuse an oversized message from its header alone.
            let assembled = self.partial.as_ref().map_or(0, Vec::len) as u64;
            if assembled + payload_len > self.max_message_bytes as u64 {
                return Err(FrameError::TooBig);
            }
        }
        let mask_at = 2 + len_bytes;
        let Some(mask) = b.get(mask_at..mask_at + 4) else {
            return Ok(None);
        };
        Ok(Some(FrameHeader {
            fin,
            opcode,
            mask: [mask[0], mask[1], mask[2], mask[3]],
            header_len: mask_at + 4,
            payload_len: payload_len as usize,
        }))
    }

    fn assemble(
        &mut self,
        frame: FrameHeader,
        payload: Vec<u8>,
    ) -> Result<Option<Incoming>, FrameError> {
        match frame.opcode {
            opcode::TEXT | opcode::BINARY => {
                if self.partial.is_some() {
                    return Err(FrameError::Protocol("new message inside a fragmented one"));
                }
                if frame.fin {
                    Ok(Some(Incoming::Message(payload)))
                } else {
                    self.partial = Some(payload);
                    Ok(None)
                }
            }
            opcode::CONTINUATION => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(FrameError::Protocol("continuation without a message"));
                };
                partial.extend_from_slice(&payload);
                if frame.fin {
                    Ok(self.partial.take().map(Incoming::Message))
                } else {
                    Ok(None)
                }
            }
            opcode::PING => Ok(Some(Incoming::Ping(payload))),
            opcode::PONG => Ok(Some(Incoming::Pong)),
            opcode::CLOSE => {
                let code =
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                Ok(Some(Incoming::Close(code)))
            }
            _ => Err(FrameError::Protocol("unknown opcode")),
        }
    }
}

struct FrameHeader {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
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
    } else if payload_len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
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
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    #[test]
    fn a_message_split_across_reads_is_reassembled() {
        let mut r = FrameReader::new(1000);
        let bytes = masked(0x82, b"hello");
        r.feed(&bytes[..3]);
        assert_eq!(r.next_event().unwrap(), None);
        r.feed(&bytes[3..]);
        assert_eq!(
            r.next_event().unwrap(),
            Some(Incoming::Message(b"hello".to_vec()))
        );
        assert!(r.buf.is_empty() && r.partial.is_none());
        assert_eq!(r.buf.capacity(), 0);
    }

    #[test]
    fn fragments_and_interleaved_pings_are_handled() {
        let mut r = FrameReader::new(1000);
        r.feed(&masked(0x02, b"he"));
        r.feed(&masked(0x89, b"p"));
        r.feed(&masked(0x80, b"llo"));
        assert_eq!(r.next_event().unwrap(), Some(Incoming::Ping(b"p".to_vec())));
        assert_eq!(
            r.next_event().unwrap(),
            Some(Incoming::Message(b"hello".to_vec()))
        );
    }

    #[test]
    fn a_message_of_exactly_the_limit_passes_and_one_more_byte_is_too_big() {
        let mut r = FrameReader::new(102_400);
        r.feed(&masked(0x82, &vec![7; 102_400]));
        assert!(
            matches!(r.next_event().unwrap(), Some(Incoming::Message(m)) if m.len() == 102_400)
        );
        let mut r = FrameReader::new(102_400);
        // only the header: refused before the payload arrives
        r.feed(&masked(0x82, &vec![7; 102_401])[..14]);
        assert_eq!(r.next_event(), Err(FrameError::TooBig));
    }

    #[test]
    fn fragments_count_towards_the_limit() {
        let mut r = FrameReader::new(10);
        r.feed(&masked(0x02, &[0; 6]));
        r.feed(&masked(0x80, &[0; 6]));
        assert_eq!(r.next_event(), Err(FrameError::TooBig));
    }

    #[test]
    fn unmasked_and_reserved_frames_are_protocol_errors() {
        let mut r = FrameReader::new(100);
        r.feed(&[0x82, 0x01, 0x00]);
        assert_eq!(r.next_event().unwrap_err().close_code(), 1002);
        let mut r = FrameReader::new(100);
        r.feed(&masked(0xC2, b"x"));
        assert!(r.next_event().is_err());
        let mut r = FrameReader::new(100);
        r.feed(&masked(0x80, b"x"));
        assert!(r.next_event().is_err());
    }

    #[test]
    fn close_carries_its_code() {
        let mut r = FrameReader::new(100);
        r.feed(&masked(0x88, &[0x03, 0xE8]));
        assert_eq!(r.next_event().unwrap(), Some(Incoming::Close(Some(1000))));
    }

    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(frame_header(2, 125).1, 2);
        assert_eq!(frame_header(2, 126).1, 4);
        assert_eq!(frame_header(2, 65_536).1, 10);
    }
}
