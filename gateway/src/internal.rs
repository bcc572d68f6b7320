//! The gateway's internal HTTP API: what cluster relays call instead of
//! running argon2 themselves. Served on its own port (never exposed to the
//! internet) and authenticated with a shared secret
//! (`Authorization: Bearer <secret>`, compared in constant time), or with
//! relay client certificates when the listener requires them (mutual TLS;
//! [`InternalConfig::mutual_tls`]), or both: when both are configured,
//! both are required.
//!
//! | route | body | success |
//! |---|---|---|
//! | `POST /internal/v1/rooms` | [`wire::CreateRoom`] | 200 [`wire::CreatedRoom`] |
//! | `POST /internal/v1/rooms/{id}/password-check` | [`wire::PasswordCheck`] | 204 |
//! | `POST /internal/v1/rooms/{id}/ticket-redemptions` | [`wire::TicketRedemption`] | 204 |
//! | `POST /internal/v1/rooms/{id}/secrets` | [`wire::RoomSecret`] | 204 |
//!
//! A refusal is problem JSON whose `code` and `detail` are the Arthas code
//! and text ([`crate::problem::RejectProblem::to_reject`]), so a relay using
//! [`crate::remote::RemoteGateway`] sends exactly the error frame the
//! in-process gateway would have produced.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use edge::http::{
    empty_response, json_response, method_not_allowed, not_found, text_response, Body, Handler,
    Problem,
};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};
use protocol::Reject;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::Instrument as _;

use crate::metrics::Api;
use crate::problem::RejectProblem as _;
use crate::rooms::{CreateRoomRequest, Gateway, ListingRequest, NewRoomSummary};
use crate::server::unescape;
use crate::server::{read_json, request_span, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES};

/// The path prefix of every internal route.
pub const PREFIX: &str = "/internal/v1/rooms";
/// The OpenAPI document of this API (served at `/openapi.json` on the
/// internal port, without credentials: it holds no secret).
const OPENAPI_JSON: &str = include_str!("internal_openapi.json");

/// The request and response bodies, shared with [`crate::remote`].
pub mod wire {
    use serde::{Deserialize, Serialize};
    use std::net::IpAddr;

    /// `POST /internal/v1/rooms`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CreateRoom {
        /// "" or the client's SHA-256 hex.
        #[serde(default)]
        pub password: String,
        #[serde(default, deserialize_with = "crate::server::json_integer")]
        pub ephemeral: i64,
        #[serde(default, deserialize_with = "crate::server::json_integer")]
        pub expiry_secs: i64,
        #[serde(
            default,
            deserialize_with = "crate::server::json_object",
            skip_serializing_if = "Option::is_none"
        )]
        pub listing: Option<Listing>,
        /// The client's IP as the relay sees it (creation budgets per
        /// client); absent from relays older than the budgets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub client_ip: Option<IpAddr>,
        /// Extension: SHA-256 hex of the owner secret, or absent.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub owner_hash: String,
    }

    /// `POST /internal/v1/rooms/{id}/secrets` (extension): the owner's
    /// secret, and what changes.
    #[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RoomSecret {
        pub owner: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub password: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub owner_hash: Option<String>,
    }

    impl std::fmt::Debug for RoomSecret {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("RoomSecret { .. }")
        }
    }

    /// The public-listing part of a creation.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Listing {
        #[serde(default)]
        pub title: String,
        #[serde(default)]
        pub description: String,
        #[serde(default)]
        pub tags: Vec<String>,
        #[serde(default)]
        pub key_encoded: String,
    }

    /// A created room as the relay learns it: no password hash (only the
    /// gateway verifies passwords), just whether there is one.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Room {
        pub id: String,
        pub created_at: i64,
        pub expires_at: i64,
        pub ephemeral: i64,
        /// Defaults to false from a gateway older than this field (which
        /// sent the hash instead), so relays can be updated first.
        #[serde(default)]
        pub has_password: bool,
        pub capacity: u32,
        pub listed: bool,
    }

    /// An Arthas refusal.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Refusal {
        pub code: String,
        pub msg: String,
    }

    /// The answer to a creation.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct CreatedRoom {
        pub room: Room,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub listing_error: Option<Refusal>,
    }

    /// `POST /internal/v1/rooms/{id}/password-check`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PasswordCheck {
        pub password: String,
        /// The client's IP as the relay sees it (guess limits per IP).
        pub client_ip: IpAddr,
    }

    /// `POST /internal/v1/rooms/{id}/ticket-redemptions`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TicketRedemption {
        pub ticket: String,
    }
}

impl From<NewRoomSummary> for wire::Room {
    fn from(r: NewRoomSummary) -> wire::Room {
        wire::Room {
            id: r.id,
            created_at: r.created_at,
            expires_at: r.expires_at,
            ephemeral: r.ephemeral,
            has_password: r.has_password,
            capacity: r.capacity,
            listed: r.listed,
        }
    }
}

