//! The gateway's public HTTP surface, as one async function of a request.
//!
//! Both binaries use it: the all-in-one binary's relay server forwards every
//! request that is not `/ws` here, and the standalone gateway serves it on
//! its own port ([`crate::server::serve`]). Routes:
//!
//! - `/ping`, `/healthz`, `/readyz`;
//! - `/api/hub`, `/api/hub/stats`: the reference directory, byte for byte
//!   (PROTOCOL.md §9), read from the store so every replica agrees;
//! - `/v1/rooms...` and `/openapi.json`: the public room API for native
//!   clients (our extension), errors as RFC 9457 problem JSON;
//! - everything else: the embedded web client.
//!
//! Nothing here panics on input, and nothing logs a password or a ticket.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use protocol::reject::texts;
use protocol::{ErrorCode, Reject};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::hub::{self, HubStats};
use crate::metrics::Api;
use crate::problem::Problem;
use crate::rooms::{CreateRoomRequest, Gateway, ListingRequest};
use crate::server::{json_response, read_json, DEFAULT_MAX_BODY_BYTES};
use crate::web;
use edge::ClientKey;

/// The connected-WebSocket count (`online`, `totalOnline`).
pub type OnlineCount = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Length of the fixed rate-limit windows of this API.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Retry hint when the argon2 pool is full.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Length of a client-supplied SHA-256 hex password.
const PASSWORD_HEX_LEN: usize = 64;
/// The OpenAPI document of the public room API.
const OPENAPI_JSON: &str = include_str!("openapi.json");

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
            body_read_timeout: crate::server::DEFAULT_BODY_READ_TIMEOUT,
            trusted_proxies: edge::TrustedProxies::none(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            relay_urls: Vec::new(),
            content_security_policy: web::ContentSecurityPolicy::default(),
        }
    }
}

/// The client's IP by the edge rule ([`edge::client_ip`]).
fn client_ip(headers: &HeaderMap, peer: SocketAddr, trusted: &edge::TrustedProxies) -> IpAddr {
    edge::client_ip(headers, peer.ip(), trusted)
}

/// The public HTTP API. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct HttpApi {
    inner: Arc<Inner>,
}

struct Inner {
    /// Rooms, passwords, tickets, listings.
    gateway: Gateway,
    config: HttpConfig,
    /// The ACAO header value, when origins are configured and form a valid header.
    allow_origin: Option<HeaderValue>,
    online: OnlineCount,
    /// The web client, with the relay list in its page.
    web: web::WebClient,
}

/// `POST /v1/rooms`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRoomBody {
    #[serde(default)]
    password: String,
    #[serde(default, deserialize_with = "crate::server::json_integer")]
    ephemeral: i64,
    #[serde(default, deserialize_with = "crate::server::json_integer")]
    expiry: i64,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    key_encoded: String,
}

#[derive(Debug, Serialize)]
struct RejectBody {
    code: &'static str,
    msg: String,
}

