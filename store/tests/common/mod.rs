//! What the store's tests share: one fixture per engine (memory, a real
//! standalone Redis, a real 3-master cluster, a master + replica under three
//! sentinels) and small builders.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use arthas_store::memory::{MemoryEngine, MemoryLimits};
use arthas_store::redis::{RedisConfig, RedisEngine, RedisMode};
use arthas_store::testing::{RedisCluster, RedisSentinel, RedisServer, SENTINEL_MASTER};
use arthas_store::{MemberRecord, NewRoom, RoomRecord, RoomStore};
use protocol::member::MemberId;

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// The grace after expiry the Redis engines run with in tests.
pub const EXPIRED_GRACE: Duration = Duration::from_secs(1);

/// Limits tuned for tests: short grace and quick reconnects.
pub fn test_config() -> RedisConfig {
    RedisConfig {
        expired_room_grace: EXPIRED_GRACE,
        reconnect_backoff_min: Duration::from_millis(10),
        reconnect_backoff_max: Duration::from_millis(200),
        bus_probe_interval: Duration::from_millis(500),
        publish_timeout: Duration::from_millis(500),
        ..RedisConfig::default()
    }
}

/// Where the engine under test keeps its state.
pub enum Backend {
    Memory(Arc<MemoryEngine>),
    Standalone(RedisServer),
    Cluster(RedisCluster),
    Sentinel(RedisSentinel),
}

pub struct Fixture {
    pub backend: Backend,
}

impl Fixture {
    pub async fn memory() -> Fixture {
        Fixture {
            backend: Backend::Memory(MemoryEngine::new(MemoryLimits::default())),
        }
    }

    pub async fn standalone() -> Fixture {
        Fixture {
            backend: Backend::Standalone(RedisServer::start().await.expect("redis-server starts")),
        }
    }

    pub async fn cluster() -> Fixture {
        Fixture {
            backend: Backend::Cluster(RedisCluster::start().await.expect("redis cluster starts")),
        }
    }

    pub async fn sentinel() -> Fixture {
        Fixture {
            backend: Backend::Sentinel(RedisSentinel::start().await.expect("sentinels start")),
        }
    }

    pub fn mode(&self) -> Option<RedisMode> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Standalone(s) => Some(RedisMode::Standalone { url: s.url() }),
            Backend::Cluster(c) => Some(RedisMode::Cluster { nodes: c.urls() }),
            Backend::Sentinel(s) => Some(RedisMode::Sentinel {
                sentinels: s.urls(),
                master_name: SENTINEL_MASTER.to_owned(),
            }),
        }
    }

    /// A Redis engine of its own (a "relay"); panics on the memory backend.
    pub async fn redis_engine(&self) -> Arc<RedisEngine> {
        init_logging();
        let mode = self.mode().expect("a Redis backend");
        RedisEngine::connect(mode, test_config())
            .await
            .expect("engine connects")
    }

    /// A store handle: a new connection for Redis (another relay), the one
    /// engine for memory.
    pub async fn store(&self) -> Arc<dyn RoomStore> {
        match &self.backend {
            Backend::Memory(e) => e.clone(),
            _ => self.redis_engine().await,
        }
    }

    /// Whether presence spans nodes (memory is one node: nothing to sweep).
    pub fn has_presence(&self) -> bool {
        !matches!(self.backend, Backend::Memory(_))
    }

    /// The grace after which an expired room's keys vanish (memory keeps an
    /// expired room until it is destroyed).
    pub fn expired_grace(&self) -> Option<Duration> {
        match self.backend {
            Backend::Memory(_) => None,
            _ => Some(EXPIRED_GRACE),
        }
    }
}

/// A room record with the given capacity and password hash.
pub fn new_room(id: &str, capacity: u32, password_hash: &str) -> NewRoom {
    NewRoom {
        record: RoomRecord {
            id: id.into(),
            created_at: arthas_store::unix_secs(),
            expires_at: 0,
            ephemeral: 0,
            password_hash: password_hash.into(),
            capacity,
            listed: false,
        },
        unjoined_ttl: Duration::from_secs(60),
        keep_while_empty: false,
        owner_hash: String::new(),
    }
}

/// Member `n` on relay `node`.
pub fn member(n: u32, node: &str) -> MemberRecord {
    MemberRecord {
        id: MemberId::from_random(n),
        name: format!("member {n}"),
        color: protocol::member::member_color(MemberId::from_random(n).as_str()),
        node: node.into(),
        joined_at: arthas_store::unix_millis(),
    }
}

/// Logs to the test output when `ARTHAS_LOG` is set (e.g. `debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("ARTHAS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A relay as the bus sees it: an engine and the sink it delivers to.
pub struct Relay {
    pub engine: Arc<RedisEngine>,
    pub sink: Arc<arthas_store::testing::RecordingSink>,
}

/// A Redis engine of the fixture with a recording sink attached.
pub async fn relay(f: &Fixture) -> Relay {
    let engine = f.redis_engine().await;
    let sink = arthas_store::testing::RecordingSink::new();
    engine.attach(sink.clone());
    Relay { engine, sink }
}

/// A bus message for the whole room carrying `text`.
pub fn message(text: &str) -> arthas_store::BusMessage {
    arthas_store::BusMessage {
        target: arthas_store::Target::Room { except: None },
        frame: bytes::Bytes::from(text.to_owned()),
    }
}
