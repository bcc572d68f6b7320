//! Shared pieces of the gateway's API tests: real loopback servers running
//! [`edge::http::serve`], and a small HTTP client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arthas_gateway::http::{HttpApi, HttpConfig};
use arthas_gateway::internal::{InternalApi, InternalConfig};
use arthas_gateway::password::PasswordConfig;
use arthas_gateway::{Gateway, GatewayConfig};
use async_trait::async_trait;
use bytes::Bytes;
use edge::http::{serve, Handler};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use protocol::member::MemberId;
use store::memory::{MemoryEngine, MemoryLimits};
use store::{
    Departure, JoinError, Joined, Left, Listing, ListingView, MemberRecord, NewRoom, RoomRecord,
    RoomStore, StoreError,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The client's SHA-256 hex of a password (any 64 characters will do).
pub fn pw(c: char) -> String {
    c.to_string().repeat(64)
}

/// A gateway config with cheap argon2 (tests, not security).
pub fn gateway_config() -> GatewayConfig {
    GatewayConfig {
        password: PasswordConfig {
            memory_kib: 64,
            iterations: 1,
            ..PasswordConfig::default()
        },
        ..GatewayConfig::default()
    }
}

/// A gateway on a fresh in-memory store.
pub fn gateway(config: GatewayConfig) -> Gateway {
    Gateway::new(MemoryEngine::new(MemoryLimits::default()), config).expect("valid test config")
}

/// A running server; stops when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub base: String,
    _stop: oneshot::Sender<()>,
}

/// Serves `handler` on a loopback port.
pub async fn start<H: Handler>(handler: H) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, Arc::new(handler), None, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        base: format!("http://{addr}"),
        _stop: stop,
    }
}

/// The public API over `gateway`, with an `online` counter the test controls.
pub struct Public {
    pub server: Running,
    pub gateway: Gateway,
    pub online: Arc<AtomicU64>,
}

pub async fn start_public(gateway: Gateway, config: HttpConfig) -> Public {
    let online = Arc::new(AtomicU64::new(0));
    let count = online.clone();
    let api = HttpApi::new(
        gateway.clone(),
        config,
        Arc::new(move || count.load(Ordering::Relaxed)),
    );
    Public {
        server: start(api).await,
        gateway,
        online,
    }
}

pub const SECRET: &str = "internal-test-secret";

/// The internal API over `gateway`, with [`SECRET`].
pub async fn start_internal(gateway: Gateway) -> Running {
    start(InternalApi::new(gateway, InternalConfig::new(SECRET))).await
}

/// An answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with `status` and returns it.
    pub fn problem(&self, status: u16) -> serde_json::Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let p = self.json();
        assert_eq!(p["status"], status);
        assert_eq!(p["type"], "about:blank");
        assert!(p["title"].is_string());
        assert!(p["detail"].is_string());
        p
    }
}

/// Sends one request.
pub async fn call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(body.into())).expect("valid request");
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("answer in time")
        .expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body read")
        .to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str) -> Answer {
    call(Method::GET, url, &[], Bytes::new()).await
}

pub async fn post_json(url: &str, json: serde_json::Value) -> Answer {
    call(
        Method::POST,
        url,
        &[("content-type", "application/json")],
        json.to_string(),
    )
    .await
}

/// A store whose backend is down: every call fails.
pub struct DownStore;

fn down() -> StoreError {
    StoreError("backend down (test)".into())
}

#[async_trait]
impl RoomStore for DownStore {
    async fn create_room(&self, _room: NewRoom) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn room(&self, _room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        Err(down())
    }
    async fn join(
        &self,
        _room_id: &str,
        _member: MemberRecord,
        _password_checked: bool,
        _now_secs: i64,
    ) -> Result<Joined, JoinError> {
        Err(JoinError::Store(down()))
    }
    async fn leave(
        &self,
        _room_id: &str,
        _member_id: MemberId,
        _node: &str,
    ) -> Result<Left, StoreError> {
        Err(down())
    }
    async fn destroy(&self, _room_id: &str) -> Result<(), StoreError> {
        Err(down())
    }
    async fn owner_hash(&self, _room_id: &str) -> Result<Option<String>, StoreError> {
        Err(down())
    }
    async fn update_room_secrets(
        &self,
        _room_id: &str,
        _owner_hash: &str,
        _update: store::SecretUpdate,
    ) -> Result<store::SecretOutcome, StoreError> {
        Err(down())
    }
    async fn list_room(&self, _listing: Listing, _max_listed: usize) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn list_daily_topic(
        &self,
        _day: i64,
        _listing: Listing,
        _mark_ttl: Duration,
    ) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn listings(&self, _now_millis: i64) -> Result<Vec<ListingView>, StoreError> {
        Err(down())
    }
    async fn count_activity(&self, _room_id: &str, _now_millis: i64) -> Result<(), StoreError> {
        Err(down())
    }
    async fn hit(&self, _key: &str, _n: u64, _window: Duration) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn take(&self, _key: &str, _limit: u64, _window: Duration) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn give_back(&self, _key: &str) -> Result<(), StoreError> {
        Err(down())
    }
    async fn reserve_guess(
        &self,
        _room_id: &str,
        _client: &str,
        _client_limit: u64,
        _window: Duration,
    ) -> Result<store::RoomGuess, StoreError> {
        Err(down())
    }
    async fn release_guess(&self, _room_id: &str, _client: &str) -> Result<(), StoreError> {
        Err(down())
    }
    async fn member_count(&self, _room_id: &str) -> Result<Option<u32>, StoreError> {
        Err(down())
    }
    async fn claim_once(&self, _key: &str, _ttl: Duration) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn heartbeat(
        &self,
        _node_id: &str,
        _ttl: Duration,
        _connections: u64,
    ) -> Result<(), StoreError> {
        Err(down())
    }
    async fn online(&self) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn live_nodes(&self) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn relays_holding(&self, _: &str) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn sweep_dead_nodes(&self) -> Result<Vec<Departure>, StoreError> {
        Err(down())
    }
}
