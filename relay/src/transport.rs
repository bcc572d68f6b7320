//! The byte stream under a WebSocket: plain TCP, or TLS over TCP.
//!
//! The connection task and the outbox drive the socket with readiness and
//! non-blocking calls (`readable`, `try_read`, `try_write_vectored`) rather
//! than `AsyncRead`/`AsyncWrite`, so a fan-out can write a frame straight to
//! an idle socket from the publisher's task. [`Transport`] keeps that shape
//! for both kinds of socket. It is an enum, not a trait object: a plain
//! connection pays one predictable branch per call, no vtable and no extra
//! allocation (the TLS state is boxed, so the plain variant stays the size
//! of a `TcpStream` plus the tag).
//!
//! TLS ([`TlsSocket`]): rustls' connection state sits behind a mutex,
//! shared by the connection's task (reads) and the outbox (writes from any
//! task); it is held only for non-blocking calls, never across an await.
//! Plaintext handed to rustls is encrypted at once into its outgoing
//! buffer and written to the socket as far as the socket takes it. While
//! ciphertext is still waiting, further writes report `WouldBlock`, so a
//! connection never buffers more than about one frame of ciphertext beyond
//! the outbox's own bounded queue; [`Transport::has_pending_output`] tells
//! the outbox to wake the connection's task, which finishes the write
//! ([`Transport::flush_pending`]). Direct writes matter for TLS too: queueing
//! every TLS frame for the connection's task instead cost 42 % more
//! instructions per delivery (callgrind; docs/BENCHMARKS.md).

use std::io::{self, IoSlice, Read, Write};
use std::sync::{Mutex, MutexGuard};

use rustls::ServerConnection;
use tokio::net::TcpStream;

/// A connection's socket.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP (`ws://`).
    Plain(TcpStream),
    /// TLS over TCP (`wss://`).
    Tls(Box<TlsSocket>),
}

/// TLS over a TCP socket, after the handshake.
pub struct TlsSocket {
    /// The socket the records travel on.
    tcp: TcpStream,
    /// rustls' state: keys, plaintext read but not yet taken, ciphertext
    /// not yet written.
    session: Mutex<ServerConnection>,
}

impl std::fmt::Debug for TlsSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSocket")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// `io::Read` over a tokio socket's non-blocking read (readiness is
/// cleared on `WouldBlock`, as with a direct `try_read`).
struct TryRead<'a>(&'a TcpStream);

impl Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// `io::Write` over a tokio socket's non-blocking writes.
struct TryWrite<'a>(&'a TcpStream);

impl Write for TryWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsSocket {
    /// The socket and the session of a finished handshake. Plaintext the
    /// session already decrypted stays in it and is read first.
    pub fn new(tcp: TcpStream, session: ServerConnection) -> TlsSocket {
        TlsSocket {
            tcp,
            session: Mutex::new(session),
        }
    }

    fn session(&self) -> MutexGuard<'_, ServerConnection> {
        // The session is consistent after a panic elsewhere (every call
        // that changes it is a single rustls call).
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes waiting ciphertext until none is left (`Ok`) or the socket
    /// would block (`WouldBlock`).
    fn write_out(session: &mut ServerConnection, tcp: &TcpStream) -> io::Result<()> {
        while session.wants_write() {
            if session.write_tls(&mut TryWrite(tcp))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    fn has_plaintext(&self) -> bool {
        self.session()
            .process_new_packets()
            .is_ok_and(|state| state.plaintext_bytes_to_read() > 0)
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut session = self.session();
        loop {
            match session.reader().read(buf) {
                // Ok(0): the client sent close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if session.read_tls(&mut TryRead(&self.tcp))? == 0 {
                return Ok(0);
            }
            if let Err(e) = session.process_new_packets() {
                // Tell the client why (a TLS alert), as far as it goes.
                let _ = Self::write_out(&mut session, &self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // A key update or other handshake message may want an answer.
            match Self::write_out(&mut session, &self.tcp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut session = self.session();
        // Ciphertext still waiting: the socket is the bottleneck; take
        // nothing more until it drains.
        Self::write_out(&mut session, &self.tcp)?;
        let accepted = session.writer().write_vectored(bufs)?;
        match Self::write_out(&mut session, &self.tcp) {
            Ok(()) => Ok(accepted),
            // Accepted and encrypted; the rest goes out with the next write
            // or `flush_pending`.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(accepted),
            Err(e) => Err(e),
        }
    }

    fn has_pending_output(&self) -> bool {
        self.session().wants_write()
    }

    async fn flush_pending(&self) -> io::Result<()> {
        loop {
            match Self::write_out(&mut self.session(), &self.tcp) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            self.tcp.writable().await?;
        }
    }

    fn close_notify(&self) {
        let mut session = self.session();
        session.send_close_notify();
        let _ = Self::write_out(&mut session, &self.tcp);
    }
}

impl Transport {
    /// The TCP socket under the stream.
    #[inline]
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => &tls.tcp,
        }
    }

    /// Resolves when a read may make progress (for TLS: plaintext is
    /// already decrypted, or the socket has bytes).
    #[inline]
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.readable().await,
            Transport::Tls(tls) => {
                if tls.has_plaintext() {
                    return Ok(());
                }
                tls.tcp.readable().await
            }
        }
    }

    /// Reads what is available without blocking: `Ok(0)` at the end of
    /// the stream, `WouldBlock` when nothing is.
    #[inline]
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.try_read(buf),
            Transport::Tls(tls) => tls.try_read(buf),
        }
    }

