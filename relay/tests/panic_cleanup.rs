//! No panic can leak anything: a connection whose task panics (a fault a
//! test injects, `relay::testing::Faults`) gives back its connection slot,
//! its room membership (MemberLeft to the others), its presence in Redis
//! and its active file transfer, and the panic is counted.

use std::sync::Arc;
use std::time::Duration;

use arthas_relay::server;
use arthas_relay::testing::{NotFound, RawClient};
use arthas_relay::{Relay, RelayBuilder, RelayConfig};
use protocol::client::{self, CreateRoom, FileMeta, JoinRoom, Sealed};
use protocol::kind;
use protocol::server::{MemberLeft, RelayFileRef, RoomCreated, RoomJoined};
use store::redis::{RedisConfig, RedisEngine, RedisMode};
use store::testing::RedisServer;

/// A relay over `redis` (in-process gateway) serving the Arthas protocol.
async fn start_relay(
    redis: &RedisServer,
    max_connections: usize,
) -> (Arc<Relay>, std::net::SocketAddr) {
    let engine = RedisEngine::connect(
        RedisMode::Standalone { url: redis.url() },
        RedisConfig::default(),
    )
    .await
    .expect("redis engine");
    let builder = RelayBuilder::new();
    engine.attach(builder.sink());
    let gateway =
        gateway::Gateway::new(engine.clone(), gateway::GatewayConfig::default()).expect("gateway");
    let config = RelayConfig {
        node_id: "relay-under-test".into(),
        max_connections,
        ping_interval: Duration::from_secs(3600),
        read_timeout: Duration::from_secs(3600),
        ..RelayConfig::default()
    };
    let relay = builder.build(config, engine.clone(), engine, Arc::new(gateway));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(server::serve(
        listener,
        relay.clone(),
        Arc::new(NotFound),
        None,
    ));
    (relay, addr)
}

/// The next Arthas frame: its type and its raw `data`.
async fn next_message(c: &mut RawClient) -> (u8, Vec<u8>) {
    let (_, payload) = c.expect_message().await;
    let (ty, data) = protocol::server::decode(&payload).expect("an Arthas frame");
    (ty, data.to_vec())
}

async fn expect(c: &mut RawClient, ty: u8) -> Vec<u8> {
    let (got, data) = next_message(c).await;
    assert_eq!(got, ty, "expected type {ty:#x}, got {got:#x}");
    data
}

async fn is_member(redis: &RedisServer, room: &str, member: &str) -> bool {
    let key = format!("arthas:{{{room}}}:members");
    let v = redis
        .command(&["HEXISTS", &key, member])
        .await
        .expect("HEXISTS");
    matches!(v, redis::Value::Int(1))
}

#[tokio::test]
async fn a_panicking_connection_gives_back_its_slot_room_presence_and_transfer() {
    let redis = RedisServer::start().await.expect("redis-server");
    let (relay, addr) = start_relay(&redis, 2).await;

    // A creates a room, B joins it.
    let mut a = RawClient::connect(addr).await.expect("a connects");
    let create = CreateRoom {
        name: "alice",
        ..CreateRoom::default()
    };
    a.send_binary(&client::encode(kind::CREATE_ROOM, &create))
        .await
        .unwrap();
    let created = expect(&mut a, kind::ROOM_CREATED).await;
    let room: RoomCreated = protocol::server::data(&created).unwrap();
    let room_id = room.room_id.to_owned();
    let joined = expect(&mut a, kind::ROOM_JOINED).await;
    let joined: RoomJoined = protocol::server::data(&joined).unwrap();
    let a_id = joined
        .members
        .last()
        .expect("the joiner is listed")
        .id
        .to_owned();

    let mut b = RawClient::connect(addr).await.expect("b connects");
    let join = JoinRoom {
        room_id: &room_id,
        name: "bob",
        ..JoinRoom::default()
    };
    b.send_binary(&client::encode(kind::JOIN_ROOM, &join))
        .await
        .unwrap();
    expect(&mut b, kind::ROOM_JOINED).await;
    expect(&mut a, kind::MEMBER_JOINED).await;

    // A starts a file transfer: it is active when A's task panics.
    let meta = FileMeta {
        transfer_id: "transfer-1",
        iv: "iv",
        ciphertext: b"meta",
    };
    a.send_binary(&client::encode(kind::SEND_FILE_META, &meta))
        .await
        .unwrap();
    expect(&mut b, kind::RELAY_FILE_META).await;
    assert!(is_member(&redis, &room_id, &a_id).await);
    assert_eq!(relay.slots.open(), 2);

    // A's next message panics its connection task.
    relay.faults.panic_on_next_message();
    let chat = Sealed {
        iv: "iv",
        ciphertext: "ct",
    };
    a.send_binary(&client::encode(kind::SEND_MESSAGE, &chat))
        .await
        .unwrap();

    // B learns the transfer is cancelled and A left.
    let cancel = expect(&mut b, kind::RELAY_FILE_CANCEL).await;
    let cancel: RelayFileRef = protocol::server::data(&cancel).unwrap();
    assert_eq!(
        (cancel.sender_id, cancel.transfer_id),
        (a_id.as_str(), "transfer-1")
    );
    let left = expect(&mut b, kind::MEMBER_LEFT).await;
    let left: MemberLeft = protocol::server::data(&left).unwrap();
    assert_eq!(left.id, a_id);
    // Redis no longer lists A; A's socket is closed; the slot is free.
    assert!(!is_member(&redis, &room_id, &a_id).await);
    assert!(a.closed_within(Duration::from_secs(10)).await);
    assert_eq!(relay.slots.open(), 1);
    assert_eq!(relay.metrics.connections.get(), 1);
    assert_eq!(relay.metrics.panics.get(), 1);
    assert!(relay
        .metrics
        .render()
        .contains("arthas_relay_panics_total 1"));

    // The freed slot takes a new connection, and the room still chats.
    let mut c = RawClient::connect(addr)
        .await
        .expect("the freed slot is usable");
    let join = JoinRoom {
        room_id: &room_id,
        name: "carol",
        ..JoinRoom::default()
    };
    c.send_binary(&client::encode(kind::JOIN_ROOM, &join))
        .await
        .unwrap();
    expect(&mut c, kind::ROOM_JOINED).await;
    expect(&mut b, kind::MEMBER_JOINED).await;
    b.send_binary(&client::encode(kind::SEND_MESSAGE, &chat))
        .await
        .unwrap();
    expect(&mut c, kind::RELAY_MESSAGE).await;
}
