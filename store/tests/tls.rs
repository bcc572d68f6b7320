//! `rediss://` in every mode: the engine's commands and its bus over TLS to
//! real `redis-server` processes that listen on TLS only, with a CA made in
//! the test (rcgen) and, where the servers demand it (`tls-auth-clients
//! yes`), a client certificate. Standalone, a 3-master Cluster (TLS cluster
//! bus too) and Sentinel (through a failover); a server whose CA is not
//! trusted, and a client without a certificate, are refused at connect.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arthas_store::redis::{RedisConfig, RedisEngine, RedisMode, RedisTls};
use arthas_store::testing::{
    RecordingSink, RedisCluster, RedisSentinel, RedisServer, ServerTls, SENTINEL_MASTER,
};
use arthas_store::{Bus, BusMessage, RoomStore, StoreError, Target};
use bytes::Bytes;
use edge::testing::{TestCa, Usage};

const WAIT: Duration = Duration::from_secs(10);

/// A CA, its server certificate for 127.0.0.1 and a client certificate, as
/// files in a directory that lives as long as the value.
struct Certs {
    dir: tempfile::TempDir,
    ca: TestCa,
}

impl Certs {
    fn new() -> Certs {
        Certs {
            dir: tempfile::tempdir().expect("tempdir"),
            ca: TestCa::new("redis test CA"),
        }
    }

    /// The servers' TLS settings (`auth_clients`: client certificates required).
    fn server(&self, auth_clients: bool) -> ServerTls {
        let dir = self.dir.path();
        let (cert, key) = self
            .ca
            .issue(&["127.0.0.1"], Usage::Server)
            .write(dir, "server");
        let (client_cert, client_key) = self
            .ca
            .issue(&["harness"], Usage::Client)
            .write(dir, "harness");
        ServerTls {
            cert,
            key,
            ca: self.ca.write(dir, "ca"),
            auth_clients,
            client_cert,
            client_key,
        }
    }

    /// What the engine is configured with: this CA, and a client
    /// certificate when `client` is set.
    fn engine(&self, client: bool) -> RedisTls {
        let issued = self.ca.issue(&["relay"], Usage::Client);
        RedisTls {
            ca_pem: Some(self.ca.pem().into_bytes()),
            client_pem: client
                .then(|| (issued.chain_pem.into_bytes(), issued.key_pem.into_bytes())),
        }
    }
}

fn config(tls: RedisTls) -> RedisConfig {
    RedisConfig {
        tls,
        ..common::test_config()
    }
}

/// The engine with a recording sink attached.
async fn connect(
    mode: RedisMode,
    tls: RedisTls,
) -> Result<(Arc<RedisEngine>, Arc<RecordingSink>), StoreError> {
    let engine = RedisEngine::connect(mode, config(tls)).await?;
    let sink = RecordingSink::new();
    engine.attach(sink.clone());
    Ok((engine, sink))
}

/// A room is created and joined, and a message published on the bus comes
/// back through the subscription.
async fn commands_and_bus_work(
    (engine, sink): &(Arc<RedisEngine>, Arc<RecordingSink>),
    room: &str,
) {
    engine
        .create_room(common::new_room(room, 10, ""))
        .await
        .expect("create");
    let joined = engine
        .join(
            room,
            common::member(7, "n1"),
            false,
            arthas_store::unix_secs(),
        )
        .await
        .expect("join");
    assert_eq!(joined.members.len(), 1);
    engine.subscribe(room).await.expect("subscribe");
    let message = BusMessage {
        target: Target::Room { except: None },
        frame: Bytes::from_static(b"over tls"),
    };
    engine
        .publish(room, message.clone())
        .await
        .expect("publish");
    let got = sink.wait_for(room, 1, WAIT).await.expect("delivered");
    assert_eq!(got, vec![message]);
}

fn is_refused_for(e: &StoreError, words: &[&str]) -> bool {
    let text = e.to_string().to_lowercase();
    words.iter().any(|w| text.contains(w))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_over_tls_with_a_client_certificate() {
    let certs = Certs::new();
    let server = RedisServer::start_tls(&certs.server(true))
        .await
        .expect("redis-server with TLS starts");
    assert!(server.url().starts_with("rediss://"));
    let mode = RedisMode::Standalone { url: server.url() };
    let engine = connect(mode, certs.engine(true))
        .await
        .expect("connects over TLS");
    commands_and_bus_work(&engine, "tls-room").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_ca_is_not_trusted_is_refused() {
    let certs = Certs::new();
    let server = RedisServer::start_tls(&certs.server(false))
        .await
        .expect("redis-server with TLS starts");
    let stranger = Certs::new();
    let mode = RedisMode::Standalone { url: server.url() };
    match connect(mode, stranger.engine(false)).await {
        Ok(_) => panic!("connected to a server whose CA is not trusted"),
        Err(e) => assert!(is_refused_for(&e, &["certificate", "unknownissuer"]), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused_where_one_is_required() {
    let certs = Certs::new();
    let server = RedisServer::start_tls(&certs.server(true))
        .await
        .expect("redis-server with TLS starts");
    let mode = RedisMode::Standalone { url: server.url() };
    assert!(connect(mode, certs.engine(false)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_for_a_plain_url_are_a_configuration_error() {
    let certs = Certs::new();
    let mode = RedisMode::Standalone {
        url: "redis://127.0.0.1:1".into(),
    };
    let e = connect(mode, certs.engine(true))
        .await
        .err()
        .expect("refused");
    assert!(e.to_string().contains("rediss://"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_carries_commands_and_sharded_pubsub() {
    let certs = Certs::new();
    let cluster = RedisCluster::start_tls(&certs.server(true))
        .await
        .expect("a TLS cluster forms");
    let mode = RedisMode::Cluster {
        nodes: cluster.urls(),
    };
    let engine = connect(mode, certs.engine(true))
        .await
        .expect("connects over TLS");
    // Rooms on every master.
    for i in 0..6 {
        commands_and_bus_work(&engine, &format!("tls-room-{i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_over_tls_reaches_the_master_and_follows_a_failover() {
    let certs = Certs::new();
    let group = RedisSentinel::start_tls(&certs.server(true))
        .await
        .expect("TLS sentinels start");
    let mode = RedisMode::Sentinel {
        sentinels: group.urls(),
        master_name: SENTINEL_MASTER.into(),
    };
    assert!(group.urls()[0].starts_with("rediss://"));
    let engine = connect(mode, certs.engine(true))
        .await
        .expect("connects over TLS");
    commands_and_bus_work(&engine, "before").await;
    let recoveries = engine.0.bus_health().borrow().recoveries;
    group.failover().await.expect("failover");
    let mut health = engine.0.bus_health();
    tokio::time::timeout(WAIT, health.wait_for(|h| h.up && h.recoveries > recoveries))
        .await
        .expect("the bus follows the new master")
        .expect("health");
    // Commands reach the new master (over TLS: it listens on nothing else).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match engine
            .0
            .create_room(common::new_room("after", 10, ""))
            .await
        {
            Ok(true) => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no create on the new master: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
