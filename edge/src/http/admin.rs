//! The admin port's endpoints, the same on every process: `/healthz` (the
//! process serves), `/readyz` (it can take work: the gateway's store
//! answers, a relay is not draining) and `/metrics` (the Prometheus text
//! exposition), kept off the public and internal ports.

use std::future::Future;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::{plain_text, text_response, Body, Handler};

/// The media type of the Prometheus text exposition.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

/// What a process says about itself on its admin port.
pub trait AdminProbe: Send + Sync + 'static {
    /// `Ok` when the process can take work, else why not (the body of the
    /// 503).
    fn ready(&self) -> impl Future<Output = Result<(), &'static str>> + Send;
    /// The metrics exposition, refreshed for this scrape.
    fn metrics(&self) -> impl Future<Output = String> + Send;
    /// An admin request panicked (answered 500): count it.
    fn panicked(&self);
}

/// The admin endpoints of a process described by `P`.
pub struct AdminApi<P> {
    probe: P,
}

impl<P: AdminProbe> AdminApi<P> {
    /// The admin endpoints answering from `probe`.
    pub fn new(probe: P) -> AdminApi<P> {
        AdminApi { probe }
    }
}

impl<P: AdminProbe> Handler for AdminApi<P> {
    async fn handle(&self, request: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        match request.uri().path() {
            "/healthz" => plain_text(StatusCode::OK, "ok"),
            "/readyz" => match self.probe.ready().await {
                Ok(()) => plain_text(StatusCode::OK, "ready"),
                Err(why) => plain_text(StatusCode::SERVICE_UNAVAILABLE, why),
            },
            "/metrics" => {
                text_response(StatusCode::OK, PROMETHEUS_TEXT, self.probe.metrics().await)
            }
            _ => plain_text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    fn panicked(&self) {
        self.probe.panicked();
    }
}
