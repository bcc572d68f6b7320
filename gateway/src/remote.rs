//! [`RemoteGateway`]: the [`Authority`] a cluster relay uses, calling the
//! gateway's internal API ([`crate::internal`]) over HTTP/1.1, or HTTPS
//! (`https://` base URL): the gateway's certificate is checked against the
//! configured CA, and a client certificate may stand in for the shared
//! secret or come beside it (mutual TLS). A certificate the relay does not
//! trust fails the call with a log line naming the reason.
//!
//! One client per relay, with a keep-alive pool: a join storm reuses warm
//! connections instead of paying a TCP handshake per password check. Every
//! call has a deadline; when the gateway is down, slow or misconfigured,
//! the relay gets the "service temporarily unavailable" refusal (an error
//! frame, never a hang), and existing chats are unaffected. Refusals the
//! gateway made come back as the very `Reject` it produced.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use protocol::reject::texts;
use protocol::{ErrorCode, Reject};
use serde::de::DeserializeOwned;
use serde::Serialize;
use store::warn_limit::WarnLimit;
use tokio::sync::Semaphore;

use crate::internal::{wire, PREFIX};
use crate::problem::{Problem, RejectProblem as _};
use crate::rooms::{CreateRoomRequest, CreatedRoom};
use crate::Authority;

/// How to reach the gateway's internal API.
#[derive(Clone)]
pub struct RemoteConfig {
    /// `http://host:port` or `https://host:port` of the internal API (no path).
    pub base_url: String,
    /// The shared secret (`--internal-secret` of the gateway); empty when a
    /// client certificate (in `tls`) authenticates the relay instead.
    pub secret: String,
    /// TLS for an `https://` base URL: the CAs trusted for the gateway's
    /// certificate and the relay's client certificate, if any (default:
    /// the system's roots, no client certificate).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Deadline for establishing a TCP connection.
    pub connect_timeout: Duration,
    /// Deadline for a whole call (connect, argon2 queueing, response).
    pub request_timeout: Duration,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Most idle connections kept to the gateway.
    pub pool_max_idle: usize,
    /// Largest response body read.
    pub max_response_bytes: usize,
    /// Most calls in flight at once (each may hold its own connection);
    /// more wait for a turn within `request_timeout`.
    pub max_in_flight: usize,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("base_url", &self.base_url)
            .field("secret", &"<redacted>")
            .field("tls", &self.tls.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle", &self.pool_max_idle)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

impl RemoteConfig {
    /// Defaults for everything but the address and the secret.
    pub fn new(base_url: impl Into<String>, secret: impl Into<String>) -> RemoteConfig {
        RemoteConfig {
            base_url: base_url.into(),
            secret: secret.into(),
            tls: None,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle: 64,
            max_response_bytes: 64 * 1024,
            max_in_flight: 64,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error("gateway URL must look like http://host:port or https://host:port, got {0:?}")]
    BadUrl(String),
    #[error("the internal API secret is empty (and no client certificate is configured) or not a valid header value")]
    BadSecret,
    #[error("TLS settings are given for an http:// gateway URL: use https://")]
    TlsWithoutHttps,
    #[error("TLS: {0}")]
    Tls(String),
}

/// The gateway's internal API as an [`Authority`].
#[derive(Clone)]
pub struct RemoteGateway {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `http(s)://host:port`, no trailing slash.
    base: String,
    /// `Bearer <secret>`, marked sensitive; `None` when a client
    /// certificate is the relay's only credential.
    authorization: Option<HeaderValue>,
    request_timeout: Duration,
    max_response_bytes: usize,
    /// Turns for calls in flight: a creation storm opens at most this many
    /// connections to the gateway instead of one per waiting creation.
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for RemoteGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteGateway")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes a path segment (a room id comes from a client).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error with its sources (hyper's own message hides the TLS reason,
/// such as an unknown issuer or an expired certificate, in its source).
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// A failed call: what the relay tells the client.
fn unavailable(what: &str, detail: impl std::fmt::Display) -> Reject {
    static CALL_FAILED: WarnLimit = WarnLimit::new();
    if let Some(suppressed) = CALL_FAILED.check() {
        tracing::warn!(call = what, error = %detail, suppressed, "gateway call failed");
    }
    texts::UNAVAILABLE
}

impl RemoteGateway {
    /// A client for the internal API at `config.base_url` (calls must run
    /// on a tokio runtime; building it needs none).
    pub fn new(config: RemoteConfig) -> Result<RemoteGateway, RemoteError> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| RemoteError::BadUrl(config.base_url.clone()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(RemoteError::BadUrl(config.base_url)),
        };
        if uri.authority().is_none() || !matches!(uri.path(), "" | "/") {
            return Err(RemoteError::BadUrl(config.base_url));
        }
        if config.tls.is_some() && !https {
            return Err(RemoteError::TlsWithoutHttps);
        }
        let tls = match config.tls {
            Some(tls) => tls,
            None if https => {
                edge::tls::client_config(None, None).map_err(|e| RemoteError::Tls(e.to_string()))?
            }
            // Never used for http://, but the connector wants one.
            None => Arc::new(
                rustls::ClientConfig::builder_with_provider(edge::tls::provider())
                    .with_protocol_versions(edge::tls::PROTOCOL_VERSIONS)
                    .map_err(|e| RemoteError::Tls(e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        };
        let has_client_certificate = tls.client_auth_cert_resolver.has_certs();
        let authorization = if config.secret.is_empty() {
            if !(https && has_client_certificate) {
                return Err(RemoteError::BadSecret);
            }
            None
        } else {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", config.secret))
                .map_err(|_| RemoteError::BadSecret)?;
            value.set_sensitive(true);
            Some(value)
        };
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        // The connector sets ALPN itself (http/1.1) and refuses a
        // configuration that already has it.
        let mut tls = (*tls).clone();
        tls.alpn_protocols.clear();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(RemoteGateway {
            client,
            base,
            authorization,
            request_timeout: config.request_timeout,
            max_response_bytes: config.max_response_bytes,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
        })
    }

    /// POSTs `body` to `path`; `Ok(None)` for 204, `Ok(Some(T))` for a JSON
    /// 2xx, `Err` with the gateway's refusal or "unavailable".
    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        body: &B,
    ) -> Result<Option<T>, Reject> {
        let body = serde_json::to_vec(body).map_err(|e| unavailable(what, e))?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let mut request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unavailable(what, e))?;
        crate::trace_context::inject(request.headers_mut());
        let call = async {
            let _turn = self
                .in_flight
                .acquire()
                .await
                .map_err(|e| unavailable(what, e))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unavailable(what, ErrorChain(&e)))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| unavailable(what, e))?
                .to_bytes();
            Ok::<_, Reject>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.request_timeout, call)
            .await
            .map_err(|_| unavailable(what, "timed out"))??;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| unavailable(what, e));
        }
        match serde_json::from_slice::<Problem>(&bytes)
            .ok()
            .and_then(|p| p.to_reject())
        {
            Some(reject) => Err(reject),
            None => Err(unavailable(what, format!("status {status}"))),
        }
    }

