//! An echo endpoint on the production HTTP front and connection task.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use store::memory::{MemoryEngine, MemoryLimits};
use tokio::net::TcpListener;

use crate::server::{self, Body, HttpFallback};
use crate::{Relay, RelayBuilder, RelayConfig};

/// A fallback answering every request that is not `/ws` with 404.
pub struct NotFound;

#[async_trait]
impl HttpFallback for NotFound {
    async fn handle(&self, _request: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        edge::http::plain_text(StatusCode::NOT_FOUND, "not found")
    }
}

/// Starts a relay (memory engine, in-process gateway) on `listener` whose
/// `/ws` echoes every message; returns it (for its metrics and shutdown).
pub fn start_echo(listener: TcpListener, config: RelayConfig) -> Arc<Relay> {
    let engine = MemoryEngine::new(MemoryLimits::default());
    let builder = RelayBuilder::new();
    engine.attach(builder.sink());
    let authority = gateway::Gateway::new(engine.clone(), gateway::GatewayConfig::default())
        .expect("the default gateway config is valid");
    let relay = builder.build(config, engine.clone(), engine, Arc::new(authority));
    relay.faults.serve_echo();
    tokio::spawn(server::serve(
        listener,
        relay.clone(),
        Arc::new(NotFound),
        None,
    ));
    relay
}
