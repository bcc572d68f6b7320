//! The relay's admin port: liveness, readiness and Prometheus metrics, kept
//! off the public port.
//!
//! `/healthz` answers while the process serves; `/readyz` turns 503 as soon
//! as the node drains, so the load balancer stops sending new clients
//! before sockets are closed; `/metrics` is the text exposition.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use edge::tls::TlsAcceptor;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::server::text;
use crate::Relay;

/// Serves the admin routes until the process ends (it stays up while the
/// node drains, so readiness can be observed); over TLS with `tls`. A
/// failing `accept` backs off instead of spinning.
pub async fn serve(listener: TcpListener, relay: Arc<Relay>, tls: Option<TlsAcceptor>) {
    loop {
        let (stream, peer) = gateway::server::accept(&listener).await;
        let relay = relay.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let builder = relay.config.http.builder();
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let relay = relay.clone();
                async move { Ok::<_, Infallible>(route(&request, &relay)) }
            });
            match tls {
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                Some(tls) => {
                    if let Some(stream) = tls.accept(stream, peer).await {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        });
    }
}

fn route<B>(request: &Request<B>, relay: &Relay) -> Response<Full<Bytes>> {
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" if relay.shutdown.is_cancelled() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining")
        }
        "/readyz" => text(StatusCode::OK, "ready"),
        "/metrics" => {
            let metrics = &relay.metrics;
            metrics.bus_up.set(i64::from(relay.bus.is_up()));
            metrics
                .draining
                .set(i64::from(relay.shutdown.is_cancelled()));
            let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}