impl From<Reject> for RejectBody {
    fn from(reject: Reject) -> RejectBody {
        RejectBody {
            code: reject.code.as_str(),
            msg: reject.msg.into_owned(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedRoomBody {
    room_id: String,
    expires_at: i64,
    has_password: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    listing_error: Option<RejectBody>,
}

/// `POST /v1/rooms/{id}/tickets`.
#[derive(Debug, Default, Deserialize)]
struct TicketBody {
    #[serde(default)]
    password: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TicketCreatedBody {
    ticket: String,
    expires_at: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomBody {
    room_id: String,
    has_password: bool,
    expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    member_count: Option<u32>,
}

fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The reference's `http.Error`: text/plain, nosniff, the JSON-looking text.
fn hub_error(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = text_response(status, "text/plain; charset=utf-8", hub::error_body(text));
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this resource supports {allow}"),
    )
    .into_response();
    response
        .headers_mut()
        .insert("allow", HeaderValue::from_static(allow));
    response
}

fn not_found() -> Response<Full<Bytes>> {
    Problem::new(StatusCode::NOT_FOUND, "no such resource").into_response()
}

/// A refusal as problem JSON; guess-limit refusals say when to retry.
fn refusal(reject: &Reject, retry_after: Duration) -> Response<Full<Bytes>> {
    let problem = Problem::from_reject(reject);
    let problem = if reject.code == ErrorCode::RateLimited {
        problem.retry_after(retry_after.as_secs().max(1))
    } else {
        problem
    };
    problem.into_response()
}

/// Whether an API password is "" or a SHA-256 hex (64 hexadecimal
/// characters), as the OpenAPI document says (the WebSocket protocol, for
/// existing clients, only checks the length).
fn is_password_hash(password: &str) -> bool {
    password.is_empty()
        || (password.len() == PASSWORD_HEX_LEN && password.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A room id from a path segment, or `None` when it cannot be one.
fn room_id_segment(segment: &str) -> Option<&str> {
    protocol::client::is_room_id(segment).then_some(segment)
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

    /// The gateway behind the API.
    pub fn gateway(&self) -> &Gateway {
        &self.inner.gateway
    }

    /// The settings in force.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// Answers one request from `peer` (the TCP peer address). API routes
    /// are traced (method, route template, status); the web client's
    /// files, `/ping` and the health probes are not.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let path = request.uri().path();
        let (route, response) = match route_template(path) {
            Some(route) => {
                let span = request_span(request.method(), route);
                let response = self.route(request, peer).instrument(span.clone()).await;
                span.record("http.response.status_code", response.status().as_u16());
                (route, response)
            }
            None => {
                let route = match path {
                    "/ping" => "/ping",
                    "/healthz" => "/healthz",
                    "/readyz" => "/readyz",
                    _ => "web",
                };
                (route, self.route(request, peer).await)
            }
        };
        self.inner.gateway.metrics().request(
            Api::Public,
            route,
            response.status().as_u16(),
            started.elapsed(),
        );
        response
    }

    async fn route(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        match path.as_str() {
            "/ping" => text_response(StatusCode::OK, "text/plain", "pong"),
            "/healthz" | "/readyz" => self.health().await,
            "/api/hub" => self.hub(request, peer).await,
            "/api/hub/stats" => self.hub_stats(&method),
            "/openapi.json" => match method {
                Method::GET | Method::HEAD => {
                    let mut response =
                        text_response(StatusCode::OK, "application/json", OPENAPI_JSON);
                    response
                        .headers_mut()
                        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    response
                }
                _ => method_not_allowed("GET, HEAD"),
            },
            "/v1/rooms" => match method {
                Method::POST => self.create_room(request, peer).await,
                _ => method_not_allowed("POST"),
            },
            _ => match path.strip_prefix("/v1/") {
                Some(rest) => self.v1(request, peer, rest).await,
                None => self.inner.web.serve(&method, &path),
            },
        }
    }

    async fn health(&self) -> Response<Full<Bytes>> {
        if self.inner.gateway.store_ready().await {
            text_response(StatusCode::OK, "text/plain", "ok")
        } else {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the store does not answer")
                .into_response()
        }
    }

    /// CORS headers of the directory endpoints.
    fn cors(&self, response: &mut Response<Full<Bytes>>) {
        if let Some(origin) = &self.inner.allow_origin {
            let headers = response.headers_mut();
            headers.insert("access-control-allow-origin", origin.clone());
            headers.insert(
                "access-control-allow-methods",
                HeaderValue::from_static("GET, OPTIONS"),
            );
            headers.insert(
                "access-control-allow-headers",
                HeaderValue::from_static("Content-Type"),
            );
        }
    }

    fn hub_json<T: Serialize>(&self, value: &T) -> Response<Full<Bytes>> {
        // Go's json.Encoder ends the document with a newline
        let mut body = serde_json::to_vec(value).unwrap_or_default();
        body.push(b'\n');
        let mut response = text_response(StatusCode::OK, "application/json", body);
        response.headers_mut().insert(
            CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store, must-revalidate"),
        );
        response
    }

    fn hub_stats(&self, method: &Method) -> Response<Full<Bytes>> {
        let mut response = match *method {
            Method::OPTIONS => crate::server::empty_response(StatusCode::NO_CONTENT),
            Method::GET => self.hub_json(&HubStats {
                online: (self.inner.online)(),
                match_enabled: false,
                match_queue_size: 0,
            }),
            _ => hub_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        };
        self.cors(&mut response);
        response
    }

    async fn hub(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let mut response = self.hub_page(request, peer).await;
        self.cors(&mut response);
        response
    }

    async fn hub_page(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        match *request.method() {
            Method::OPTIONS => return crate::server::empty_response(StatusCode::NO_CONTENT),
            Method::GET => {}
            _ => return hub_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
        let config = &self.inner.config;
        let store = self.inner.gateway.store();
        let client = ClientKey::of(client_ip(request.headers(), peer, &config.trusted_proxies));
        match store.hit(&format!("hub:{client}"), 1, RATE_WINDOW).await {
            Ok(n) if n > config.hub_requests_per_minute => {
                let mut response = hub_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate limited, try again later",
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(RATE_WINDOW.as_secs()));
                return response;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "hub rate limit unavailable");
                return hub_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service temporarily unavailable",
                );
            }
        }
        let query = match hub::parse_query(request.uri().query().unwrap_or("")) {
            Ok(query) => query,
            Err(e) => return hub_error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let now_millis = self.inner.gateway.clock().now_millis();
        match store.listings(now_millis).await {
            Ok(mut views) => {
                hub::drop_expired(&mut views, now_millis.div_euclid(1000));
                self.hub_json(&hub::page(views, &query, (self.inner.online)()))
            }
            Err(e) => {
                tracing::error!(error = %e, "listings unavailable");
                hub_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service temporarily unavailable",
                )
            }
        }
    }

    /// `/v1/rooms/{id}` and `/v1/rooms/{id}/tickets`; `rest` follows `/v1/`.
    async fn v1(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        rest: &str,
    ) -> Response<Full<Bytes>> {
        let segments: Vec<&str> = rest.split('/').collect();
        match segments.as_slice() {
            ["rooms", id] => match room_id_segment(id) {
                None => not_found(),
                Some(id) => match *request.method() {
                    Method::GET | Method::HEAD => self.room(&request, peer, id).await,
                    _ => method_not_allowed("GET, HEAD"),
                },
            },
            ["rooms", id, "tickets"] => match room_id_segment(id) {
                None => not_found(),
                Some(id) => match *request.method() {
                    Method::POST => self.ticket(request, peer, id).await,
                    _ => method_not_allowed("POST"),
                },
            },
            _ => not_found(),
        }
    }

    async fn create_room(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let config = &self.inner.config;
        let gateway = &self.inner.gateway;
        let ip = client_ip(request.headers(), peer, &config.trusted_proxies);
        let body: CreateRoomBody = match read_json(
            request.into_body(),
            config.max_body_bytes,
            config.body_read_timeout,
        )
        .await
        {
            Ok(body) => body,
            Err(problem) => return problem.into_response(),
        };
        if !is_password_hash(&body.password) {
            return refusal(&Reject::invalid("invalid password format"), RATE_WINDOW);
        }
        let listing = body.public.then_some(ListingRequest {
            title: body.title,
            description: body.description,
            tags: body.tags,
            key_encoded: body.key_encoded,
        });
        let created = match gateway
            .create_room(CreateRoomRequest {
                password: body.password,
                ephemeral: body.ephemeral,
                expiry_secs: body.expiry,
                listing,
                client_ip: Some(ip),
            })
            .await
        {
            Ok(created) => created,
            Err(reject) if reject == texts::RATE_LIMITED => return refusal(&reject, RATE_WINDOW),
            Err(reject) => return refusal(&reject, BUSY_RETRY_AFTER),
        };
        let room = created.room;
        let mut response = json_response(
            StatusCode::CREATED,
            &CreatedRoomBody {
                has_password: room.has_password,
                expires_at: room.expires_at,
                listing_error: created.listing_error.map(RejectBody::from),
                room_id: room.id.clone(),
            },
        );
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/rooms/{}", room.id)) {
            response.headers_mut().insert(LOCATION, location);
        }
        response
    }

    async fn room(
        &self,
        request: &Request<Incoming>,
        peer: SocketAddr,
        room_id: &str,
    ) -> Response<Full<Bytes>> {
        let config = &self.inner.config;
        let client = ClientKey::of(client_ip(request.headers(), peer, &config.trusted_proxies));
        match self
            .inner
            .gateway
            .store()
            .hit(&format!("lookup:{client}"), 1, RATE_WINDOW)
            .await
        {
            Ok(n) if n > config.room_lookups_per_minute => {
                return refusal(&texts::RATE_LIMITED, RATE_WINDOW);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "room lookup rate limit unavailable");
                return refusal(&texts::UNAVAILABLE, BUSY_RETRY_AFTER);
            }
        }
        match self.inner.gateway.room_info(room_id).await {
            Ok(info) => {
                let mut response = json_response(
                    StatusCode::OK,
                    &RoomBody {
                        room_id: info.room_id,
                        has_password: info.has_password,
                        expires_at: info.expires_at,
                        member_count: info.member_count,
                    },
                );
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(reject) => refusal(&reject, BUSY_RETRY_AFTER),
        }
    }

    async fn ticket(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        room_id: &str,
    ) -> Response<Full<Bytes>> {
        let gateway = &self.inner.gateway;
        let ip = client_ip(request.headers(), peer, &self.inner.config.trusted_proxies);
        let config = &self.inner.config;
        let body: TicketBody = match read_json(
            request.into_body(),
            config.max_body_bytes,
            config.body_read_timeout,
        )
        .await
        {
            Ok(body) => body,
            Err(problem) => return problem.into_response(),
        };
        if !is_password_hash(&body.password) {
            return refusal(&Reject::invalid("invalid password format"), RATE_WINDOW);
        }
        if let Err(reject) = gateway.check_password(room_id, &body.password, ip).await {
            // the guess limit lasts a window; a busy argon2 pool clears in moments
            let retry_after = if reject == texts::TOO_MANY_GUESSES {
                gateway.config().password_guess_window
            } else {
                BUSY_RETRY_AFTER
            };
            return refusal(&reject, retry_after);
        }
        match gateway.issue_ticket(room_id).await {
            Ok(issued) => {
                let mut response = json_response(
                    StatusCode::CREATED,
                    &TicketCreatedBody {
                        ticket: issued.ticket,
                        expires_at: issued.expires_at,
                    },
                );
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(reject) => refusal(&reject, BUSY_RETRY_AFTER),
        }
    }
}

/// The route template of a traced API path (`None`: not traced).
fn route_template(path: &str) -> Option<&'static str> {
    match path {
        "/api/hub" => Some("/api/hub"),
        "/api/hub/stats" => Some("/api/hub/stats"),
        "/openapi.json" => Some("/openapi.json"),
        "/v1/rooms" => Some("/v1/rooms"),
        _ => {
            let rest = path.strip_prefix("/v1/")?;
            Some(match rest.split('/').collect::<Vec<_>>().as_slice() {
                ["rooms", _] => "/v1/rooms/{roomId}",
                ["rooms", _, "tickets"] => "/v1/rooms/{roomId}/tickets",
                _ => "/v1/*",
            })
        }
    }
}

/// The span of one traced HTTP request: method and route template now, the
/// status once answered. Nothing from the body, the query or the headers.
pub(crate) fn request_span(method: &Method, route: &'static str) -> tracing::Span {
    let method = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    };
    tracing::info_span!(
        "http_request",
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_in_paths_must_look_like_room_ids() {
        assert_eq!(
            room_id_segment("V1StGXR8_Z5jdHi6B-myT"),
            Some("V1StGXR8_Z5jdHi6B-myT")
        );
        assert_eq!(room_id_segment(""), None);
        assert_eq!(room_id_segment("a%20b"), None);
        assert_eq!(room_id_segment(&"a".repeat(65)), None);
    }

    #[test]
    fn the_openapi_document_is_valid_json_naming_every_public_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/v1/rooms",
            "/v1/rooms/{roomId}",
            "/v1/rooms/{roomId}/tickets",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path}");
        }
    }
}