impl From<wire::Room> for NewRoomSummary {
    fn from(r: wire::Room) -> NewRoomSummary {
        NewRoomSummary {
            id: r.id,
            created_at: r.created_at,
            expires_at: r.expires_at,
            ephemeral: r.ephemeral,
            has_password: r.has_password,
            capacity: r.capacity,
            listed: r.listed,
        }
    }
}

impl From<&Reject> for wire::Refusal {
    fn from(r: &Reject) -> wire::Refusal {
        wire::Refusal {
            code: r.code.as_str().to_owned(),
            msg: r.msg.clone().into_owned(),
        }
    }
}

/// Settings of the internal API.
#[derive(Clone)]
pub struct InternalConfig {
    /// The shared secret relays present. Empty = no bearer token is asked
    /// for, which is allowed only with `mutual_tls` (else every request is
    /// refused).
    pub secret: String,
    /// The listener serving this API requires a client certificate from
    /// the relays' CA on every connection (the TLS layer checked it before
    /// any request arrives).
    pub mutual_tls: bool,
    /// Largest JSON request body accepted.
    pub max_body_bytes: usize,
    /// Longest a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
}

impl std::fmt::Debug for InternalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalConfig")
            .field("secret", &"<redacted>")
            .field("mutual_tls", &self.mutual_tls)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_read_timeout", &self.body_read_timeout)
            .finish()
    }
}

impl InternalConfig {
    /// A config with `secret` and the default body limit.
    pub fn new(secret: impl Into<String>) -> InternalConfig {
        InternalConfig {
            secret: secret.into(),
            mutual_tls: false,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
        }
    }
}

/// A room id from a path segment (percent-decoded), or `None` when it
/// cannot name a room.
fn room_id(segment: &str) -> Option<String> {
    unescape(&segment.replace('+', "%2B")).filter(|id| protocol::client::is_room_id(id))
}

/// The internal API. Cheap to clone.
#[derive(Clone)]
pub struct InternalApi {
    inner: Arc<Inner>,
}

struct Inner {
    gateway: Gateway,
    /// SHA-256 of the secret, so the comparison is constant-time whatever
    /// the length of what is presented; `None` when no secret is set.
    secret_digest: Option<[u8; 32]>,
    /// Every connection carries a verified relay client certificate.
    mutual_tls: bool,
    max_body_bytes: usize,
    body_read_timeout: std::time::Duration,
}

fn unauthorized() -> Response<Body> {
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong internal API credentials",
    )
    .into_response();
    response.headers_mut().insert(
        "www-authenticate",
        hyper::header::HeaderValue::from_static("Bearer"),
    );
    response
}

fn refused(reject: &Reject) -> Response<Body> {
    Problem::from_reject(reject).into_response()
}

impl InternalApi {
    /// The internal API over `gateway`.
    pub fn new(gateway: Gateway, config: InternalConfig) -> InternalApi {
        let secret_digest =
            (!config.secret.is_empty()).then(|| Sha256::digest(config.secret.as_bytes()).into());
        if secret_digest.is_none() && !config.mutual_tls {
            tracing::warn!(
                "internal API has no secret and no client certificates: every request will be refused"
            );
        }
        InternalApi {
            inner: Arc::new(Inner {
                gateway,
                secret_digest,
                mutual_tls: config.mutual_tls,
                max_body_bytes: config.max_body_bytes,
                body_read_timeout: config.body_read_timeout,
            }),
        }
    }

    /// The gateway behind the API.
    pub fn gateway(&self) -> &Gateway {
        &self.inner.gateway
    }

    fn authorized(&self, request: &Request<Incoming>) -> bool {
        let Some(expected) = &self.inner.secret_digest else {
            // No secret: the client certificate, checked by TLS, is the
            // credential.
            return self.inner.mutual_tls;
        };
        let Some(presented) = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
        else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(expected).into()
    }

