//! The HTTP front: accepts TCP connections (with TLS when the listener has
//! a [`TlsAcceptor`]: the handshake runs in the connection's task), serves
//! HTTP/1.1 with hyper, upgrades `GET /ws` to a WebSocket (origin allow-list,
//! connection limit, per-client connection and handshake limits:
//! [`crate::admission`]) and hands every other request to an
//! [`HttpFallback`] (the gateway's routes in the all-in-one binary, `/ping`
//! and the web client on a relay).
//!
//! Hostile clients are bounded here before a connection costs anything:
//! the request head must arrive within the header read timeout and fit
//! the head size cap (`RelayConfig::http`), a connection slot is taken
//! before the upgrade is answered, and a failing `accept` backs off. A
//! panic in a connection's task or in a fallback request is caught,
//! counted (`arthas_relay_panics_total`) and, for a request, answered 500;
//! what the connection held is given back by its guards.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use edge::tls::{TlsAcceptor, TlsStream};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::admission::Refusal;
use crate::connection::Application;
use crate::metrics::Rejection;
use crate::peer::Peer;
use crate::session::Session;
use crate::slot::ConnectionSlot;
use crate::transport::{TlsSocket, Transport};
use crate::Relay;
use edge::http::plain_text;
use edge::ClientKey;
use store::warn_limit::WarnLimit;

pub use edge::http::Body;

/// Whatever answers the requests that are not WebSocket upgrades.
#[async_trait]
pub trait HttpFallback: Send + Sync + 'static {
    /// Answers one request; `peer` is the TCP peer.
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body>;
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
        let (stream, peer) = tokio::select! {
            accepted = edge::http::accept(&listener) => accepted,
            _ = relay.shutdown.cancelled() => return,
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
    let connection = relay
        .config
        .http
        .builder()
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
        let ip = edge::client_ip(request.headers(), peer.ip(), &relay.config.trusted_proxies);
        #[cfg(feature = "testing")]
        if relay.faults.echoes() {
            return upgrade(request, ip, relay, |_, peer| {
                crate::testing::Echo::new(peer)
            });
        }
        upgrade(request, ip, relay, move |relay, peer| {
            Session::new(relay, peer, ip)
        })
    } else {
        edge::http::answer_or_500(fallback.handle(request, peer), || {
            relay.metrics.panics.inc()
        })
        .await
    }
}

/// Answers a WebSocket upgrade from client `ip` and spawns the connection's
/// task, whose messages go to the application `make_app` builds.
fn upgrade<A, F>(
    mut request: Request<Incoming>,
    ip: IpAddr,
    relay: Arc<Relay>,
    make_app: F,
) -> Response<Body>
where
    A: Application + 'static,
    F: FnOnce(Arc<Relay>, Arc<Peer>) -> A + Send + 'static,
{
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        return plain_text(StatusCode::BAD_REQUEST, "Bad Request");
    }
    let origin = request
        .headers()
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if !relay.origins.allows(origin) {
        relay.metrics.rejected(Rejection::Origin).inc();
        static REJECTED_ORIGIN: WarnLimit = WarnLimit::new();
        if let Some(suppressed) = REJECTED_ORIGIN.check() {
            tracing::warn!(origin = origin.unwrap_or(""), suppressed, "rejected origin");
        }
        return plain_text(StatusCode::FORBIDDEN, "Forbidden");
    }
    if relay.shutdown.is_cancelled() {
        relay.metrics.rejected(Rejection::Draining).inc();
        return plain_text(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    // Count first: the client's share, then a slot, before anything else
    // is spent.
    let admitted = match relay.admission.admit(ClientKey::of(ip)) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let (label, retry_after, body) = match refusal {
                Refusal::Handshakes(wait) => (
                    Rejection::HandshakeRate,
                    wait.as_secs().saturating_add(1).min(60),
                    "too many connection attempts from your address",
                ),
                Refusal::Connections => (
                    Rejection::IpLimit,
                    60,
                    "too many connections from your address",
                ),
            };
            relay.metrics.rejected(label).inc();
            let mut response = plain_text(StatusCode::TOO_MANY_REQUESTS, body);
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, retry_after.into());
            return response;
        }
    };
    if relay.joins.is_saturated() {
        // Every join permit is taken: this client would only queue another.
        relay.metrics.rejected(Rejection::JoinsBusy).inc();
        let mut response = plain_text(StatusCode::SERVICE_UNAVAILABLE, "busy, retry");
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, 1.into());
        return response;
    }
    let Some(mut slot) = ConnectionSlot::try_acquire(&relay) else {
        relay.metrics.rejected(Rejection::Limit).inc();
        return plain_text(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    };
    let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(pair) => pair,
        Err(_) => return plain_text(StatusCode::BAD_REQUEST, "Bad Request"),
    };
    let tracker = relay.tasks.clone();
    // A panic in this task drops its state: the slot (counting it) and the
    // session give back what they hold.
    tracker.spawn(async move {
        // The client's slot is held for the connection's life.
        let _admitted = admitted;
        let websocket = match upgrade.await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                slot.finished();
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
                    slot.finished();
                    tracing::error!("upgraded connection is neither TCP nor TLS");
                    return;
                }
            },
        };
        crate::connection::run(relay, transport, leftover, slot, make_app).await;
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Full::new(Bytes::new()))
}
