//! The gateway's public HTTP listener: one router over the public APIs.
//!
//! Both binaries use it: the all-in-one binary's relay server forwards every
//! request that is not `/ws` here, and the standalone gateway serves it on
//! its own port ([`edge::http::serve`]). Each path is parsed once into a
//! [`Route`], which both dispatches the request and names it in metrics and
//! traces:
//!
//! - `/ping`, `/healthz`, `/readyz`;
//! - `/api/hub`, `/api/hub/stats`: the reference directory
//!   ([`crate::directory`]);
//! - `/v1/rooms...` and `/openapi.json`: the public room API for native
//!   clients ([`crate::v1`]);
//! - everything else: the embedded web client ([`crate::web`]).
//!
//! Nothing here panics on input, and nothing logs a password or a ticket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge::http::{method_not_allowed, not_found, plain_text, Body, Handler, Problem};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use tracing::Instrument as _;

use crate::metrics::Api;
use crate::rooms::Gateway;
use crate::server::{request_span, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES};
use crate::web;

/// The connected-WebSocket count (`online`, `totalOnline`).
pub type OnlineCount = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Length of the fixed rate-limit windows of this API.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Settings of the public HTTP surface.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `--allowed-origins`, raw: echoed as `Access-Control-Allow-Origin` on
    /// the directory when non-empty (the reference does exactly this).
    pub allowed_origins: String,
    /// `/api/hub` requests per client IP per minute.
    pub hub_requests_per_minute: u64,
    /// `GET /v1/rooms/{id}` per client key per minute.
    pub room_lookups_per_minute: u64,
    /// Longest a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// Proxies whose X-Forwarded-For entries are believed (none: the TCP
    /// peer is the client, and no client can pick its own rate-limit key).
    pub trusted_proxies: edge::TrustedProxies,
    /// Largest JSON request body accepted.
    pub max_body_bytes: usize,
    /// Where the served web client connects (`--relay-urls`; empty: this
    /// origin's `/ws`).
    pub relay_urls: Vec<String>,
    /// The web client pages' Content-Security-Policy (which origins the
    /// page may connect to).
    pub content_security_policy: web::ContentSecurityPolicy,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allowed_origins: String::new(),
            hub_requests_per_minute: 30,
            room_lookups_per_minute: 60,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            trusted_proxies: edge::TrustedProxies::none(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            relay_urls: Vec::new(),
            content_security_policy: web::ContentSecurityPolicy::default(),
        }
    }
}

/// The public HTTP API. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct HttpApi {
    inner: Arc<Inner>,
}

/// What the public APIs ([`crate::v1`], [`crate::directory`]) share.
pub(crate) struct Inner {
    /// Rooms, passwords, tickets, listings.
    pub(crate) gateway: Gateway,
    pub(crate) config: HttpConfig,
    /// The ACAO header value, when origins are configured and form a valid header.
    pub(crate) allow_origin: Option<HeaderValue>,
    pub(crate) online: OnlineCount,
    /// The web client, with the relay list in its page.
    web: web::WebClient,
}

/// A request of the public listener, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Ping,
    Healthz,
    Readyz,
    Hub,
    HubStats,
    OpenApi,
    Rooms,
    /// `/v1/rooms/{segment}` (the segment not yet checked as a room id).
    Room(&'a str),
    /// `/v1/rooms/{segment}/tickets`.
    Tickets(&'a str),
    /// Any other path under `/v1/`.
    UnknownV1,
    /// The web client's files.
    Web,
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Route<'a> {
        match path {
            "/ping" => Route::Ping,
            "/healthz" => Route::Healthz,
            "/readyz" => Route::Readyz,
            "/api/hub" => Route::Hub,
            "/api/hub/stats" => Route::HubStats,
            "/openapi.json" => Route::OpenApi,
            "/v1/rooms" => Route::Rooms,
            _ => {
                let Some(rest) = path.strip_prefix("/v1/") else {
                    return Route::Web;
                };
                let mut segments = rest.split('/');
                match (
                    segments.next(),
                    segments.next(),
                    segments.next(),
                    segments.next(),
                ) {
                    (Some("rooms"), Some(id), None, None) => Route::Room(id),
                    (Some("rooms"), Some(id), Some("tickets"), None) => Route::Tickets(id),
                    _ => Route::UnknownV1,
                }
            }
        }
    }

    /// The route's name in metrics and traces (its template).
    fn label(self) -> &'static str {
        match self {
            Route::Ping => "/ping",
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::Hub => "/api/hub",
            Route::HubStats => "/api/hub/stats",
            Route::OpenApi => "/openapi.json",
            Route::Rooms => "/v1/rooms",
            Route::Room(_) => "/v1/rooms/{roomId}",
            Route::Tickets(_) => "/v1/rooms/{roomId}/tickets",
            Route::UnknownV1 => "/v1/*",
            Route::Web => "web",
        }
    }

    /// API routes are traced; the web client's files, `/ping` and the
    /// health probes are not.
    fn traced(self) -> bool {
        !matches!(
            self,
            Route::Ping | Route::Healthz | Route::Readyz | Route::Web
        )
    }
}

