//! Serving a request handler on a TCP listener, and the small body helpers
//! both of the gateway's JSON APIs share.
//!
//! The gateway's two HTTP surfaces ([`crate::http::HttpApi`], public, and
//! [`crate::internal::InternalApi`], for relays) are plain async functions
//! of a request and the peer address. [`serve`] runs one on a listener with
//! HTTP/1.1 keep-alive, a header read timeout (a slow client cannot hold a
//! connection open before it has said anything), a cap on the request head's
//! size, and a graceful shutdown that lets requests in flight finish within
//! a grace period.
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

use bytes::Bytes;
use edge::tls::TlsAcceptor;
use futures_util::FutureExt as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};

use crate::problem::Problem;

/// A client must send its request head within this (the reference's
/// ReadHeaderTimeout); `--header-read-timeout-ms`.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body must arrive within this; `--body-read-timeout-ms`.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight at shutdown get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// First pause after a failed accept (out of descriptors), so the loop does
/// not spin; it doubles while accepts keep failing.
const ACCEPT_ERROR_PAUSE_MIN: Duration = Duration::from_millis(10);
/// Longest pause between failed accepts.
const ACCEPT_ERROR_PAUSE_MAX: Duration = Duration::from_secs(1);
/// Default limit on a JSON request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
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
/// say) it logs, waits and tries again, the pause doubling from 10 ms to
/// 1 s while failures continue, so a failing accept never spins. Cancel
/// safe (for `select!`).
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut pause = ACCEPT_ERROR_PAUSE_MIN;
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                static ACCEPT_FAILED: store::warn_limit::WarnLimit =
                    store::warn_limit::WarnLimit::new();
                if let Some(suppressed) = ACCEPT_FAILED.check() {
                    tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, suppressed, "accept failed");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(ACCEPT_ERROR_PAUSE_MAX);
            }
        }
    }
}

/// The answer to a request whose handler panicked.
pub fn panic_response() -> Response<Full<Bytes>> {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server failed to answer this request",
    )
    .into_response()
}

/// Runs a request handler, turning a panic into a 500 problem; `panicked`
/// is called (to count it) when it does.
pub async fn answer_or_500(
    handling: impl Future<Output = Response<Full<Bytes>>>,
    panicked: impl FnOnce(),
) -> Response<Full<Bytes>> {
    match AssertUnwindSafe(handling).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            panicked();
            tracing::error!("a request handler panicked; answered 500");
            panic_response()
        }
    }
}

/// Something that answers HTTP requests: the public or the internal API.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `peer`; never fails (errors are responses).
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;

    /// A call to [`handle`](Self::handle) panicked (it was answered 500):
    /// count it.
    fn panicked(&self);
}

impl Handler for crate::http::HttpApi {
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        crate::http::HttpApi::handle(self, request, peer)
    }

    fn panicked(&self) {
        self.gateway()
            .metrics()
            .panicked(crate::metrics::Api::Public);
    }
}

impl Handler for crate::internal::InternalApi {
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        crate::internal::InternalApi::handle(self, request, peer)
    }

    fn panicked(&self) {
        self.gateway()
            .metrics()
            .panicked(crate::metrics::Api::Internal);
    }
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

/// Reads a JSON body of at most `max_bytes` within `timeout`: 413 problem
/// when larger, 408 when it does not arrive in time, 400 problem when it is
/// not the expected JSON object. An empty body reads as `{}`, so requests
/// whose fields are all optional need none.
pub async fn read_json<T: DeserializeOwned>(
    body: Incoming,
    max_bytes: usize,
    timeout: Duration,
) -> Result<T, Problem> {
    let read = tokio::time::timeout(timeout, Limited::new(body, max_bytes).collect()).await;
    let bytes = match read {
        Err(_) => {
            return Err(Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body did not arrive within {} ms",
                    timeout.as_millis()
                ),
            ))
        }
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {max_bytes} bytes"),
            ))
        }
        Ok(Err(_)) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "request body could not be read",
            ))
        }
    };
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    // Every body of these APIs is a JSON object (serde would also read a
    // struct from an array of its fields).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "request body is not a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("request body is not valid JSON for this endpoint: {e}"),
        )
    })
}

/// A JSON response with `status`.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "response serialisation failed",
            )
            .into_response()
        }
    }
}

/// An empty response with `status`.
pub fn empty_response(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Deserialises a JSON integer the way JSON Schema counts one: any number
/// with no fractional part (`60`, `60.0`, `6e1`) within `i64`; anything
/// else is an error (400).
pub fn json_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct Integer;
    impl serde::de::Visitor<'_> for Integer {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer within 64 bits")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            // ±2^63 as a float stands for a literal out of range (an
            // in-range one is read as an integer, not a float).
            if v.fract() == 0.0 && v > i64::MIN as f64 && v < i64::MAX as f64 {
                Ok(v as i64)
            } else {
                Err(E::custom("not an integer within 64 bits"))
            }
        }
    }
    deserializer.deserialize_any(Integer)
}
