//! Serving a request handler on a TCP listener.
//!
//! [`serve`] runs a [`Handler`] on a listener with HTTP/1.1 keep-alive, a
//! header read timeout (a slow client cannot hold a connection open before
//! it has said anything), a cap on the request head's size, and a graceful
//! shutdown that lets requests in flight finish within [`SHUTDOWN_GRACE`].
//!
//! A handler that panics does not take its connection down with it: the
//! panic is caught, counted ([`Handler::panicked`]) and answered with a 500
//! problem; the server keeps serving. An `accept` that fails (out of
//! descriptors, say) is retried after a growing pause ([`accept`]) instead of
//! spinning.
//!
//! With a [`TlsAcceptor`] every connection starts with a TLS handshake, in
//! the connection's own task.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use super::{Body, Problem};
use crate::tls::TlsAcceptor;

/// A client must send its request head within this (the reference's
/// ReadHeaderTimeout); `--header-read-timeout-ms`.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight at shutdown get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// First pause after a failed accept (out of descriptors), so the loop does
/// not spin; it doubles while accepts keep failing.
const ACCEPT_ERROR_PAUSE_MIN: Duration = Duration::from_millis(10);
/// Longest pause between failed accepts.
const ACCEPT_ERROR_PAUSE_MAX: Duration = Duration::from_secs(1);
/// Default cap on a request head (request line and headers), bytes.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// The smallest head cap hyper accepts (its read buffer's minimum).
pub const MIN_MAX_HEADER_BYTES: usize = 8 * 1024;

/// The limits on one HTTP connection's request heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request head must arrive within this (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head, bytes (at least [`MIN_MAX_HEADER_BYTES`];
    /// larger heads get 431).
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

impl HttpLimits {
    /// An HTTP/1.1 connection builder enforcing these limits.
    pub fn builder(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(self.max_header_bytes.max(MIN_MAX_HEADER_BYTES));
        builder
    }
}

/// Accepts the next connection. When `accept` fails (out of descriptors,
/// say) it waits and tries again, the pause doubling from
/// [`ACCEPT_ERROR_PAUSE_MIN`] to [`ACCEPT_ERROR_PAUSE_MAX`] while failures
/// continue, so a failing accept never spins; the first failure of a run is
/// logged as a warning, the rest at debug level, and the recovery with the
/// number of failures. Cancel safe (for `select!`).
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut pause = ACCEPT_ERROR_PAUSE_MIN;
    let mut failures: u64 = 0;
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                if failures > 0 {
                    tracing::warn!(failures, "accept works again");
                }
                return accepted;
            }
            Err(e) => {
                failures += 1;
                let pause_ms = pause.as_millis() as u64;
                if failures == 1 {
                    tracing::warn!(error = %e, pause_ms, "accept failed");
                } else {
                    tracing::debug!(error = %e, pause_ms, failures, "accept failed again");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(ACCEPT_ERROR_PAUSE_MAX);
            }
        }
    }
}

/// The answer to a request whose handler panicked.
fn panic_response() -> Response<Body> {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server failed to answer this request",
    )
    .into_response()
}

/// Runs a request handler, turning a panic into a 500 problem; `panicked`
/// is called (to count it) when it does.
pub async fn answer_or_500(
    handling: impl Future<Output = Response<Body>>,
    panicked: impl FnOnce(),
) -> Response<Body> {
    match AssertUnwindSafe(handling).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            panicked();
            tracing::error!("a request handler panicked; answered 500");
            panic_response()
        }
    }
}

/// Something that answers HTTP requests: one API on one listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `peer`; never fails (errors are responses).
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// A call to [`handle`](Self::handle) panicked (it was answered 500):
    /// count it.
    fn panicked(&self);
}

/// Serves `handler` on `listener` (over TLS with `tls`) with the default
/// [`HttpLimits`] until `shutdown` resolves; see [`serve_with`].
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, handler, tls, shutdown, HttpLimits::default()).await
}

/// Serves `handler` on `listener` (over TLS with `tls`) until `shutdown`
/// resolves, then stops accepting, lets open connections finish their
/// requests (at most [`SHUTDOWN_GRACE`]) and returns.
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    limits: HttpLimits,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let builder = limits.builder();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let handler = handler.clone();
            async move {
                let handling = handler.handle(request, peer);
                let response = answer_or_500(handling, || handler.panicked()).await;
                Ok::<_, Infallible>(response)
            }
        });
        let http = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => match tls.accept(stream, peer).await {
                    Some(stream) => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    None => return,
                },
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, %peer, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
}
