//! A minimal, strict RESP3 reader for the bus's subscriber connection.
//!
//! It reads what a Redis server sends a connection that said `HELLO 3` and
//! then only SUBSCRIBEs, UNSUBSCRIBEs, PUBLISHes, PINGs and the EVALSHA of
//! the join and leave scripts (or, on a Redis Cluster, the sharded forms):
//! pushes (`>`), replies (`+PONG`, the `HELLO` map, PUBLISH's integer, a
//! script's integer or bulk string) and errors (`-MOVED ...` included). A
//! message push (`>3 $7 message $<channel> $<payload>`, or `smessage`) is
//! parsed without allocating:
//! [`parse`] returns the byte ranges of the channel and the payload inside
//! the buffer, so the reader slices the payload as `Bytes` out of its read
//! buffer without copying it.
//!
//! It faces the network, so it is bounded: a bulk string longer than
//! [`MAX_BULK_LEN`], a line longer than [`MAX_LINE_LEN`], an aggregate of
//! more than [`MAX_AGGREGATE_LEN`] elements, nesting deeper than
//! [`MAX_DEPTH`] or a frame longer than [`MAX_FRAME_LEN`] is malformed, as
//! is anything RESP3 does not allow (negative or non-decimal lengths,
//! leading zeros, missing CRLF, RESP2 nulls, streamed strings, attributes).
//! Lengths are added with checked arithmetic. A malformed frame is a
//! connection error: the subscriber closes the connection and the bus
//! reconnects; nothing here panics.

use std::ops::Range;

/// Longest bulk string accepted (a message payload, a channel name, an
/// error text): 16 MiB, far above the largest bus message a relay publishes
/// (`max_message_bytes`, 100 KiB by default, plus the bus header).
pub const MAX_BULK_LEN: usize = 16 * 1024 * 1024;

/// Longest line accepted (a simple string, an error line, a number).
pub const MAX_LINE_LEN: usize = 4096;

/// Most elements of one aggregate (array, push, set; a map counts its
/// keys and values).
pub const MAX_AGGREGATE_LEN: usize = 1024;

/// Deepest nesting of aggregates (the `HELLO` reply nests 3 deep).
pub const MAX_DEPTH: usize = 8;

/// Longest frame accepted, header and every element included: one largest
/// bulk string plus 64 KiB. The subscriber's buffer never holds more than
/// this of an incomplete frame.
pub const MAX_FRAME_LEN: usize = MAX_BULK_LEN + 64 * 1024;

/// Longest push kind (`message`, `subscribe`, ...) looked at.
const MAX_KIND_LEN: usize = 64;

/// One frame read from the server; ranges index the buffer given to
/// [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `>3 message <channel> <payload>` (`smessage` for a shard channel): a
    /// message published on a channel this connection subscribes to.
    Message {
        channel: Range<usize>,
        payload: Range<usize>,
    },
    /// `>3 subscribe <channel> <count>` (`ssubscribe`): one channel's
    /// subscription confirmed.
    Subscribed { channel: Range<usize> },
    /// `>3 unsubscribe <channel|null> <count>` (`sunsubscribe`): one channel
    /// unsubscribed (null when there was nothing to unsubscribe), on request
    /// or by the server (a Redis Cluster slot moved away).
    Unsubscribed { channel: Option<Range<usize>> },
    /// Any other push (ignored).
    OtherPush,
    /// An error reply (`-` line or `!` blob): its text.
    Error { text: Range<usize> },
    /// An integer reply (`:<n>`): what PUBLISH answers (its receivers), or
    /// a script.
    Integer(i64),
    /// A bulk string reply (`$`): a script's answer.
    Bulk { data: Range<usize> },
    /// Any other reply (`+PONG`, the `HELLO` map).
    Reply,
}

/// Why a frame was refused (a connection error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed RESP3: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// Parses the frame at the start of `buf`: `Ok(Some((frame, length)))`
/// when it is complete, `Ok(None)` when more bytes are needed, `Err` when
/// it can never be valid.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, Malformed> {
    let mut cursor = Cursor { buf, pos: 0 };
    match cursor.frame() {
        Ok(frame) if cursor.pos <= MAX_FRAME_LEN => Ok(Some((frame, cursor.pos))),
        Ok(_) => Err(Malformed("frame too long")),
        Err(Stop::Incomplete) if buf.len() < MAX_FRAME_LEN => Ok(None),
        Err(Stop::Incomplete) => Err(Malformed("frame too long")),
        Err(Stop::Malformed(why)) => Err(Malformed(why)),
    }
}

