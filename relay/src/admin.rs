//! The relay's admin port: the shared admin endpoints ([`edge::http`]:
//! liveness, readiness and Prometheus metrics), kept off the public port.
//!
//! `/healthz` answers while the process serves; `/readyz` turns 503 as soon
//! as the node drains, so the load balancer stops sending new clients
//! before sockets are closed; `/metrics` is the text exposition.

use std::sync::Arc;

use edge::http::{AdminApi, AdminProbe};
use edge::tls::TlsAcceptor;
use tokio::net::TcpListener;

use crate::Relay;

/// Serves the admin routes until the process ends (it stays up while the
/// node drains, so readiness can be observed); over TLS with `tls`. A
/// failing `accept` backs off instead of spinning.
pub async fn serve(listener: TcpListener, relay: Arc<Relay>, tls: Option<TlsAcceptor>) {
    let limits = relay.config.http;
    let api = Arc::new(AdminApi::new(RelayProbe(relay)));
    edge::http::serve_with(listener, api, tls, std::future::pending(), limits).await
}

/// What a relay says about itself on its admin port.
struct RelayProbe(Arc<Relay>);

impl AdminProbe for RelayProbe {
    async fn ready(&self) -> Result<(), &'static str> {
        if self.0.shutdown.is_cancelled() {
            Err("draining")
        } else {
            Ok(())
        }
    }

    async fn metrics(&self) -> String {
        let relay = &self.0;
        let metrics = &relay.metrics;
        metrics.bus_up.set(i64::from(relay.bus.is_up()));
        metrics
            .draining
            .set(i64::from(relay.shutdown.is_cancelled()));
        metrics.render()
    }

    fn panicked(&self) {
        self.0.metrics.panics.inc();
    }
}