    /// Hot path: [`try_read`](Self::try_read) into the spare capacity of
    /// `buf` (appended; plain TCP fills it without zeroing it first).
    ///
    /// Plain TCP: a read that leaves part of `buf`'s spare capacity unfilled
    /// has drained the socket, so it also clears the socket's read readiness
    /// (epoll(7): "if you call read(2) by asking to read a certain amount of
    /// data and read(2) returns a lower number of bytes, you can be sure of
    /// having exhausted the read I/O space"). The next
    /// [`readable`](Self::readable) then waits for new bytes instead of
    /// letting a second read find nothing: half of a chatting server's
    /// `recvfrom` calls were that `EAGAIN` (docs/BENCHMARKS.md). tokio
    /// clears readiness only if no new readiness event arrived since the
    /// read began, so bytes that came in meanwhile still wake the reader.
    #[inline]
    pub fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => {
                let spare = buf.capacity() - buf.len();
                let mut short = None;
                let read = tcp.try_io(tokio::io::Interest::READABLE, || {
                    let n = tcp.try_read_buf(buf)?;
                    if n > 0 && n < spare {
                        short = Some(n);
                        // Not an error: the way to have tokio clear readiness.
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(n)
                });
                match short {
                    Some(n) => Ok(n),
                    None => read,
                }
            }
            Transport::Tls(tls) => {
                let start = buf.len();
                buf.resize(buf.capacity().max(start + 1), 0);
                let read = tls.try_read(&mut buf[start..]);
                buf.truncate(start + *read.as_ref().unwrap_or(&0));
                read
            }
        }
    }

    /// Resolves when the socket may take more bytes.
    #[inline]
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp().writable().await
    }

    /// Hot path: writes what it can of `bufs` without blocking; returns how
    /// many of their bytes the stream took.
    #[inline]
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.try_write_vectored(bufs),
            Transport::Tls(tls) => tls.try_write_vectored(bufs),
        }
    }

    /// Hot path: [`try_write_vectored`](Self::try_write_vectored) of one buffer.
    #[inline]
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.try_write(buf),
            Transport::Tls(tls) => tls.try_write_vectored(&[IoSlice::new(buf)]),
        }
    }

    /// Whether bytes the stream took are not on the socket yet (TLS
    /// ciphertext waiting for the socket); always false for plain TCP.
    #[inline]
    pub fn has_pending_output(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(tls) => tls.has_pending_output(),
        }
    }

    /// Writes what [`has_pending_output`](Self::has_pending_output) reports,
    /// waiting for the socket as needed.
    pub async fn flush_pending(&self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(tls) => tls.flush_pending().await,
        }
    }

    /// Ends the stream towards the client: TLS close_notify (best effort),
    /// then a TCP half-close.
    pub fn shutdown_write(&self) {
        if let Transport::Tls(tls) = self {
            tls.close_notify();
        }
        let _ = socket2::SockRef::from(self.tcp()).shutdown(std::net::Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::time::timeout;

    use super::*;

    /// A connected pair: the client's end and the server's end as a
    /// [`Transport`].
    async fn pair() -> (TcpStream, Transport) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, Transport::Plain(server))
    }

    const WITHIN: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_short_read_clears_readiness_and_new_bytes_wake_the_reader() {
        let (mut client, server) = pair().await;
        client.write_all(b"hello").await.unwrap();
        timeout(WITHIN, server.readable()).await.unwrap().unwrap();
        let mut buf = Vec::with_capacity(64);
        assert_eq!(server.try_read_buf(&mut buf).unwrap(), 5);
        assert_eq!(buf, b"hello");
        // Drained: no readiness left for a read that would find nothing.
        assert!(server.readable().now_or_never().is_none());
        client.write_all(b"abc").await.unwrap();
        timeout(WITHIN, server.readable()).await.unwrap().unwrap();
        buf.clear();
        assert_eq!(server.try_read_buf(&mut buf).unwrap(), 3);
        assert_eq!(buf, b"abc");
    }

    #[tokio::test]
    async fn a_read_that_fills_the_buffer_keeps_readiness_for_the_rest() {
        let (mut client, server) = pair().await;
        client.write_all(b"0123456789").await.unwrap();
        timeout(WITHIN, server.readable()).await.unwrap().unwrap();
        // The bytes may arrive in more than one segment: read until all ten
        // are in, each read into at most four bytes of room, never waiting
        // on readiness while the socket still holds bytes.
        let mut got = Vec::new();
        while got.len() < 10 {
            let mut buf = Vec::with_capacity(4);
            let spare = buf.capacity();
            match server.try_read_buf(&mut buf) {
                Ok(n) => {
                    assert!(n > 0);
                    got.extend_from_slice(&buf);
                    if n == spare && got.len() < 10 {
                        // A full read cannot know the socket is empty.
                        assert!(server.readable().now_or_never().is_some());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    timeout(WITHIN, server.readable()).await.unwrap().unwrap()
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
        assert_eq!(got, b"0123456789");
    }

    #[tokio::test]
    async fn the_end_of_the_stream_reads_as_zero() {
        let (client, server) = pair().await;
        drop(client);
        timeout(WITHIN, server.readable()).await.unwrap().unwrap();
        let mut buf = Vec::with_capacity(16);
        assert_eq!(server.try_read_buf(&mut buf).unwrap(), 0);
        // Still readable: the end of the stream is final.
        assert!(server.readable().now_or_never().is_some());
    }
}