    fn room_path(room_id: &str, action: &str) -> String {
        format!("{PREFIX}/{}/{action}", encode_segment(room_id))
    }
}

fn refusal(r: wire::Refusal) -> Option<Reject> {
    ErrorCode::parse(&r.code).map(|code| Reject::owned(code, r.msg))
}

#[async_trait]
impl Authority for RemoteGateway {
    async fn create_room(&self, request: CreateRoomRequest) -> Result<CreatedRoom, Reject> {
        let body = wire::CreateRoom {
            password: request.password,
            ephemeral: request.ephemeral,
            expiry_secs: request.expiry_secs,
            listing: request.listing.map(|l| wire::Listing {
                title: l.title,
                description: l.description,
                tags: l.tags,
                key_encoded: l.key_encoded,
            }),
            client_ip: request.client_ip,
            owner_hash: request.owner_hash,
        };
        let created: wire::CreatedRoom = self
            .post("create_room", PREFIX, &body)
            .await?
            .ok_or_else(|| unavailable("create_room", "empty answer"))?;
        Ok(CreatedRoom {
            room: created.room.into(),
            listing_error: created.listing_error.and_then(refusal),
        })
    }

    async fn check_password(
        &self,
        room_id: &str,
        password: &str,
        client_ip: IpAddr,
    ) -> Result<(), Reject> {
        if !protocol::client::is_room_id(room_id) {
            return Err(protocol::reject::texts::ROOM_NOT_FOUND);
        }
        let body = wire::PasswordCheck {
            password: password.to_owned(),
            client_ip,
        };
        self.post::<_, serde_json::Value>(
            "check_password",
            &Self::room_path(room_id, "password-check"),
            &body,
        )
        .await
        .map(drop)
    }

    async fn redeem_ticket(&self, room_id: &str, ticket: &str) -> Result<(), Reject> {
        if !protocol::client::is_room_id(room_id) {
            return Err(protocol::reject::texts::INVALID_TICKET);
        }
        let body = wire::TicketRedemption {
            ticket: ticket.to_owned(),
        };
        self.post::<_, serde_json::Value>(
            "redeem_ticket",
            &Self::room_path(room_id, "ticket-redemptions"),
            &body,
        )
        .await
        .map(drop)
    }

    async fn set_room_secret(
        &self,
        room_id: &str,
        request: crate::rooms::RoomSecretRequest,
    ) -> Result<(), Reject> {
        if !protocol::client::is_room_id(room_id) {
            return Err(protocol::reject::texts::ROOM_NOT_FOUND);
        }
        let body = wire::RoomSecret {
            owner: request.owner,
            password: request.password,
            owner_hash: request.owner_hash,
        };
        self.post::<_, serde_json::Value>(
            "set_room_secret",
            &Self::room_path(room_id, "secrets"),
            &body,
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("V1St-_x"), "V1St-_x");
        assert_eq!(encode_segment("a/b c+é"), "a%2Fb%20c%2B%C3%A9");
    }

    #[test]
    fn it_can_be_built_outside_a_runtime() {
        assert!(RemoteGateway::new(RemoteConfig::new("http://127.0.0.1:1", "s")).is_ok());
    }

    #[tokio::test]
    async fn bad_configs_are_refused() {
        assert!(matches!(
            RemoteGateway::new(RemoteConfig::new("ftp://gw:8082", "s")),
            Err(RemoteError::BadUrl(_))
        ));
        assert!(matches!(
            RemoteGateway::new(RemoteConfig::new("gw:8082", "s")),
            Err(RemoteError::BadUrl(_))
        ));
        assert!(matches!(
            RemoteGateway::new(RemoteConfig::new("http://gw:8082/x", "s")),
            Err(RemoteError::BadUrl(_))
        ));
        assert_eq!(
            RemoteGateway::new(RemoteConfig::new("http://gw:8082", "")).unwrap_err(),
            RemoteError::BadSecret
        );
        assert!(RemoteGateway::new(RemoteConfig::new("http://gw:8082/", "s")).is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_gateway_is_unavailable_not_a_hang() {
        // a port nothing listens on
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let remote = RemoteGateway::new(RemoteConfig::new(format!("http://{addr}"), "s")).unwrap();
        assert_eq!(
            remote.redeem_ticket("room", "t").await,
            Err(texts::UNAVAILABLE)
        );
    }
}
