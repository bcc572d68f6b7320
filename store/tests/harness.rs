//! The test harness itself: servers start, answer, and go away.

use std::time::{Duration, Instant};

use arthas_store::testing::{RedisCluster, RedisServer};

#[tokio::test]
async fn a_standalone_server_starts_restarts_and_stops_on_drop() {
    let t = Instant::now();
    let mut server = RedisServer::start().await.expect("redis-server starts");
    let started = t.elapsed();
    assert_ne!(server.port(), 6379);
    server.command(&["SET", "k", "v"]).await.expect("SET");
    let t = Instant::now();
    server.restart().await.expect("restart");
    eprintln!("standalone start {started:?}, restart {:?}", t.elapsed());
    let port = server.port();
    drop(server);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test]
async fn a_cluster_of_three_masters_forms_and_migrates_a_slot() {
    let t = Instant::now();
    let cluster = RedisCluster::start().await.expect("cluster starts");
    eprintln!("cluster start {:?}", t.elapsed());
    let slot = cluster.slot_of("arthas:{room}").await.expect("slot");
    let before = cluster.owner_of_slot(slot).await.expect("owner");
    let t = Instant::now();
    let (from, to) = cluster
        .migrate_slot_of("arthas:{room}")
        .await
        .expect("migration");
    eprintln!("migration {:?}", t.elapsed());
    assert_eq!(from, before);
    assert_eq!(cluster.owner_of_slot(slot).await.expect("owner"), to);
    let _ = Duration::ZERO;
}