    /// Answers one request from a relay, traced (method, route template,
    /// status).
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let route = Route::parse(request.uri().path());
        let label = route.label();
        let started = std::time::Instant::now();
        let span = request_span(request.method(), label);
        crate::trace_context::continue_from(&span, request.headers());
        let response = self
            .route(route, request, peer)
            .instrument(span.clone())
            .await;
        span.record("http.response.status_code", response.status().as_u16());
        self.inner.gateway.metrics().request(
            Api::Internal,
            label,
            response.status().as_u16(),
            started.elapsed(),
        );
        response
    }

    async fn route(
        &self,
        route: Route,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        if matches!(route, Route::OpenApi) && request.method() == Method::GET {
            return text_response(StatusCode::OK, "application/json", OPENAPI_JSON);
        }
        if !self.authorized(&request) {
            tracing::warn!(%peer, "internal API request refused: bad credentials");
            return unauthorized();
        }
        if matches!(route, Route::OpenApi | Route::Unknown) {
            return not_found();
        }
        if request.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let body = request.into_body();
        match route {
            Route::Create => self.create(body).await,
            Route::PasswordCheck(Some(id)) => self.password_check(body, &id).await,
            Route::TicketRedemption(Some(id)) => self.redeem(body, &id).await,
            Route::Secrets(Some(id)) => self.secrets(body, &id).await,
            Route::PasswordCheck(None)
            | Route::TicketRedemption(None)
            | Route::Secrets(None)
            | Route::OpenApi
            | Route::Unknown => not_found(),
        }
    }

    async fn create(&self, body: Incoming) -> Response<Body> {
        let body: wire::CreateRoom = match self.json(body).await {
            Ok(body) => body,
            Err(problem) => return problem,
        };
        let request = CreateRoomRequest {
            password: body.password,
            ephemeral: body.ephemeral,
            expiry_secs: body.expiry_secs,
            listing: body.listing.map(|l| ListingRequest {
                title: l.title,
                description: l.description,
                tags: l.tags,
                key_encoded: l.key_encoded,
            }),
            client_ip: body.client_ip,
            owner_hash: body.owner_hash,
        };
        match self.inner.gateway.create_room(request).await {
            Ok(created) => json_response(
                StatusCode::OK,
                &wire::CreatedRoom {
                    listing_error: created.listing_error.as_ref().map(wire::Refusal::from),
                    room: created.room.into(),
                },
            ),
            Err(reject) => refused(&reject),
        }
    }

    /// The request's JSON body within this API's size and time limits, or the
    /// problem response that refuses it.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        body: Incoming,
    ) -> Result<T, Response<Body>> {
        read_json(
            body,
            self.inner.max_body_bytes,
            self.inner.body_read_timeout,
        )
        .await
        .map_err(|problem| problem.into_response())
    }

    async fn password_check(&self, body: Incoming, room_id: &str) -> Response<Body> {
        let body: wire::PasswordCheck = match self.json(body).await {
            Ok(body) => body,
            Err(problem) => return problem,
        };
        let ip: IpAddr = body.client_ip;
        match self
            .inner
            .gateway
            .check_password(room_id, &body.password, ip)
            .await
        {
            Ok(()) => empty_response(StatusCode::NO_CONTENT),
            Err(reject) => refused(&reject),
        }
    }

    async fn secrets(&self, body: Incoming, room_id: &str) -> Response<Body> {
        let body: wire::RoomSecret = match self.json(body).await {
            Ok(body) => body,
            Err(problem) => return problem,
        };
        let request = crate::rooms::RoomSecretRequest {
            owner: body.owner,
            password: body.password,
            owner_hash: body.owner_hash,
        };
        match self.inner.gateway.set_room_secret(room_id, request).await {
            Ok(()) => empty_response(StatusCode::NO_CONTENT),
            Err(reject) => refused(&reject),
        }
    }

    async fn redeem(&self, body: Incoming, room_id: &str) -> Response<Body> {
        let body: wire::TicketRedemption = match self.json(body).await {
            Ok(body) => body,
            Err(problem) => return problem,
        };
        match self
            .inner
            .gateway
            .redeem_ticket(room_id, &body.ticket)
            .await
        {
            Ok(()) => empty_response(StatusCode::NO_CONTENT),
            Err(reject) => refused(&reject),
        }
    }
}

/// A request of the internal listener, by its path.
enum Route {
    /// `/openapi.json` (GET without credentials).
    OpenApi,
    Create,
    /// The room id, percent-decoded; `None` when it cannot name a room.
    PasswordCheck(Option<String>),
    TicketRedemption(Option<String>),
    /// Extension: the owner's SetRoomSecret.
    Secrets(Option<String>),
    Unknown,
}

impl Route {
    fn parse(path: &str) -> Route {
        if path == "/openapi.json" {
            return Route::OpenApi;
        }
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return Route::Unknown;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        match segments.as_slice() {
            [""] => Route::Create,
            ["", id, "password-check"] => Route::PasswordCheck(room_id(id)),
            ["", id, "ticket-redemptions"] => Route::TicketRedemption(room_id(id)),
            ["", id, "secrets"] => Route::Secrets(room_id(id)),
            _ => Route::Unknown,
        }
    }

    /// The route's name in metrics and traces (its template).
    fn label(&self) -> &'static str {
        match self {
            Route::OpenApi => "/openapi.json",
            Route::Create => "/internal/v1/rooms",
            Route::PasswordCheck(_) => "/internal/v1/rooms/{roomId}/password-check",
            Route::TicketRedemption(_) => "/internal/v1/rooms/{roomId}/ticket-redemptions",
            Route::Secrets(_) => "/internal/v1/rooms/{roomId}/secrets",
            Route::Unknown => "/internal/*",
        }
    }
}

impl Handler for InternalApi {
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        InternalApi::handle(self, request, peer)
    }

    fn panicked(&self) {
        self.gateway().metrics().panicked(Api::Internal);
    }
}