impl HttpApi {
    /// The API over `gateway`; `online` counts connected WebSockets.
    pub fn new(gateway: Gateway, config: HttpConfig, online: OnlineCount) -> HttpApi {
        let allow_origin = if config.allowed_origins.is_empty() {
            None
        } else {
            let value = HeaderValue::from_str(&config.allowed_origins);
            if value.is_err() {
                tracing::warn!("allowed origins are not a valid header value; no CORS headers");
            }
            value.ok()
        };
        HttpApi {
            inner: Arc::new(Inner {
                web: web::WebClient::new(
                    &config.relay_urls,
                    config.content_security_policy.clone(),
                ),
                gateway,
                config,
                allow_origin,
                online,
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The gateway behind the API.
    pub fn gateway(&self) -> &Gateway {
        &self.inner.gateway
    }

    /// The settings in force.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// Answers one request from `peer` (the TCP peer address); API routes
    /// are traced (method, route template, status).
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let route = Route::parse(&path);
        let response = if route.traced() {
            let span = request_span(request.method(), route.label());
            let response = self
                .route(route, request, peer)
                .instrument(span.clone())
                .await;
            span.record("http.response.status_code", response.status().as_u16());
            response
        } else {
            self.route(route, request, peer).await
        };
        self.inner.gateway.metrics().request(
            Api::Public,
            route.label(),
            response.status().as_u16(),
            started.elapsed(),
        );
        response
    }

    async fn route(
        &self,
        route: Route<'_>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let method = request.method().clone();
        match route {
            Route::Ping => plain_text(StatusCode::OK, "pong"),
            Route::Healthz | Route::Readyz => self.health().await,
            Route::Hub => self.hub(request, peer).await,
            Route::HubStats => self.hub_stats(&method),
            Route::OpenApi => self.openapi(&method),
            Route::Rooms => match method {
                Method::POST => self.create_room(request, peer).await,
                _ => method_not_allowed("POST"),
            },
            Route::Room(segment) => self.room_resource(request, peer, segment).await,
            Route::Tickets(segment) => self.tickets_resource(request, peer, segment).await,
            Route::UnknownV1 => not_found(),
            Route::Web => self.inner.web.serve(&method, request.uri().path()),
        }
    }

    async fn health(&self) -> Response<Body> {
        if self.inner.gateway.store_ready().await {
            plain_text(StatusCode::OK, "ok")
        } else {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the store does not answer")
                .into_response()
        }
    }
}

impl Handler for HttpApi {
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        HttpApi::handle(self, request, peer)
    }

    fn panicked(&self) {
        self.gateway().metrics().panicked(Api::Public);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_one_route_and_its_label() {
        for (path, route, label) in [
            ("/ping", Route::Ping, "/ping"),
            ("/readyz", Route::Readyz, "/readyz"),
            ("/api/hub", Route::Hub, "/api/hub"),
            ("/v1/rooms", Route::Rooms, "/v1/rooms"),
            ("/v1/rooms/abc", Route::Room("abc"), "/v1/rooms/{roomId}"),
            ("/v1/rooms/", Route::Room(""), "/v1/rooms/{roomId}"),
            (
                "/v1/rooms/abc/tickets",
                Route::Tickets("abc"),
                "/v1/rooms/{roomId}/tickets",
            ),
            ("/v1/rooms/abc/tickets/x", Route::UnknownV1, "/v1/*"),
            ("/v1/", Route::UnknownV1, "/v1/*"),
            ("/v1", Route::Web, "web"),
            ("/index.html", Route::Web, "web"),
        ] {
            assert_eq!(Route::parse(path), route, "{path}");
            assert_eq!(route.label(), label, "{path}");
        }
    }
}
