//! Serving a request handler on a TCP listener, and the small body helpers
//! both of the gateway's JSON APIs share.
//!
//! The gateway's two HTTP surfaces ([`crate::http::HttpApi`], public, and
//! [`crate::internal::InternalApi`], for relays) are plain async functions
//! of a request and the peer address. [`serve`] runs one on a listener with
//! HTTP/1.1 keep-alive, a header read timeout (a slow client cannot hold a
//! connection open before it has said anything), and a graceful shutdown
//! that lets requests in flight finish within a grace period. With a
//! [`TlsAcceptor`] every connection starts with a TLS handshake, in the
//! connection's own task.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge::tls::TlsAcceptor;
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
use tokio::net::TcpListener;

use crate::problem::Problem;

/// A client must send its request head within this (the reference's
/// ReadHeaderTimeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight at shutdown get this long to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Default limit on a JSON request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;

/// Something that answers HTTP requests: the public or the internal API.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `peer`; never fails (errors are responses).
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

impl Handler for crate::http::HttpApi {
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        crate::http::HttpApi::handle(self, request, peer)
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
}

/// Serves `handler` on `listener` (over TLS with `tls`) until `shutdown`
/// resolves, then stops accepting, lets open connections finish their
/// requests (at most [`SHUTDOWN_GRACE`]) and returns.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(request, peer).await) }
        });
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
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

/// Reads a JSON body of at most `max_bytes`: 413 problem when larger,
/// 400 problem when it is not the expected JSON. An empty body reads as
/// `{}`, so requests whose fields are all optional need none.
pub async fn read_json<T: DeserializeOwned>(
    body: Incoming,
    max_bytes: usize,
) -> Result<T, Problem> {
    let bytes = match Limited::new(body, max_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {max_bytes} bytes"),
            ))
        }
        Err(_) => {
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
