//! The HTTP front: accepts TCP connections (with TLS when the listener has
//! a [`TlsAcceptor`]: the handshake runs in the connection's task), serves
//! HTTP/1.1 with hyper, upgrades `GET /ws` to a WebSocket (origin
//! allow-list, connection limit) and hands every other request to an
//! [`HttpFallback`] (the gateway's routes in the all-in-one binary, `/ping`
//! and the web client on a relay).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use edge::tls::{TlsAcceptor, TlsStream};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::transport::{TlsSocket, Transport};
use crate::Relay;

/// Longest time a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The response body type of every route.
pub type Body = Full<Bytes>;

/// Whatever answers the requests that are not WebSocket upgrades.
#[async_trait]
pub trait HttpFallback: Send + Sync + 'static {
    /// Answers one request; `peer` is the TCP peer.
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body>;
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// Accepts connections until shutdown; with `tls`, every connection starts
/// with a TLS handshake.
pub async fn serve(
    listener: TcpListener,
    relay: Arc<Relay>,
    fallback: Arc<dyn HttpFallback>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = relay.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let relay = relay.clone();
        let fallback = fallback.clone();
        let tracker = relay.tasks.clone();
        match &tls {
            None => tracker.spawn(serve_http(stream, peer, relay, fallback)),
            Some(tls) => {
                let tls = tls.clone();
                tracker.spawn(async move {
                    if let Some(stream) = tls.accept(stream, peer).await {
                        serve_http(stream, peer, relay, fallback).await;
                    }
                })
            }
        };
    }
}

async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    relay: Arc<Relay>,
    fallback: Arc<dyn HttpFallback>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let relay = relay.clone();
        service_fn(move |request| {
            let relay = relay.clone();
            let fallback = fallback.clone();
            async move { Ok::<_, Infallible>(route(request, peer, relay, fallback).await) }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = relay.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

async fn route(
    request: Request<Incoming>,
    peer: SocketAddr,
    relay: Arc<Relay>,
    fallback: Arc<dyn HttpFallback>,
) -> Response<Body> {
    if request.uri().path() == "/ws" {
        upgrade(request, peer, relay)
    } else {
        fallback.handle(request, peer).await
    }
}

/// The client's IP: the TCP peer, or with `trust_forwarded_for` the first
/// X-Forwarded-For entry, else X-Real-IP (the reference's rule).
pub fn client_ip<B>(request: &Request<B>, peer: SocketAddr, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        if let Some(ip) = header("x-forwarded-for")
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return ip;
        }
        if let Some(ip) = header("x-real-ip").and_then(|v| v.trim().parse().ok()) {
            return ip;
        }
    }
    peer.ip()
}

fn upgrade(mut request: Request<Incoming>, peer: SocketAddr, relay: Arc<Relay>) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        return text(StatusCode::BAD_REQUEST, "Bad Request");
    }
    let origin = request
        .headers()
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if !relay.origins.allows(origin) {
        relay
            .metrics
            .connections_rejected
            .with_label_values(&["origin"])
            .inc();
        tracing::warn!(origin = origin.unwrap_or(""), "rejected origin");
        return text(StatusCode::FORBIDDEN, "Forbidden");
    }
    if relay.metrics.connections.get() as usize >= relay.config.max_connections {
        relay
            .metrics
            .connections_rejected
            .with_label_values(&["limit"])
            .inc();
        return text(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    }
    if relay.shutdown.is_cancelled() {
        relay
            .metrics
            .connections_rejected
            .with_label_values(&["draining"])
            .inc();
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let ip = client_ip(&request, peer, relay.config.trust_forwarded_for);
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(pair) => pair,
        Err(_) => return text(StatusCode::BAD_REQUEST, "Bad Request"),
    };
    let tracker = relay.tasks.clone();
    tracker.spawn(async move {
        let websocket = match upgrade.await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        // Take the raw stream back so no HTTP buffer stays alive.
        let upgraded = websocket.into_inner().into_inner();
        let (transport, leftover) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => (
                Transport::Plain(parts.io.into_inner()),
                Bytes::copy_from_slice(&parts.read_buf),
            ),
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream>>() {
                Ok(parts) => {
                    let (tcp, session) = parts.io.into_inner().into_inner();
                    (
                        Transport::Tls(Box::new(TlsSocket::new(tcp, session))),
                        Bytes::copy_from_slice(&parts.read_buf),
                    )
                }
                Err(_) => {
                    tracing::error!("upgraded connection is neither TCP nor TLS");
                    return;
                }
            },
        };
        crate::connection::run(relay, transport, leftover, ip).await;
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Full::new(Bytes::new()))
}
