//! Prometheus metrics of the gateway. Labels carry route templates, status
//! codes and protocol error codes, never room ids, passwords or tickets.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use protocol::Reject;

/// Which HTTP surface answered (`api` label).
#[derive(Debug, Clone, Copy)]
pub enum Api {
    /// The public API, the directory and the web client.
    Public,
    /// The relays' internal API.
    Internal,
}

impl Api {
    fn as_str(self) -> &'static str {
        match self {
            Api::Public => "public",
            Api::Internal => "internal",
        }
    }
}

/// A gateway operation whose outcome is counted (`operation` label).
#[derive(Debug, Clone, Copy)]
pub enum Operation {
    CreateRoom,
    CheckPassword,
    IssueTicket,
    RedeemTicket,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::CreateRoom => "create_room",
            Operation::CheckPassword => "check_password",
            Operation::IssueTicket => "issue_ticket",
            Operation::RedeemTicket => "redeem_ticket",
        }
    }
}

/// The gateway's counters, registered in one registry.
#[derive(Clone)]
pub struct GatewayMetrics {
    registry: Registry,
    /// HTTP requests answered, by API, route template and status code.
    requests: IntCounterVec,
    /// Time to answer an HTTP request, by API and route template.
    request_seconds: HistogramVec,
    /// Operations, by outcome: `ok` or the Arthas error code (E004 = guess
    /// limit, E005 = busy or unavailable, E006 = wrong password or ticket).
    outcomes: IntCounterVec,
}

impl GatewayMetrics {
    /// A fresh registry with every gateway metric.
    pub fn new() -> GatewayMetrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "arthas_gateway_http_requests_total",
                "HTTP requests answered, by API, route template and status",
            ),
            &["api", "route", "status"],
        )
        .expect("metric names are valid");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "arthas_gateway_http_request_duration_seconds",
                "Time to answer an HTTP request, by API and route template",
            )
            // Password checks run argon2id (tens of milliseconds).
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["api", "route"],
        )
        .expect("metric names are valid");
        let outcomes = IntCounterVec::new(
            Opts::new(
                "arthas_gateway_operations_total",
                "Room creations, password checks and tickets, by outcome (ok or error code)",
            ),
            &["operation", "outcome"],
        )
        .expect("metric names are valid");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(outcomes.clone()),
        ] {
            registry.register(metric).expect("metrics register once");
        }
        GatewayMetrics {
            registry,
            requests,
            request_seconds,
            outcomes,
        }
    }

    /// Counts one answered request on `route` (a template, never a path).
    pub fn request(&self, api: Api, route: &'static str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[api.as_str(), route, &status.to_string()])
            .inc();
        self.request_seconds
            .with_label_values(&[api.as_str(), route])
            .observe(took.as_secs_f64());
    }

    /// Counts one operation's outcome and hands the result back.
    pub fn outcome<T>(&self, operation: Operation, result: Result<T, Reject>) -> Result<T, Reject> {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(reject) => reject.code.as_str(),
        };
        self.outcomes
            .with_label_values(&[operation.as_str(), outcome])
            .inc();
        result
    }

    /// Adds a metric kept elsewhere (the TLS certificate's expiry).
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics::new()
    }
}

/// The gateway's admin port: `/healthz` (the process serves), `/readyz` (the
/// store answers) and `/metrics`, kept off the public and internal ports.
pub struct AdminApi {
    gateway: crate::Gateway,
}

impl AdminApi {
    /// The admin routes of `gateway`.
    pub fn new(gateway: crate::Gateway) -> AdminApi {
        AdminApi { gateway }
    }
}

impl crate::server::Handler for AdminApi {
    async fn handle(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        _peer: std::net::SocketAddr,
    ) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
        use hyper::StatusCode;
        let (status, content_type, body) = match request.uri().path() {
            "/healthz" => (StatusCode::OK, "text/plain", "ok".to_string()),
            "/readyz" if self.gateway.store_ready().await => {
                (StatusCode::OK, "text/plain", "ready".to_string())
            }
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "the store does not answer".to_string(),
            ),
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.gateway.metrics().render(),
            ),
            _ => (StatusCode::NOT_FOUND, "text/plain", "not found".to_string()),
        };
        let mut response =
            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        response
    }
}