/// Why parsing stopped.
enum Stop {
    /// The buffer ends inside the frame.
    Incomplete,
    /// The frame is invalid.
    Malformed(&'static str),
}

type Step<T> = Result<T, Stop>;

fn bad<T>(why: &'static str) -> Step<T> {
    Err(Stop::Malformed(why))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn frame(&mut self) -> Step<Frame> {
        match self.byte()? {
            b'>' => self.push(),
            b'-' => Ok(Frame::Error { text: self.line()? }),
            b'!' => Ok(Frame::Error { text: self.blob()? }),
            b':' => Ok(Frame::Integer(self.signed()?)),
            b'$' => Ok(Frame::Bulk { data: self.blob()? }),
            _ => {
                self.pos -= 1;
                self.skip(0)?;
                Ok(Frame::Reply)
            }
        }
    }

    /// A push, after its `>`.
    fn push(&mut self) -> Step<Frame> {
        let count = self.count()?;
        if count == 0 {
            return bad("empty push");
        }
        if self.byte()? != b'$' {
            return bad("push kind is not a bulk string");
        }
        let kind = self.blob()?;
        if kind.len() > MAX_KIND_LEN {
            return bad("push kind too long");
        }
        let rest = count - 1;
        match &self.buf[kind] {
            b"message" | b"smessage" => {
                if rest != 2 {
                    return bad("message push of the wrong length");
                }
                let channel = self.bulk()?;
                let payload = self.bulk()?;
                Ok(Frame::Message { channel, payload })
            }
            b"subscribe" | b"ssubscribe" => {
                if rest != 2 {
                    return bad("subscribe push of the wrong length");
                }
                let channel = self.bulk()?;
                self.integer()?;
                Ok(Frame::Subscribed { channel })
            }
            b"unsubscribe" | b"sunsubscribe" => {
                if rest != 2 {
                    return bad("unsubscribe push of the wrong length");
                }
                let channel = match self.byte()? {
                    b'$' => Some(self.blob()?),
                    b'_' => {
                        self.null()?;
                        None
                    }
                    _ => return bad("unsubscribe channel is not a bulk string"),
                };
                self.integer()?;
                Ok(Frame::Unsubscribed { channel })
            }
            _ => {
                for _ in 0..rest {
                    self.skip(1)?;
                }
                Ok(Frame::OtherPush)
            }
        }
    }

    fn byte(&mut self) -> Step<u8> {
        let b = *self.buf.get(self.pos).ok_or(Stop::Incomplete)?;
        self.pos += 1;
        Ok(b)
    }

    /// The rest of a line, without its CRLF.
    fn line(&mut self) -> Step<Range<usize>> {
        let start = self.pos;
        let window = &self.buf[start..];
        let searched = &window[..window.len().min(MAX_LINE_LEN + 2)];
        match searched.iter().position(|&b| b == b'\n') {
            Some(0) => bad("line without CR"),
            Some(i) if searched[i - 1] == b'\r' => {
                self.pos = start + i + 1;
                Ok(start..start + i - 1)
            }
            Some(_) => bad("line without CR"),
            None if searched.len() >= MAX_LINE_LEN + 2 => bad("line too long"),
            None => Err(Stop::Incomplete),
        }
    }

    /// A decimal length (no sign, no leading zero).
    fn length(&mut self, max: usize) -> Step<usize> {
        let line = self.line()?;
        let digits = &self.buf[line];
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
            return bad("invalid length");
        }
        let mut n: usize = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return bad("invalid length");
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(d - b'0')))
                .ok_or(Stop::Malformed("length overflows"))?;
            if n > max {
                return bad("length over the limit");
            }
        }
        Ok(n)
    }

    /// An aggregate's element count.
    fn count(&mut self) -> Step<usize> {
        self.length(MAX_AGGREGATE_LEN)
    }

    /// A blob's body, after its type byte.
    fn blob(&mut self) -> Step<Range<usize>> {
        let len = self.length(MAX_BULK_LEN)?;
        let start = self.pos;
        let end = start
            .checked_add(len)
            .ok_or(Stop::Malformed("length overflows"))?;
        let after = end
            .checked_add(2)
            .ok_or(Stop::Malformed("length overflows"))?;
        if after > self.buf.len() {
            return Err(Stop::Incomplete);
        }
        if &self.buf[end..after] != b"\r\n" {
            return bad("blob without CRLF");
        }
        self.pos = after;
        Ok(start..end)
    }

    /// A bulk string, type byte included.
    fn bulk(&mut self) -> Step<Range<usize>> {
        if self.byte()? != b'$' {
            return bad("expected a bulk string");
        }
        self.blob()
    }

    /// An integer, type byte included.
    fn integer(&mut self) -> Step<i64> {
        if self.byte()? != b':' {
            return bad("expected an integer");
        }
        self.signed()
    }

    /// A signed decimal line (an integer's body).
    fn signed(&mut self) -> Step<i64> {
        let line = self.line()?;
        let text = &self.buf[line];
        let (negative, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        if digits.is_empty() {
            return bad("invalid integer");
        }
        let mut n: i64 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return bad("invalid integer");
            }
            let d = i64::from(d - b'0');
            n = n
                .checked_mul(10)
                .and_then(|n| {
                    if negative {
                        n.checked_sub(d)
                    } else {
                        n.checked_add(d)
                    }
                })
                .ok_or(Stop::Malformed("integer overflows"))?;
        }
        Ok(n)
    }

    /// A null's body (an empty line).
    fn null(&mut self) -> Step<()> {
        if self.line()?.is_empty() {
            Ok(())
        } else {
            bad("invalid null")
        }
    }

    /// Skips one value of any type at nesting `depth`.
    fn skip(&mut self, depth: usize) -> Step<()> {
        match self.byte()? {
            b'+' | b'-' | b',' => self.line().map(drop),
            b':' => self.signed().map(drop),
            b'(' => {
                let line = self.line()?;
                let text = &self.buf[line];
                let digits = text.strip_prefix(b"-").unwrap_or(text);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return bad("invalid big number");
                }
                Ok(())
            }
            b'#' => {
                let line = self.line()?;
                match &self.buf[line] {
                    b"t" | b"f" => Ok(()),
                    _ => bad("invalid boolean"),
                }
            }
            b'_' => self.null(),
            b'$' | b'!' | b'=' => self.blob().map(drop),
            kind @ (b'*' | b'>' | b'~' | b'%') => {
                let depth = depth + 1;
                if depth > MAX_DEPTH {
                    return bad("nested too deep");
                }
                let count = self.count()?;
                let elements = if kind == b'%' {
                    count
                        .checked_mul(2)
                        .ok_or(Stop::Malformed("length overflows"))?
                } else {
                    count
                };
                if elements > MAX_AGGREGATE_LEN {
                    return bad("length over the limit");
                }
                for _ in 0..elements {
                    self.skip(depth)?;
                }
                Ok(())
            }
            b'|' => bad("attributes are not supported"),
            _ => bad("unknown type"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(channel: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut v = b">3\r\n$7\r\nmessage\r\n".to_vec();
        for part in [channel, payload] {
            v.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            v.extend_from_slice(part);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    /// Every complete frame of `input`, parsed from a buffer filled one
    /// split at a time (`split` bytes first, then the rest).
    fn frames_split(input: &[u8], split: usize) -> Result<Vec<(Frame, Vec<u8>)>, Malformed> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in [&input[..split], &input[split..]] {
            buf.extend_from_slice(chunk);
            while let Some((frame, used)) = parse(&buf)? {
                out.push((frame, buf[..used].to_vec()));
                buf.drain(..used);
            }
        }
        assert!(buf.is_empty(), "bytes left over");
        Ok(out)
    }

    fn every_split(input: &[u8]) -> Vec<(Frame, Vec<u8>)> {
        let whole = frames_split(input, input.len()).expect("valid");
        for split in 0..=input.len() {
            assert_eq!(
                frames_split(input, split).expect("valid"),
                whole,
                "split at {split}"
            );
        }
        whole
    }

    #[test]
    fn a_message_push_gives_the_channel_and_payload_ranges() {
        let input = message(b"arthas:room:r1", b"\x00\x01payload\r\n");
        let (frame, used) = parse(&input).expect("valid").expect("complete");
        assert_eq!(used, input.len());
        let Frame::Message { channel, payload } = frame else {
            panic!("not a message: {frame:?}")
        };
        assert_eq!(&input[channel], b"arthas:room:r1");
        assert_eq!(&input[payload], b"\x00\x01payload\r\n");
    }

    #[test]
    fn every_frame_of_a_session_parses_at_every_split() {
        let mut input = Vec::new();
        // HELLO's map, nested.
        input.extend_from_slice(
            b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n\
              $7\r\nmodules\r\n*1\r\n%1\r\n$4\r\nname\r\n$2\r\nxy\r\n",
        );
        input.extend_from_slice(b">3\r\n$9\r\nsubscribe\r\n$3\r\nch1\r\n:1\r\n");
        input.extend_from_slice(&message(b"ch1", b"hello"));
        input.extend_from_slice(&message(b"ch1", b""));
        input.extend_from_slice(b"+PONG\r\n");
        input.extend_from_slice(b">3\r\n$11\r\nunsubscribe\r\n$3\r\nch1\r\n:0\r\n");
        input.extend_from_slice(b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n");
        input.extend_from_slice(b">4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\nc\r\n$1\r\np\r\n");
        input.extend_from_slice(b"-ERR unknown command\r\n");
        input.extend_from_slice(b"!5\r\nOOPS!\r\n");
        input.extend_from_slice(b"~3\r\n#t\r\n,1.5\r\n*2\r\n(-12\r\n=7\r\ntxt:abc\r\n");
        // PUBLISH's answers: receivers.
        input.extend_from_slice(b":3\r\n:0\r\n:-1\r\n");
        // A script's answers: a bulk string, also empty or holding CRLF.
        input.extend_from_slice(b"$4\r\n\x98ab\n\r\n$0\r\n\r\n$2\r\n\r\n\r\n");
        let frames = every_split(&input);
        let kinds: Vec<&Frame> = frames.iter().map(|(f, _)| f).collect();
        assert_eq!(kinds.len(), 17);
        assert_eq!(*kinds[0], Frame::Reply);
        let Frame::Subscribed { channel } = kinds[1].clone() else {
            panic!("{:?}", kinds[1])
        };
        assert_eq!(&frames[1].1[channel], b"ch1");
        let Frame::Message { payload, .. } = kinds[2].clone() else {
            panic!("{:?}", kinds[2])
        };
        assert_eq!(&frames[2].1[payload], b"hello");
        assert!(matches!(kinds[3], Frame::Message { payload, .. } if payload.is_empty()));
        assert_eq!(*kinds[4], Frame::Reply);
        assert!(matches!(kinds[5], Frame::Unsubscribed { channel: Some(_) }));
        assert_eq!(*kinds[6], Frame::Unsubscribed { channel: None });
        assert_eq!(*kinds[7], Frame::OtherPush);
        let Frame::Error { text } = kinds[8].clone() else {
            panic!("{:?}", kinds[8])
        };
        assert_eq!(&frames[8].1[text], b"ERR unknown command");
        assert!(matches!(kinds[9], Frame::Error { .. }));
        assert_eq!(*kinds[10], Frame::Reply);
        assert_eq!(*kinds[11], Frame::Integer(3));
        assert_eq!(*kinds[12], Frame::Integer(0));
        assert_eq!(*kinds[13], Frame::Integer(-1));
        let bulks: Vec<&[u8]> = (14..17)
            .map(|i| match kinds[i].clone() {
                Frame::Bulk { data } => &frames[i].1[data],
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(bulks, [&b"\x98ab\n"[..], b"", b"\r\n"]);
    }

    #[test]
    fn the_sharded_pushes_of_a_cluster_parse_as_their_plain_forms() {
        let mut input = Vec::new();
        input.extend_from_slice(b">3\r\n$10\r\nssubscribe\r\n$11\r\narthas:{r1}\r\n:1\r\n");
        input.extend_from_slice(b">3\r\n$8\r\nsmessage\r\n$11\r\narthas:{r1}\r\n$5\r\nhello\r\n");
        input.extend_from_slice(b">3\r\n$12\r\nsunsubscribe\r\n$11\r\narthas:{r1}\r\n:0\r\n");
        input.extend_from_slice(b">3\r\n$12\r\nsunsubscribe\r\n_\r\n:0\r\n");
        input.extend_from_slice(b"-MOVED 1234 127.0.0.1:7001\r\n");
        let frames = every_split(&input);
        assert_eq!(frames.len(), 5);
        let Frame::Subscribed { channel } = frames[0].0.clone() else {
            panic!("{:?}", frames[0].0)
        };
        assert_eq!(&frames[0].1[channel], b"arthas:{r1}");
        let Frame::Message { channel, payload } = frames[1].0.clone() else {
            panic!("{:?}", frames[1].0)
        };
        assert_eq!(&frames[1].1[channel], b"arthas:{r1}");
        assert_eq!(&frames[1].1[payload], b"hello");
        let Frame::Unsubscribed {
            channel: Some(channel),
        } = frames[2].0.clone()
        else {
            panic!("{:?}", frames[2].0)
        };
        assert_eq!(&frames[2].1[channel], b"arthas:{r1}");
        assert_eq!(frames[3].0, Frame::Unsubscribed { channel: None });
        let Frame::Error { text } = frames[4].0.clone() else {
            panic!("{:?}", frames[4].0)
        };
        assert_eq!(&frames[4].1[text], b"MOVED 1234 127.0.0.1:7001");
    }

    #[test]
    fn malformed_frames_are_refused_at_every_split() {
        let cases: &[&[u8]] = &[
            b"$-1\r\n",
            b"*-1\r\n",
            b"$?\r\n",
            b"$01\r\na\r\n",
            b"$+1\r\na\r\n",
            b"$1\r\nab\r\n",
            b"$2\r\nab\n\r\n",
            b"+OK\n",
            b"\n",
            b"|1\r\n+a\r\n+b\r\n+OK\r\n",
            b"?\r\n",
            b">0\r\n",
            b">1\r\n+message\r\n",
            b">2\r\n$7\r\nmessage\r\n$1\r\nc\r\n",
            b">3\r\n$7\r\nmessage\r\n:1\r\n$1\r\np\r\n",
            b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n$1\r\n1\r\n",
            b">3\r\n$11\r\nunsubscribe\r\n_x\r\n:0\r\n",
            b":12a\r\n",
            b":-\r\n",
            b":99999999999999999999\r\n",
            b"#x\r\n",
            b"(1.5\r\n",
            b"$99999999999999999999999\r\n",
            b"$16777217\r\n",
            b"*1025\r\n",
            b"%513\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ];
        for case in cases {
            for split in 0..=case.len() {
                let outcome = frames_split(case, split);
                assert!(
                    outcome.is_err(),
                    "{:?} accepted at split {split}: {outcome:?}",
                    String::from_utf8_lossy(case)
                );
            }
        }
    }

    #[test]
    fn lines_and_frames_are_bounded() {
        let long = vec![b'a'; MAX_LINE_LEN + 2];
        let mut line = b"+".to_vec();
        line.extend_from_slice(&long);
        assert!(parse(&line).is_err());
        // The longest line is fine.
        let mut ok = b"+".to_vec();
        ok.extend_from_slice(&long[..MAX_LINE_LEN]);
        ok.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&ok), Ok(Some((Frame::Reply, _)))));
        // An incomplete frame as long as the limit is refused.
        let mut big = format!(">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n${MAX_BULK_LEN}\r\n").into_bytes();
        assert_eq!(parse(&big), Ok(None));
        big.resize(MAX_FRAME_LEN, b'x');
        assert!(parse(&big).is_err());
        // A push of many bulk strings, each within the limit, whose total is
        // not.
        let n = MAX_FRAME_LEN / MAX_BULK_LEN + 1;
        let mut many = format!(">{}\r\n$4\r\nmany\r\n", n + 1).into_bytes();
        let body = vec![b'y'; MAX_BULK_LEN];
        for _ in 0..n {
            many.extend_from_slice(format!("${MAX_BULK_LEN}\r\n").as_bytes());
            many.extend_from_slice(&body);
            many.extend_from_slice(b"\r\n");
        }
        assert!(parse(&many).is_err());
    }
}
