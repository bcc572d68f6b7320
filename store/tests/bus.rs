//! The Redis bus against real servers: ordering, no loss after subscribe,
//! unsubscribe, and recovery from killed connections, a restarted server
//! and a migrated cluster slot. Plus: what Redis holds after a chat
//! contains no ciphertext.

mod common;

use std::time::Duration;

use arthas_store::redis::{keys, BusHealth, RedisEngine};
use arthas_store::testing::RecordingSink;
use arthas_store::{Bus, BusMessage, RoomStore, Target};
use bytes::Bytes;
use common::{member, message, new_room, relay, Backend, Fixture, Relay, WAIT};
use tokio::time::Instant;

/// One relay: an engine and the sink it delivers to.
fn frames(sink: &RecordingSink, room: &str) -> Vec<Bytes> {
    sink.messages(room).into_iter().map(|m| m.frame).collect()
}

/// Waits until the engine has completed a recovery after `before`.
async fn recovered(engine: &RedisEngine, before: u64) -> BusHealth {
    let mut health = engine.bus_health();
    let done = tokio::time::timeout(WAIT, health.wait_for(|h| h.up && h.recoveries > before))
        .await
        .map(|r| r.map(|h| h.clone()));
    match done {
        Ok(Ok(h)) => h,
        _ => panic!(
            "bus did not recover within {WAIT:?}: {:?}",
            engine.bus_health().borrow().clone()
        ),
    }
}

/// Proves every room delivers again: first a probe per room until one
/// arrives, then exactly one counted message per room, all of which must
/// arrive. Returns how long the probing took.
async fn delivery_resumes_in_every_room(
    publisher: &Relay,
    receiver: &Relay,
    rooms: &[String],
) -> Duration {
    let started = Instant::now();
    let deadline = started + WAIT;
    for room in rooms {
        loop {
            let before = receiver.sink.count(room);
            let _ = publisher.engine.publish(room, message("probe")).await;
            let arrived = receiver
                .sink
                .wait_until("probe", Duration::from_millis(100), |r| {
                    r.get(room).map_or(0, Vec::len) > before
                })
                .await;
            if arrived.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "room {room} stays silent");
        }
    }
    let probing = started.elapsed();
    for room in rooms {
        publisher
            .engine
            .publish(room, message(&format!("counted {room}")))
            .await
            .expect("publish after recovery");
    }
    let counted = |r: &std::collections::HashMap<String, Vec<BusMessage>>| {
        rooms
            .iter()
            .filter(|room| {
                r.get(*room).is_some_and(|ms| {
                    ms.iter()
                        .any(|m| m.frame == format!("counted {room}").as_bytes())
                })
            })
            .count()
    };
    receiver
        .sink
        .wait_until("one counted message in every room", WAIT, |r| {
            counted(r) == rooms.len()
        })
        .await
        .expect("every room delivers");
    probing
}

async fn every_subscriber_sees_one_order_per_room(f: Fixture) {
    let relays = vec![relay(&f).await, relay(&f).await, relay(&f).await];
    for r in &relays {
        r.engine.subscribe("room").await.expect("subscribe");
    }
    const PER_PUBLISHER: usize = 200;
    let tasks: Vec<_> = relays
        .iter()
        .enumerate()
        .map(|(p, r)| {
            let engine = r.engine.clone();
            tokio::spawn(async move {
                for i in 0..PER_PUBLISHER {
                    engine
                        .publish("room", message(&format!("{p}:{i}")))
                        .await
                        .expect("publish");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("publisher");
    }
    let total = PER_PUBLISHER * relays.len();
    for r in &relays {
        r.sink
            .wait_for("room", total, WAIT)
            .await
            .expect("all messages");
    }
    let first = frames(&relays[0].sink, "room");
    assert_eq!(first.len(), total, "no duplicates");
    for r in &relays[1..] {
        assert_eq!(frames(&r.sink, "room"), first, "one order for every relay");
    }
    // Each publisher's own messages keep their order.
    for p in 0..relays.len() {
        let mine: Vec<usize> = first
            .iter()
            .filter_map(|f| std::str::from_utf8(f).ok())
            .filter_map(|s| {
                s.strip_prefix(&format!("{p}:"))
                    .and_then(|i| i.parse().ok())
            })
            .collect();
        assert_eq!(mine, (0..PER_PUBLISHER).collect::<Vec<_>>());
    }
}

async fn a_message_published_after_subscribe_returns_is_never_lost(f: Fixture) {
    let publisher = relay(&f).await;
    let receiver = relay(&f).await;
    for i in 0..50 {
        let room = format!("room-{i}");
        receiver.engine.subscribe(&room).await.expect("subscribe");
        publisher
            .engine
            .publish(&room, message("first"))
            .await
            .expect("publish");
    }
    receiver
        .sink
        .wait_until("the first message of 50 rooms", WAIT, |r| {
            r.len() == 50 && r.values().all(|m| m.len() == 1)
        })
        .await
        .expect("none lost");
}

/// More publishes at once than the bus connection lets go unanswered
/// (`subscriber::MAX_UNANSWERED`, 1,024) or queues (`COMMAND_QUEUE`):
/// they wait their turn, every one is answered with its receivers, every
/// message arrives in each subscriber, and the connection is never given
/// up (no recovery).
async fn a_burst_of_publishes_is_answered_without_dropping_the_connection(f: Fixture) {
    const BURST: usize = 3_000;
    let publisher = relay(&f).await;
    let receiver = relay(&f).await;
    for r in [&publisher, &receiver] {
        r.engine.subscribe("burst").await.expect("subscribe");
    }
    let publishes = (0..BURST).map(|i| {
        let engine = publisher.engine.clone();
        tokio::spawn(async move { engine.publish("burst", message(&format!("{i}"))).await })
    });
    let answers = futures_util::future::join_all(publishes).await;
    for answer in answers {
        let receivers = answer.expect("task").expect("publish");
        assert_eq!(receivers, Some(2), "both relays counted");
    }
    for r in [&publisher, &receiver] {
        r.sink
            .wait_for("burst", BURST, WAIT)
            .await
            .expect("every message");
        assert_eq!(r.sink.count("burst"), BURST, "no duplicates");
    }
    for r in [&publisher, &receiver] {
        let health = r.engine.bus_health().borrow().clone();
        assert!(health.up && health.recoveries == 0, "{health:?}");
    }
}

async fn unsubscribe_stops_delivery(f: Fixture) {
    let publisher = relay(&f).await;
    let receiver = relay(&f).await;
    receiver.engine.subscribe("room").await.expect("subscribe");
    publisher
        .engine
        .publish("room", message("before"))
        .await
        .expect("publish");
    receiver
        .sink
        .wait_for("room", 1, WAIT)
        .await
        .expect("delivered");
    receiver
        .engine
        .unsubscribe("room")
        .await
        .expect("unsubscribe");
    publisher
        .engine
        .publish("room", message("while away"))
        .await
        .expect("publish");
    receiver
        .engine
        .subscribe("room")
        .await
        .expect("subscribe again");
    publisher
        .engine
        .publish("room", message("after"))
        .await
        .expect("publish");
    receiver
        .sink
        .wait_for("room", 2, WAIT)
        .await
        .expect("delivered");
    assert_eq!(
        frames(&receiver.sink, "room"),
        vec![Bytes::from("before"), Bytes::from("after")]
    );
    assert_eq!(receiver.engine.subscribed_rooms(), 1);
}

async fn delivery_resumes_in_every_room_after_the_pubsub_connection_is_killed(f: Fixture) {
    const ROOMS: usize = 100;
    let publisher = relay(&f).await;
    let receiver = relay(&f).await;
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("room-{i}")).collect();
    for room in &rooms {
        receiver.engine.subscribe(room).await.expect("subscribe");
    }
    delivery_resumes_in_every_room(&publisher, &receiver, &rooms).await;
    let before = receiver.engine.bus_health().borrow().recoveries;
    let killed_at = Instant::now();
    let killed = match &f.backend {
        Backend::Standalone(s) => s.kill_pubsub_clients().await,
        Backend::Cluster(c) => c.kill_pubsub_clients().await,
        Backend::Memory(_) | Backend::Sentinel(_) => unreachable!(),
    }
    .expect("CLIENT KILL");
    assert!(killed >= 1, "the receiver's pub/sub connection was killed");
    let health = recovered(&receiver.engine, before).await;
    let until_recovered = killed_at.elapsed();
    let probing = delivery_resumes_in_every_room(&publisher, &receiver, &rooms).await;
    eprintln!(
        "{ROOMS} rooms: {killed} connection(s) killed; engine recovery {:?} ({} rooms), \
         kill -> recovered {until_recovered:?}, then every room probed in {probing:?}",
        health.last_recovery, health.last_recovery_rooms
    );
}

async fn no_ciphertext_is_stored_after_a_chat(f: Fixture) {
    let alice = relay(&f).await;
    let bob = relay(&f).await;
    let now = arthas_store::unix_secs();
    let mut room = new_room(
        "secret-room",
        10,
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
    );
    room.record.listed = true;
    alice.engine.create_room(room).await.expect("create");
    alice
        .engine
        .list_room(
            arthas_store::Listing {
                room_id: "secret-room".into(),
                title: "a listed room".into(),
                description: String::new(),
                tags: vec![],
                share_code: String::new(),
                has_password: true,
                created_at: now,
                expires_at: 0,
                is_daily_topic: false,
            },
            10,
        )
        .await
        .expect("list");
    alice
        .engine
        .heartbeat("relay-a", Duration::from_secs(30), 0)
        .await
        .expect("heartbeat");
    bob.engine
        .heartbeat("relay-b", Duration::from_secs(30), 0)
        .await
        .expect("heartbeat");
    alice
        .engine
        .join("secret-room", member(1, "relay-a"), true, now)
        .await
        .expect("join");
    bob.engine
        .join("secret-room", member(2, "relay-b"), true, now)
        .await
        .expect("join");
    alice
        .engine
        .subscribe("secret-room")
        .await
        .expect("subscribe");
    bob.engine
        .subscribe("secret-room")
        .await
        .expect("subscribe");

    // A ciphertext that could not occur by chance, as the relay would carry
    // it: inside an encoded frame.
    let marker: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let marker_hex: String = marker.iter().map(|b| format!("{b:02x}")).collect();
    for i in 0..10 {
        let mut frame = b"\x82\xa4type\xa7message\xa4data".to_vec();
        frame.extend_from_slice(&marker);
        frame.extend_from_slice(marker_hex.as_bytes());
        frame.push(i);
        alice
            .engine
            .publish(
                "secret-room",
                BusMessage {
                    target: Target::Room { except: None },
                    frame: Bytes::from(frame),
                },
            )
            .await
            .expect("publish");
        alice
            .engine
            .count_activity("secret-room", arthas_store::unix_millis())
            .await
            .expect("activity");
        alice
            .engine
            .hit("msg:00000001", 1, Duration::from_secs(10))
            .await
            .expect("hit");
    }
    alice
        .engine
        .claim_once("ticket-id", Duration::from_secs(30))
        .await
        .expect("claim");
    bob.sink
        .wait_for("secret-room", 10, WAIT)
        .await
        .expect("the chat went through");

    let dump = match &f.backend {
        Backend::Standalone(s) => s.dump().await,
        Backend::Cluster(c) => c.dump().await,
        Backend::Memory(_) | Backend::Sentinel(_) => unreachable!(),
    }
    .expect("dump");
    let everything: Vec<u8> = dump
        .iter()
        .flat_map(|(k, v)| k.bytes().chain(v.iter().copied()))
        .collect();
    let contains = |needle: &[u8]| everything.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"member 1"), "the dump holds the room's records");
    assert!(dump.iter().any(|(k, _)| k == &keys::members("secret-room")));
    assert!(!contains(&marker), "raw ciphertext stored in redis");
    assert!(
        !contains(marker_hex.as_bytes()),
        "encoded ciphertext stored in redis"
    );
    assert!(
        !contains(&marker[..8]),
        "a ciphertext fragment stored in redis"
    );
}

arthas_store::on_engines!(
    [standalone, cluster] => [
        every_subscriber_sees_one_order_per_room,
        a_message_published_after_subscribe_returns_is_never_lost,
        a_burst_of_publishes_is_answered_without_dropping_the_connection,
        unsubscribe_stops_delivery,
        delivery_resumes_in_every_room_after_the_pubsub_connection_is_killed,
        no_ciphertext_is_stored_after_a_chat,
    ]
);

/// A Redis Cluster of one master lists itself in `CLUSTER SLOTS` with an
/// empty host (it never met another node): the bus takes the seed URL's
/// host for it, and two relays chat through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_one_master_carries_the_bus() {
    let cluster = arthas_store::testing::RedisCluster::start_one_master()
        .await
        .expect("a cluster of one master");
    let connect = || async {
        let engine = RedisEngine::connect(
            arthas_store::redis::RedisMode::Cluster {
                nodes: cluster.urls(),
            },
            common::test_config(),
        )
        .await
        .expect("engine connects");
        let sink = RecordingSink::new();
        engine.attach(sink.clone());
        Relay { engine, sink }
    };
    let (a, b) = (connect().await, connect().await);
    for r in [&a, &b] {
        r.engine.subscribe("lone").await.expect("subscribe");
    }
    let receivers = a
        .engine
        .publish("lone", message("hello"))
        .await
        .expect("publish");
    assert_eq!(receivers, Some(2));
    for r in [&a, &b] {
        r.sink.wait_for("lone", 1, WAIT).await.expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_ignored_and_counted() {
    let f = Fixture::standalone().await;
    let receiver = relay(&f).await;
    receiver.engine.subscribe("room").await.expect("subscribe");
    let Backend::Standalone(server) = &f.backend else {
        unreachable!()
    };
    let channel = keys::channel("room");
    server
        .command(&["PUBLISH", &channel, "\u{9}not ours"])
        .await
        .expect("PUBLISH");
    server
        .command(&["PUBLISH", &channel, ""])
        .await
        .expect("PUBLISH");
    receiver
        .engine
        .publish("room", message("valid"))
        .await
        .expect("publish");
    receiver
        .sink
        .wait_for("room", 1, WAIT)
        .await
        .expect("the valid one");
    assert_eq!(frames(&receiver.sink, "room"), vec![Bytes::from("valid")]);
    assert_eq!(receiver.engine.malformed_messages(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_fail_fast_while_redis_is_down_and_delivery_resumes_after_a_restart() {
    let mut f = Fixture::standalone().await;
    let publisher = relay(&f).await;
    let receiver = relay(&f).await;
    let rooms: Vec<String> = (0..50).map(|i| format!("room-{i}")).collect();
    for room in &rooms {
        receiver.engine.subscribe(room).await.expect("subscribe");
    }
    let before = receiver.engine.bus_health().borrow().recoveries;
    let Backend::Standalone(server) = &mut f.backend else {
        unreachable!()
    };
    server.stop();
    let mut health = publisher.engine.bus_health();
    tokio::time::timeout(WAIT, health.wait_for(|h| !h.up))
        .await
        .expect("the publisher notices")
        .expect("health");
    let t = Instant::now();
    let refused = publisher.engine.publish("room-0", message("lost")).await;
    assert!(refused.is_err(), "publish while down must fail");
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "and fail fast: {:?}",
        t.elapsed()
    );
    assert!(receiver.engine.subscribe("new-room").await.is_err());

    let restarted_at = Instant::now();
    server.restart().await.expect("restart on the same port");
    let health = recovered(&receiver.engine, before).await;
    recovered(&publisher.engine, 0).await;
    let until_recovered = restarted_at.elapsed();
    let probing = delivery_resumes_in_every_room(&publisher, &receiver, &rooms).await;
    eprintln!(
        "restart: engine recovery {:?} ({} rooms), restart -> recovered {until_recovered:?}, probing {probing:?}",
        health.last_recovery, health.last_recovery_rooms
    );
    assert!(
        frames(&receiver.sink, "room-0")
            .iter()
            .all(|f| f.as_ref() != b"lost"),
        "nothing queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_after_the_channels_slot_migrates() {
    let f = Fixture::cluster().await;
    let publisher = relay(&f).await;
    let receiver = relay(&f).await;
    let mut rooms: Vec<String> = (0..20).map(|i| format!("room-{i}")).collect();
    rooms.push("migrating".into());
    for room in &rooms {
        receiver.engine.subscribe(room).await.expect("subscribe");
    }
    delivery_resumes_in_every_room(&publisher, &receiver, &rooms).await;
    let before = receiver.engine.bus_health().borrow().recoveries;
    let Backend::Cluster(cluster) = &f.backend else {
        unreachable!()
    };
    let moved_at = Instant::now();
    let (from, to) = cluster
        .migrate_slot_of(&keys::channel("migrating"))
        .await
        .expect("slot migration");
    let health = recovered(&receiver.engine, before).await;
    let probing = delivery_resumes_in_every_room(&publisher, &receiver, &rooms).await;
    eprintln!(
        "slot of 'migrating' moved {from} -> {to}; recovery {:?} ({} rooms), move -> all rooms probed {:?} (probing {probing:?})",
        health.last_recovery,
        health.last_recovery_rooms,
        moved_at.elapsed()
    );
}

/// A room joined right after its slot moved (the relay's slot map may still
/// name the old master: its SSUBSCRIBE is answered MOVED and retried on the
/// new one) is subscribed on the new master when `subscribe` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_subscribed_right_after_its_slot_migrated_delivers() {
    let f = Fixture::cluster().await;
    let publisher = relay(&f).await;
    let receiver = relay(&f).await;
    receiver.engine.subscribe("other").await.expect("subscribe");
    let Backend::Cluster(cluster) = &f.backend else {
        unreachable!()
    };
    cluster
        .migrate_slot_of(&keys::channel("late"))
        .await
        .expect("slot migration");
    receiver
        .engine
        .subscribe("late")
        .await
        .expect("subscribe after the migration");
    let receivers = publisher
        .engine
        .publish("late", message("after the move"))
        .await
        .expect("publish");
    assert_eq!(receivers, Some(1), "the receiver's subscription counted");
    receiver
        .sink
        .wait_for("late", 1, WAIT)
        .await
        .expect("delivered");
    assert_eq!(
        frames(&receiver.sink, "late"),
        vec![Bytes::from("after the move")]
    );
}

/// A TCP proxy in front of a real Redis that, when told, sends bytes that
/// are not RESP3 to every client connection that has subscribed (the bus's
/// subscriber connection), as a broken or hostile server would.
async fn garbling_proxy(upstream: String) -> (String, tokio::sync::watch::Sender<u32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    let (garble, garbled) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let mut garbled = garbled.clone();
            garbled.mark_unchanged();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let subscribed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let seen = subscribed.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        if buf[..n].windows(9).any(|w| w == b"SUBSCRIBE") {
                            seen.store(true, std::sync::atomic::Ordering::Release);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    tokio::select! {
                        read = sr.read(&mut buf) => match read {
                            Ok(n @ 1..) => {
                                if cw.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                            _ => return,
                        },
                        changed = garbled.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            if subscribed.load(std::sync::atomic::Ordering::Acquire) {
                                let _ = cw.write_all(b"$-1\r\n").await;
                            }
                        }
                    }
                }
            });
        }
    });
    (format!("redis://{addr}"), garble)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_from_redis_drops_the_subscriber_connection_and_the_bus_recovers() {
    let f = Fixture::standalone().await;
    let Backend::Standalone(server) = &f.backend else {
        unreachable!()
    };
    let (url, garble) = garbling_proxy(server.addr()).await;
    let engine = RedisEngine::connect(
        arthas_store::redis::RedisMode::Standalone { url },
        common::test_config(),
    )
    .await
    .expect("connect through the proxy");
    let sink = arthas_store::testing::RecordingSink::new();
    engine.attach(sink.clone());
    let receiver = Relay { engine, sink };
    let publisher = relay(&f).await;
    let rooms: Vec<String> = (0..5).map(|i| format!("room-{i}")).collect();
    for room in &rooms {
        receiver.engine.subscribe(room).await.expect("subscribe");
    }
    let before = receiver.engine.bus_health().borrow().recoveries;
    garble.send_modify(|n| *n += 1);
    let health = recovered(&receiver.engine, before).await;
    assert_eq!(health.last_recovery_rooms, rooms.len());
    delivery_resumes_in_every_room(&publisher, &receiver, &rooms).await;
}
