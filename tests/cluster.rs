//! Cluster behaviour: real `redis-server` processes (standalone, or a 3-master Redis Cluster),
//! one `gateway` and three `relay` processes on loopback, real WebSockets. One behaviour per
//! test; each runs on both Redis modes where the mode matters (`<name>::redis` and
//! `<name>::redis_cluster`). ARCHITECTURE.md "Invariants" and "Failure behaviour" are the
//! specification.
//!
//! Faults are real: SIGKILL and SIGTERM of relays and of the gateway, `CLIENT KILL` of the
//! relays' Redis connections, migrating the slot of a room's channel, stopping and
//! restarting `redis-server` on the same port. Nothing sleeps to synchronise: every wait is
//! for an event (a frame, a status, a process exit) with a deadline that fails saying what did
//! not happen. The figures the tests measure are printed as `FIGURE ...` lines (run with
//! `-- --nocapture` to see them).
//!
//! Run: `cargo test --all-features --test cluster` (about 40 s on 2 cores).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rmpv::Value;
use support::client::Event;
use support::msg::password_hash;
use support::room::{create_room, create_room_with, expect_member_joined, join_data, join_room};
use support::{
    assert_room_chats, http, open_room, t, Client, ConnectOpts, Env, Member, Opts, Topology,
    ValueExt,
};

/// Runs `async fn $name(topology)` as `$name::redis` and `$name::redis_cluster`.
macro_rules! both_modes {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn redis() {
                super::$name(super::Topology::Redis).await;
            }
            #[tokio::test]
            async fn redis_cluster() {
                super::$name(super::Topology::RedisCluster).await;
            }
        }
    )+};
}

both_modes!(
    every_member_sees_the_same_order_across_relays,
    sigkilled_relay_is_swept_within_the_heartbeat_ttl,
    delivery_resumes_in_every_room_after_client_kill,
    redis_down_gives_error_frames_and_chat_resumes_when_it_is_back,
    password_room_works_across_relays,
    room_ip_guess_limit_counts_guesses_through_every_relay,
    ip_guess_limit_counts_each_ip_across_relays,
    sixty_concurrent_wrong_guesses_through_two_gateways_verify_at_most_the_limit,
    gateway_ticket_joins_through_a_relay_once,
    redis_holds_no_ciphertext_iv_or_password,
    gateway_down_keeps_chats_and_refuses_creation_clearly,
    drained_relay_closes_with_1001_and_exits_0,
    emptied_room_lingers_on_its_relay_then_is_let_go,
    directory_counts_are_one_figure_across_relays,
    two_gateways_started_at_once_make_one_daily_topic,
);

/// Chat rate limits out of the way, for tests that send many messages, and the per-address
/// handshake limit, for tests that open many sockets from 127.0.0.1 at once.
fn many_messages() -> Opts {
    Opts::new()
        .flag("--chat-rate-limit", 1_000_000)
        .flag("--handshakes-per-ip-per-sec", 1000)
}

/// A chat message's data.
fn chat(iv: &str, ciphertext: &str) -> Value {
    crate::map! {"iv" => iv, "ciphertext" => ciphertext}
}

/// Splits a room into its member `s` and the others.
fn split(room: &mut [Member], s: usize) -> (&mut Member, Vec<&mut Member>) {
    let (before, rest) = room.split_at_mut(s);
    let (sender, after) = rest.split_first_mut().expect("s < len");
    (sender, before.iter_mut().chain(after.iter_mut()).collect())
}

// ---------------------------------------------------------------------------------------------
// Invariant 5: the same order for everyone.

/// Three senders, one per relay, each send 150 messages at once into one room of six (two
/// members per relay). Every member receives every message of the others exactly once, and the
/// sequence of (sender, ciphertext) is the same for all: the three pure observers' sequences
/// are identical, and each sender's equals theirs without its own messages.
async fn every_member_sees_the_same_order_across_relays(topology: Topology) {
    const PER_SENDER: usize = 150;
    let env = Env::start_in(topology, many_messages()).await;
    let room = open_room::<6>(&env).await; // member i on node i: relays 0,1,2,0,1,2
    let mut members: Vec<Member> = room.into_iter().collect();
    let observers = members.split_off(3);
    let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();

    // The senders send concurrently, then read what the others sent.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut sender) in members.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for j in 0..PER_SENDER {
                let ct = format!("s{i}-{j:03}");
                sender.send(t::SEND_MESSAGE, chat("iv", &ct)).await;
                if j % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            let got = receive_chat(&mut sender, 2 * PER_SENDER).await;
            (sender, got)
        }));
    }
    for mut observer in observers {
        tasks.push(tokio::spawn(async move {
            let got = receive_chat(&mut observer, 3 * PER_SENDER).await;
            (observer, got)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("a member's task"));
    }
    println!(
        "FIGURE {} ordering: {} deliveries to 6 members over 3 relays in {:?}",
        topology.name(),
        3 * PER_SENDER * 5,
        started.elapsed()
    );
    let reference = results[3].1.clone();
    assert_eq!(reference.len(), 3 * PER_SENDER);
    // Each sender's own messages arrive in the order sent.
    for (i, id) in ids.iter().enumerate() {
        let mine: Vec<&String> = reference
            .iter()
            .filter(|(s, _)| s == id)
            .map(|(_, c)| c)
            .collect();
        let sent: Vec<String> = (0..PER_SENDER).map(|j| format!("s{i}-{j:03}")).collect();
        assert!(
            mine.iter()
                .map(|c| c.as_str())
                .eq(sent.iter().map(String::as_str)),
            "sender {i}'s messages are missing or out of order at an observer"
        );
    }
    for (k, (member, got)) in results.iter().enumerate() {
        let expected: Vec<(String, String)> = reference
            .iter()
            .filter(|(s, _)| *s != member.id)
            .cloned()
            .collect();
        if let Some(pos) = expected.iter().zip(got).position(|(a, b)| a != b) {
            panic!(
                "member {k} ({}) diverges from observer m3 at position {pos}: {:?} vs {:?}",
                member.name, got[pos], expected[pos]
            );
        }
        assert_eq!(got.len(), expected.len(), "member {k}: message count");
    }
}

/// Reads `n` RelayMessages and returns their (senderId, ciphertext).
async fn receive_chat(m: &mut Member, n: usize) -> Vec<(String, String)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let data = m.expect(t::RELAY_MESSAGE).await;
        got.push((
            data.str("senderId").to_string(),
            data.str("ciphertext").to_string(),
        ));
    }
    got
}

// ---------------------------------------------------------------------------------------------
// Failure behaviour: a relay is killed.

const HEARTBEAT_INTERVAL_MS: u64 = 200;
const HEARTBEAT_TTL_MS: u64 = 1000;

/// Relay 2 is killed with SIGKILL. Its member of a room spread over all relays is announced
/// gone (MemberLeft) to the members on relays 0 and 1 within the heartbeat TTL (plus one
/// heartbeat interval for the sweeper's tick and a little processing); a room whose only
/// members were on relay 2 is destroyed, so a later join gets E001; the survivors chat on.
async fn sigkilled_relay_is_swept_within_the_heartbeat_ttl(topology: Topology) {
    let opts = Opts::new()
        .flag("--heartbeat-interval-ms", HEARTBEAT_INTERVAL_MS)
        .flag("--heartbeat-ttl-ms", HEARTBEAT_TTL_MS);
    let mut env = Env::start_in(topology, opts).await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    // A room with both members on relay 2 (nodes 2 and 5).
    let mut x = create_room(&env, 2, "x").await;
    let (y, _) = join_room(&env, 5, &x.room_id, "y", "").await;
    expect_member_joined(&mut [&mut x], &y).await;
    let doomed = x.room_id.clone();

    let killed = Instant::now();
    env.server(2).kill();
    let bound = Duration::from_millis(HEARTBEAT_TTL_MS + HEARTBEAT_INTERVAL_MS + 800);
    for m in [&mut a, &mut b] {
        m.timeout = bound + Duration::from_secs(5);
        let left = m.expect(t::MEMBER_LEFT).await;
        assert_eq!(
            left.str("id"),
            c.id,
            "{}: MemberLeft for the wrong member",
            m.name
        );
    }
    let sweep = killed.elapsed();
    println!(
        "FIGURE {} sigkill: MemberLeft after {sweep:?} (interval {HEARTBEAT_INTERVAL_MS} ms, ttl {HEARTBEAT_TTL_MS} ms)",
        topology.name()
    );
    assert!(
        sweep <= bound,
        "MemberLeft took {sweep:?}, more than the TTL {HEARTBEAT_TTL_MS} ms + one interval (+800 ms)"
    );
    // c's socket died with its relay.
    match c.next_event(Duration::from_secs(5)).await {
        Some(Event::Gone(_)) | Some(Event::Close(..)) => {}
        other => panic!("a client of the killed relay saw {other:?}"),
    }

    // The room that lived only on relay 2 disappears (polled through the gateway's public
    // room API: 404 once it is gone), within the same bound.
    let url = format!("{}/v1/rooms/{doomed}", env.http_url(0));
    let deadline = killed + bound + Duration::from_secs(5);
    loop {
        let status = http::get(&url).await.status;
        if status == 404 {
            break;
        }
        assert_eq!(status, 200, "GET {url}");
        assert!(
            Instant::now() < deadline,
            "the room of the killed relay still exists {:?} after the kill",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "FIGURE {} sigkill: emptied room destroyed after {:?}",
        topology.name(),
        killed.elapsed()
    );
    assert!(
        killed.elapsed() <= bound,
        "room destroyed only after {:?}",
        killed.elapsed()
    );
    let mut late = Client::connect(&env.ws_url(0)).await;
    late.send(t::JOIN_ROOM, join_data(&doomed, "late", ""))
        .await;
    late.expect_error("E001", "room not found").await;
    drop(y);

    assert_room_chats(&mut [&mut a, &mut b]).await;
}

// ---------------------------------------------------------------------------------------------
// Failure behaviour: Redis connections drop, slots move.

/// Rooms for the fault tests: each has one member per relay; room k's sender is its member on
/// relay k % 3, so every relay publishes and every relay receives.
const ROOMS: usize = 24;
/// Messages per room after a fault, all of which must arrive.
const AFTER_FAULT: usize = 20;
/// How often a probe goes out while waiting for delivery to resume.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// How long delivery may take to resume after a fault.
const RESUME_WITHIN: Duration = Duration::from_secs(15);

async fn open_rooms(env: &Env, n: usize) -> Vec<[Member; 3]> {
    let mut rooms = Vec::with_capacity(n);
    for _ in 0..n {
        rooms.push(open_room::<3>(env).await);
    }
    rooms
}

/// What one room went through while delivery resumed.
struct Resumed {
    /// The room, with nothing pending.
    room: [Member; 3],
    /// From the fault until both receivers had a probe.
    first_delivery: Duration,
    /// Error frames the sender got meanwhile (its publishes that failed).
    sender_errors: usize,
}

/// In every room at once: the sender probes until a message reaches both other members
/// (messages published while a relay is resubscribing may be lost: pub/sub), then sends
/// `AFTER_FAULT` messages, every one of which must reach both, in order. Fails clearly if any
/// room stays silent for `RESUME_WITHIN` after `fault`.
async fn delivery_resumes(rooms: Vec<[Member; 3]>, fault: Instant, what: &str) -> Vec<Resumed> {
    let tasks: Vec<_> = rooms
        .into_iter()
        .enumerate()
        .map(|(k, room)| tokio::spawn(resume_room(k, room, fault, what.to_string())))
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("a room's task"));
    }
    out
}

async fn resume_room(k: usize, mut room: [Member; 3], fault: Instant, what: String) -> Resumed {
    let s = k % 3;
    let (sender, mut receivers) = split(&mut room, s);
    let mut seen = [false; 2];
    let mut sender_errors = 0;
    let first_delivery = loop {
        assert!(
            fault.elapsed() < RESUME_WITHIN,
            "room {k}: no delivery to {:?} within {RESUME_WITHIN:?} after {what}",
            receivers
                .iter()
                .zip(seen)
                .filter(|(_, s)| !s)
                .map(|(r, _)| r.name.clone())
                .collect::<Vec<_>>()
        );
        sender.send(t::SEND_MESSAGE, chat("probe", "probe")).await;
        // The sender's own frames: error frames for publishes that failed.
        while let Some(ev) = sender.next_event(Duration::from_millis(1)).await {
            match ev {
                Event::Msg(t::ERROR, data) => {
                    assert_eq!(data.str("code"), "E005", "room {k}: sender got {data}");
                    sender_errors += 1;
                }
                Event::Msg(t::PING, _) | Event::Pong | Event::Ping(_) => {}
                other => panic!("room {k}: the sender got {other:?} after {what}"),
            }
        }
        for (r, seen) in receivers.iter_mut().zip(seen.iter_mut()) {
            if *seen {
                continue;
            }
            match r.next_event(PROBE_EVERY).await {
                None => {}
                Some(Event::Msg(t::RELAY_MESSAGE, d)) if d.str("ciphertext") == "probe" => {
                    *seen = true
                }
                Some(Event::Msg(t::PING, _)) | Some(Event::Pong) | Some(Event::Ping(_)) => {}
                Some(other) => panic!("room {k}: {} got {other:?} after {what}", r.name),
            }
        }
        if seen.iter().all(|s| *s) {
            break fault.elapsed();
        }
    };
    // Replies to probes may still be on their way: flush them with a barrier.
    barrier(sender).await;
    // Then each message is followed by a barrier, so a refused publish (E005 "retry") is
    // attributed to its message, which is sent again, as a client would. What the relay
    // accepted must arrive; a loss it did not report is silent loss.
    let sent: Vec<String> = (0..AFTER_FAULT).map(|j| format!("after-{k}-{j}")).collect();
    let mut refused = vec![0usize; AFTER_FAULT];
    for (j, ct) in sent.iter().enumerate() {
        loop {
            sender.send(t::SEND_MESSAGE, chat("iv", ct)).await;
            if barrier(sender).await == 0 {
                break;
            }
            refused[j] += 1;
            assert!(
                fault.elapsed() < RESUME_WITHIN,
                "room {k}: message {j} still refused {RESUME_WITHIN:?} after {what}"
            );
        }
    }
    sender_errors += refused.iter().sum::<usize>();
    for r in receivers.iter_mut() {
        let mut got = 0;
        while got < AFTER_FAULT {
            let data = r.expect(t::RELAY_MESSAGE).await;
            let ct = data.str("ciphertext");
            // A refused publish may still have gone out (a reply lost in the fault).
            if ct == "probe" || (got > 0 && refused[got - 1] > 0 && ct == sent[got - 1]) {
                continue;
            }
            assert_eq!(
                ct, sent[got],
                "room {k}: {} lost or reordered a message after {what} (refusals per message: {refused:?})",
                r.name
            );
            got += 1;
        }
    }
    drop(receivers);
    Resumed {
        room,
        first_delivery,
        sender_errors,
    }
}

/// Sends a request with a known reply (CreateRoom with an empty name: E005 about the name) and
/// reads up to that reply; returns how many "service temporarily unavailable" refusals came
/// before it.
async fn barrier(client: &mut Member) -> usize {
    client
        .send(t::CREATE_ROOM, crate::map! {"name" => "", "password" => ""})
        .await;
    let mut refusals = 0;
    loop {
        let data = client.expect(t::ERROR).await;
        if data.str("msg") == "service temporarily unavailable, retry" {
            refusals += 1;
        } else {
            return refusals;
        }
    }
}

fn report(topology: Topology, what: &str, resumed: &[Resumed]) {
    let max = resumed
        .iter()
        .map(|r| r.first_delivery)
        .max()
        .unwrap_or_default();
    let errors: usize = resumed.iter().map(|r| r.sender_errors).sum();
    println!(
        "FIGURE {} {what}: delivery back in all {} rooms within {max:?} ({} messages each after that, all delivered; {errors} error frames to senders meanwhile)",
        topology.name(),
        resumed.len(),
        AFTER_FAULT
    );
}

/// `CLIENT KILL` of every client connection on every Redis server (the relays' command pools
/// and their pub/sub connections): every room delivers again, and after that every message.
async fn delivery_resumes_in_every_room_after_client_kill(topology: Topology) {
    let env = Env::start_in(topology, many_messages()).await;
    let rooms = open_rooms(&env, ROOMS).await;
    let redis = env.redis().expect("a cluster env has Redis");
    let fault = Instant::now();
    let killed = redis.kill_all_clients().await;
    assert!(killed >= 3, "CLIENT KILL found only {killed} connections");
    let resumed = delivery_resumes(rooms, fault, "CLIENT KILL").await;
    report(topology, "client kill", &resumed);
}

/// The slot of an active room's channel moves to another master (the server unsubscribes its
/// subscribers with SUNSUBSCRIBE): every room delivers again, the moved one included.
#[tokio::test]
async fn delivery_resumes_in_every_room_after_slot_migration() {
    let env = Env::start_in(Topology::RedisCluster, many_messages()).await;
    let rooms = open_rooms(&env, ROOMS).await;
    let cluster = env
        .redis()
        .and_then(|r| r.cluster())
        .expect("a Redis Cluster");
    let channel = format!("arthas:{{{}}}", rooms[0][0].room_id);
    let fault = Instant::now();
    let (from, to) = cluster
        .migrate_slot_of(&channel)
        .await
        .unwrap_or_else(|e| panic!("migrate the slot of {channel}: {e}"));
    println!(
        "FIGURE redis-cluster slot migration of {channel}: master {from} -> {to} in {:?}",
        fault.elapsed()
    );
    let resumed = delivery_resumes(rooms, fault, "the slot migration").await;
    report(Topology::RedisCluster, "slot migration", &resumed);
}

// ---------------------------------------------------------------------------------------------
// Failure behaviour: Redis down.

/// Every Redis server process is killed. A sender gets an error frame (not silence), no relay
/// and not the gateway exits. Redis comes back on the same port(s): chat resumes in the rooms
/// that existed before.
async fn redis_down_gives_error_frames_and_chat_resumes_when_it_is_back(topology: Topology) {
    let mut env = Env::start_in(topology, many_messages()).await;
    let rooms = open_rooms(&env, 6).await;
    let mut rooms = rooms;
    let down = Instant::now();
    for server in redis_servers_mut(&mut env) {
        server.stop();
    }
    // A message sent while Redis is down is refused with an error frame.
    let (sender, _) = split(&mut rooms[0], 0);
    sender.send(t::SEND_MESSAGE, chat("iv", "while-down")).await;
    sender.timeout = Duration::from_secs(10);
    sender
        .expect_error("E005", "service temporarily unavailable, retry")
        .await;
    println!(
        "FIGURE {} redis down: the sender's error frame after {:?}",
        topology.name(),
        down.elapsed()
    );
    // Every relay and the gateway are still running.
    for node in 0..env.node_count() {
        assert!(
            env.server(node).is_running(),
            "relay {node} exited while Redis was down"
        );
    }
    assert!(
        env.gateway().expect("a gateway").is_running(),
        "the gateway exited while Redis was down"
    );

    let back = Instant::now();
    for server in redis_servers_mut(&mut env) {
        server
            .restart()
            .await
            .unwrap_or_else(|e| panic!("restart redis-server: {e}"));
    }
    if let Some(cluster) = env.redis().and_then(|r| r.cluster()) {
        cluster
            .wait_ok()
            .await
            .unwrap_or_else(|e| panic!("the restarted cluster: {e}"));
    }
    println!(
        "FIGURE {} redis down: Redis answering again {:?} after the restart began",
        topology.name(),
        back.elapsed()
    );
    let resumed = delivery_resumes(rooms, back, "Redis came back").await;
    report(topology, "redis restart", &resumed);
    // Every member still chats with everyone in its room (the whole room, both directions).
    for r in resumed {
        let [mut a, mut b, mut c] = r.room;
        assert_room_chats(&mut [&mut a, &mut b, &mut c]).await;
    }
    for node in 0..env.node_count() {
        assert!(env.server(node).is_running(), "relay {node} exited");
    }
}

/// Every redis-server process of the env, to stop and restart them.
fn redis_servers_mut(env: &mut Env) -> Vec<&mut store::testing::RedisServer> {
    match env.redis_mut().expect("a cluster env has Redis") {
        support::server::Redis::Standalone(s) => vec![s],
        support::server::Redis::Cluster(c) => c.nodes.iter_mut().collect(),
        support::server::Redis::Sentinel(g) => g.servers.iter_mut().collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Password rooms across nodes (the gateway checks; limits live in Redis).

const RIGHT: &str = "correct horse battery staple";

async fn password_room(env: &Env, node: usize) -> Member {
    let hash = password_hash(RIGHT);
    let data = crate::map! {"name" => "owner", "password" => hash.as_str(), "ephemeral" => 0, "expiry" => 0};
    create_room_with(env, node, data).await.0
}

/// Sends JoinRoom with `password` (plain; sent as its SHA-256 hex) on a new connection to
/// `node`, with `X-Forwarded-For: ip` if given; returns the client and the reply.
async fn try_join(
    env: &Env,
    node: usize,
    room_id: &str,
    password: &str,
    ip: Option<&str>,
) -> (Client, u8, Value) {
    let opts = ConnectOpts {
        headers: ip
            .map(|ip| vec![("X-Forwarded-For".to_string(), ip.to_string())])
            .unwrap_or_default(),
        ..ConnectOpts::default()
    };
    let mut c = Client::connect_opts(&env.ws_url(node), &opts)
        .await
        .expect("connect");
    c.send(
        t::JOIN_ROOM,
        join_data(room_id, "guest", &password_hash(password)),
    )
    .await;
    let (ty, data) = c.recv().await;
    (c, ty, data)
}

fn assert_error(ty: u8, data: &Value, code: &str, msg: &str, what: &str) {
    assert_eq!(
        ty,
        t::ERROR,
        "{what}: expected {code}, got 0x{ty:02X} {data}"
    );
    assert_eq!((data.str("code"), data.str("msg")), (code, msg), "{what}");
}

/// A password room created on relay 0: the right password joins through relay 1 (the owner
/// sees MemberJoined), a wrong one through relay 2 gets E006, and the two chat across relays.
async fn password_room_works_across_relays(topology: Topology) {
    let env = Env::start_in(topology, Opts::new()).await;
    let mut owner = password_room(&env, 0).await;
    let (_wrong, ty, data) = try_join(&env, 2, &owner.room_id, "nope", None).await;
    assert_error(
        ty,
        &data,
        "E006",
        "wrong password",
        "a wrong password via relay 2",
    );
    let (guest, ty, data) = try_join(&env, 1, &owner.room_id, RIGHT, None).await;
    assert_eq!(ty, t::ROOM_JOINED, "the right password via relay 1: {data}");
    let mut guest = support::room::member_from(guest, &data);
    expect_member_joined(&mut [&mut owner], &guest).await;
    assert_room_chats(&mut [&mut owner, &mut guest]).await;
}

/// `--max-password-guesses-per-room-ip 3`: three wrong guesses from one address, one through
/// each relay, spend that address's budget on the room; then every relay refuses it even the
/// right password with E004.
async fn room_ip_guess_limit_counts_guesses_through_every_relay(topology: Topology) {
    let opts = Opts::new()
        .flag("--max-password-guesses-per-room-ip", 3)
        .flag("--max-password-guesses-per-ip", 100);
    let env = Env::start_in(topology, opts).await;
    let owner = password_room(&env, 0).await;
    for node in 0..3 {
        let (_c, ty, data) =
            try_join(&env, node, &owner.room_id, &format!("guess{node}"), None).await;
        assert_error(
            ty,
            &data,
            "E006",
            "wrong password",
            &format!("guess {node} via relay {node}"),
        );
    }
    for node in 0..3 {
        let (_c, ty, data) = try_join(&env, node, &owner.room_id, RIGHT, None).await;
        assert_error(
            ty,
            &data,
            "E004",
            "too many wrong passwords, try again later",
            &format!("the right password via relay {node} after the limit"),
        );
    }
}

/// Two gateway replicas over one Redis: 60 wrong guesses on one room from one address, fired at
/// once through all three relays (relays 0 and 2 call gateway 0, relay 1 calls gateway 1) and
/// through both gateways' ticket API. The guesses are counted in Redis before argon2 runs, so
/// across both replicas exactly the per-(room, address) limit is verified.
async fn sixty_concurrent_wrong_guesses_through_two_gateways_verify_at_most_the_limit(
    topology: Topology,
) {
    const LIMIT: usize = 7;
    let opts = Opts::new()
        .gateways(2)
        .flag("--max-password-guesses-per-room-ip", LIMIT)
        .flag("--max-password-guesses-per-ip", 1000)
        .flag("--handshakes-per-ip-per-sec", 1000);
    let env = Env::start_in(topology, opts).await;
    let owner = password_room(&env, 0).await;
    let room_id = owner.room_id.clone();
    let mut sockets = Vec::new();
    for i in 0..20 {
        sockets.push(Client::connect(&env.ws_url(i % 3)).await);
    }
    let gateways = [
        env.gateway_url(0).expect("gateway 0"),
        env.gateway_url(1).expect("gateway 1"),
    ];
    let ws = futures_util::future::join_all(sockets.iter_mut().enumerate().map(|(i, c)| {
        let data = join_data(&room_id, "guest", &password_hash(&format!("ws {i}")));
        async move {
            c.send(t::JOIN_ROOM, data).await;
            let (ty, data) = c.recv().await;
            assert_eq!(ty, t::ERROR, "{data}");
            data.str("code").to_string()
        }
    }));
    let http = futures_util::future::join_all((0..40).map(|i| {
        let url = format!("{}/v1/rooms/{room_id}/tickets", gateways[i % 2]);
        async move {
            let body = serde_json::json!({"password": password_hash(&format!("http {i}"))});
            let answer = http::post_json(&url, &body).await;
            answer.json()["code"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    }));
    let (ws, http) = tokio::join!(ws, http);
    let codes: Vec<String> = ws.into_iter().chain(http).collect();
    let verified = codes.iter().filter(|c| *c == "E006").count();
    let refused = codes.iter().filter(|c| *c == "E004").count();
    println!(
        "FIGURE {} 60 concurrent wrong guesses via 3 relays and 2 gateways: {verified} verified, {refused} refused",
        topology.name()
    );
    assert_eq!((verified, refused), (LIMIT, 60 - LIMIT), "{codes:?}");
}

/// `--max-password-guesses-per-ip 2` behind a trusted proxy: one IP's wrong guesses through
/// relays 0 and 1 lock that IP on relay 2 as well (even the right password gets E004), while
/// another IP still gets E006 for a wrong guess and joins with the right password.
async fn ip_guess_limit_counts_each_ip_across_relays(topology: Topology) {
    let opts = Opts::new()
        .flag("--max-password-guesses-per-room-ip", 100)
        .flag("--max-password-guesses-per-ip", 2)
        .flag("--trusted-proxies", "127.0.0.1");
    let env = Env::start_in(topology, opts).await;
    let owner = password_room(&env, 0).await;
    let guesser = Some("203.0.113.7");
    let other = Some("198.51.100.9");
    for node in 0..2 {
        let (_c, ty, data) = try_join(&env, node, &owner.room_id, "wrong", guesser).await;
        assert_error(
            ty,
            &data,
            "E006",
            "wrong password",
            &format!("guess via relay {node}"),
        );
    }
    let (_c, ty, data) = try_join(&env, 2, &owner.room_id, RIGHT, guesser).await;
    assert_error(
        ty,
        &data,
        "E004",
        "too many wrong passwords, try again later",
        "the locked IP via relay 2",
    );
    let (_c, ty, data) = try_join(&env, 2, &owner.room_id, "wrong", other).await;
    assert_error(
        ty,
        &data,
        "E006",
        "wrong password",
        "another IP via relay 2",
    );
    let (_c, ty, data) = try_join(&env, 0, &owner.room_id, RIGHT, other).await;
    assert_eq!(
        ty,
        t::ROOM_JOINED,
        "another IP with the right password: {data}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tickets from the gateway's HTTP API.

/// `POST /v1/rooms` (with a password) and `POST /v1/rooms/{id}/tickets` on the gateway; the
/// ticket joins through relay 1 without the password, exactly once: replaying it through relay
/// 1 or relay 2 gets E006 "invalid ticket".
async fn gateway_ticket_joins_through_a_relay_once(topology: Topology) {
    let env = Env::start_in(topology, Opts::new()).await;
    let base = env.http_url(0);
    let hash = password_hash(RIGHT);
    let created = http::post_json(
        &format!("{base}/v1/rooms"),
        &serde_json::json!({"password": hash}),
    )
    .await;
    assert_eq!(created.status, 201, "POST /v1/rooms: {}", created.text());
    let room_id = created.json()["roomId"]
        .as_str()
        .expect("roomId")
        .to_string();
    let wrong = http::post_json(
        &format!("{base}/v1/rooms/{room_id}/tickets"),
        &serde_json::json!({"password": password_hash("nope")}),
    )
    .await;
    assert_eq!(
        wrong.status,
        403,
        "a ticket for a wrong password: {}",
        wrong.text()
    );
    let issued = http::post_json(
        &format!("{base}/v1/rooms/{room_id}/tickets"),
        &serde_json::json!({"password": hash}),
    )
    .await;
    assert_eq!(issued.status, 201, "POST tickets: {}", issued.text());
    let ticket = issued.json()["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();

    let join = |name: &str| crate::map! {"roomId" => room_id.as_str(), "name" => name, "ticket" => ticket.as_str()};
    let mut a = Client::connect(&env.ws_url(1)).await;
    a.send(t::JOIN_ROOM, join("alice")).await;
    let joined = a.expect(t::ROOM_JOINED).await;
    assert_eq!(joined.str("roomId"), room_id);
    let mut a = support::room::member_from(a, &joined);
    for node in [1, 2] {
        let mut replay = Client::connect(&env.ws_url(node)).await;
        replay.send(t::JOIN_ROOM, join("mallory")).await;
        replay.expect_error("E006", "invalid ticket").await;
    }
    // The ticket's member is a normal member: a password join through relay 2 chats with it.
    let (mut b, _) = join_room(&env, 2, &room_id, "bob", &hash).await;
    expect_member_joined(&mut [&mut a], &b).await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

// ---------------------------------------------------------------------------------------------
// Invariant 1: no plaintext, no ciphertext at rest.

/// A chat across relays (messages, reactions, typing, a file transfer, a password room, a
/// public room with recent activity), then, with everyone still in their rooms: every key that
/// `redis-cli --scan` lists on every server, with every value, holds none of the ciphertexts,
/// IVs, password strings or password hashes that were used (raw, hex or base64).
async fn redis_holds_no_ciphertext_iv_or_password(topology: Topology) {
    let env = Env::start_in(
        topology,
        Opts::new().flag("--hub-requests-per-minute", 10_000),
    )
    .await;
    let plain = "Tr0ub4dor&3-secret-horse";
    let hash = password_hash(plain);
    let data = crate::map! {"name" => "m0", "password" => hash.as_str(), "ephemeral" => 0, "expiry" => 3600};
    let [mut a, mut b, mut c] = support::open_room_with::<3>(&env, data, &hash).await;
    let wrong = password_hash("wrong-secret-guess");
    let (_w, ty, _) = try_join(&env, 1, &a.room_id, "wrong-secret-guess", None).await;
    assert_eq!(ty, t::ERROR);

    let mut secrets: Vec<(&str, Vec<u8>)> = vec![
        ("plain password", plain.into()),
        ("password hash", hash.clone().into()),
        ("wrong guess hash", wrong.into()),
    ];
    for i in 0..3 {
        let iv = format!("SECRETmsgIV{i}qq");
        let ct = format!("SECRETmsgCIPHERTEXT{i}qq");
        let (sender, mut others) = split_three(&mut a, &mut b, &mut c, i);
        sender.send(t::SEND_MESSAGE, chat(&iv, &ct)).await;
        for o in others.iter_mut() {
            assert_eq!(o.expect(t::RELAY_MESSAGE).await.str("ciphertext"), ct);
        }
        secrets.push(("chat iv", iv.into_bytes()));
        secrets.push(("chat ciphertext", ct.into_bytes()));
    }
    let (re_iv, re_ct) = ("SECRETreactIVqq", "SECRETreactCTqq");
    b.send(t::SEND_REACTION, chat(re_iv, re_ct)).await;
    a.expect(t::RELAY_REACTION).await;
    c.expect(t::RELAY_REACTION).await;
    let (ty_iv, ty_ct) = ("SECRETtypingIVqq", "SECRETtypingCTqq");
    c.send(t::TYPING, chat(ty_iv, ty_ct)).await;
    a.expect(t::MEMBER_TYPING).await;
    b.expect(t::MEMBER_TYPING).await;
    let meta_iv = "SECRETmetaIVqq";
    let meta_ct = b"SECRETmetaCTqq".to_vec();
    a.send(
        t::FILE_META,
        crate::map! {"transferId" => "tr-secret", "iv" => meta_iv, "ciphertext" => meta_ct.clone()},
    )
    .await;
    b.expect(t::RELAY_FILE_META).await;
    c.expect(t::RELAY_FILE_META).await;
    let chunk_iv = b"SECRETchunkIV".to_vec();
    let chunk_data = b"SECRETchunkDATAqq".to_vec();
    a.send(
        t::FILE_CHUNK,
        crate::map! {"transferId" => "tr-secret", "index" => 0, "iv" => chunk_iv.clone(), "data" => chunk_data.clone()},
    )
    .await;
    b.expect(t::RELAY_FILE_CHUNK).await;
    c.expect(t::RELAY_FILE_CHUNK).await;
    for (what, v) in [
        ("reaction iv", re_iv.as_bytes()),
        ("reaction ciphertext", re_ct.as_bytes()),
        ("typing iv", ty_iv.as_bytes()),
        ("typing ciphertext", ty_ct.as_bytes()),
        ("file meta iv", meta_iv.as_bytes()),
        ("file meta ciphertext", &meta_ct),
        ("file chunk iv", &chunk_iv),
        ("file chunk data", &chunk_data),
    ] {
        secrets.push((what, v.to_vec()));
    }

    // A public room with a message (the directory counts recent activity).
    let public = crate::map! {"name" => "p0", "password" => "", "ephemeral" => 0, "expiry" => 0,
    "public" => true, "title" => "Secrecy", "keyEncoded" => "a2V5"};
    let (mut p, _, _) = create_room_with(&env, 1, public).await;
    let (mut q, _) = join_room(&env, 2, &p.room_id, "q", "").await;
    expect_member_joined(&mut [&mut p], &q).await;
    let (pub_iv, pub_ct) = ("SECRETpublicIVqq", "SECRETpublicCTqq");
    p.send(t::SEND_MESSAGE, chat(pub_iv, pub_ct)).await;
    q.expect(t::RELAY_MESSAGE).await;
    secrets.push(("public room iv", pub_iv.into()));
    secrets.push(("public room ciphertext", pub_ct.into()));

    // The directory counts the public room's message once its activity is recorded: from
    // then on nothing of this chat is still on its way to Redis.
    let hub = format!("{}/api/hub", env.http_url(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let json = http::get(&hub).await.json();
        let counted = json["rooms"].as_array().is_some_and(|rooms| {
            rooms
                .iter()
                .any(|r| r["roomId"] == p.room_id.as_str() && r["messageCount5min"] == 1)
        });
        if counted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the public room's message is not counted: {json}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every key `redis-cli --scan` lists on every server, read by type on that server.
    let redis = env.redis().expect("Redis");
    let mut dump = Vec::new();
    for server in redis.servers() {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &server.port().to_string(),
                "--scan",
            ])
            .output()
            .expect("run redis-cli --scan");
        assert!(out.status.success(), "redis-cli --scan: {out:?}");
        for key in String::from_utf8_lossy(&out.stdout).lines() {
            let value = server
                .value_of(key)
                .await
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            dump.push((key.to_string(), value));
        }
    }
    assert!(
        dump.iter().any(|(k, _)| k.contains(&a.room_id)),
        "no key of the live room {} in Redis",
        a.room_id
    );
    assert!(
        dump.iter().any(|(k, _)| k.contains(&p.room_id)),
        "no key of the live public room {} in Redis",
        p.room_id
    );
    println!(
        "FIGURE {} secrecy: {} keys, {} bytes of keys and values checked",
        topology.name(),
        dump.len(),
        dump.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    );
    for (key, value) in &dump {
        let mut haystack = key.as_bytes().to_vec();
        haystack.push(b'\n');
        haystack.extend_from_slice(value);
        for (what, secret) in &secrets {
            for form in forms(secret) {
                if contains(&haystack, &form) {
                    panic!(
                        "{what} found in Redis key {key}: {:?}",
                        String::from_utf8_lossy(value)
                    );
                }
            }
        }
    }
    drop((b, c, q));
}

fn split_three<'a>(
    a: &'a mut Member,
    b: &'a mut Member,
    c: &'a mut Member,
    i: usize,
) -> (&'a mut Member, Vec<&'a mut Member>) {
    match i {
        0 => (a, vec![b, c]),
        1 => (b, vec![a, c]),
        _ => (c, vec![a, b]),
    }
}

/// A secret as raw bytes, lowercase hex, and base64 (standard and url-safe, unpadded).
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    vec![
        secret.to_vec(),
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes(),
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(secret)
            .into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(secret)
            .into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() <= haystack.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Failure behaviour: the gateway is down.

/// The gateway is killed. Existing rooms keep chatting across relays; CreateRoom and joining a
/// password room get a clear error frame (E005 "service temporarily unavailable, retry")
/// instead of silence.
async fn gateway_down_keeps_chats_and_refuses_creation_clearly(topology: Topology) {
    let mut env = Env::start_in(topology, Opts::new()).await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    let locked = password_room(&env, 2).await;
    env.gateway().expect("a gateway").kill();

    assert_room_chats(&mut [&mut a, &mut b, &mut c]).await;
    let mut creator = Client::connect(&env.ws_url(1)).await;
    creator
        .send(t::CREATE_ROOM, support::room::create_data("new"))
        .await;
    creator.timeout = Duration::from_secs(10);
    creator
        .expect_error("E005", "service temporarily unavailable, retry")
        .await;
    let (_c, ty, data) = try_join(&env, 0, &locked.room_id, RIGHT, None).await;
    assert_error(
        ty,
        &data,
        "E005",
        "service temporarily unavailable, retry",
        "joining a password room without the gateway",
    );
    // The refusals did not disturb the room.
    assert_room_chats(&mut [&mut a, &mut b, &mut c]).await;
}

// ---------------------------------------------------------------------------------------------
// Failure behaviour: a relay is drained.

const DRAIN_WINDOW_MS: u64 = 1500;

/// SIGTERM to relay 0 (drain window 1.5 s): its `/readyz` turns 503 at once, each of its
/// clients (members of several rooms, and an idle one) gets close 1001 within the drain window,
/// the process exits 0, and the members on relays 1 and 2 see MemberLeft and keep chatting.
async fn drained_relay_closes_with_1001_and_exits_0(topology: Topology) {
    let mut env = Env::start_in(
        topology,
        Opts::new().flag("--drain-window-ms", DRAIN_WINDOW_MS),
    )
    .await;
    let [a, mut b, mut c] = open_room::<3>(&env).await;
    // More sockets on relay 0 (nodes 3, 6): a second room's members and an idle client.
    let x = create_room(&env, 3, "x").await;
    let (y, _) = join_room(&env, 6, &x.room_id, "y", "").await;
    let idle = Client::connect(&env.ws_url(3)).await;
    let admin = env.admin_url(0).expect("relays have an admin port");
    assert_eq!(http::get(&format!("{admin}/readyz")).await.status, 200);

    let drained = Instant::now();
    env.server(0).signal("TERM");
    let closes: Vec<_> = [a.client, x.client, y.client, idle]
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                client
                    .expect_close_within(1001, Duration::from_millis(DRAIN_WINDOW_MS + 2000))
                    .await;
                drained.elapsed()
            })
        })
        .collect();
    // Readiness is off while the drain is under way.
    loop {
        let status = http::get(&format!("{admin}/readyz")).await.status;
        if status == 503 {
            break;
        }
        assert_eq!(status, 200, "/readyz during the drain");
        assert!(
            drained.elapsed() < Duration::from_millis(DRAIN_WINDOW_MS),
            "/readyz still 200 {:?} after SIGTERM",
            drained.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready_off = drained.elapsed();
    let mut last = Duration::ZERO;
    for close in closes {
        last = last.max(close.await.expect("a client saw close 1001"));
    }
    let status = env.server(0).wait_exit(Duration::from_secs(20)).await;
    println!(
        "FIGURE {} drain: /readyz 503 after {ready_off:?}, last 1001 after {last:?} (window {DRAIN_WINDOW_MS} ms), exit after {:?}",
        topology.name(),
        drained.elapsed()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
    assert!(
        last <= Duration::from_millis(DRAIN_WINDOW_MS + 500),
        "the last 1001 came {last:?} after SIGTERM; the drain window is {DRAIN_WINDOW_MS} ms"
    );
    for m in [&mut b, &mut c] {
        assert_eq!(m.expect(t::MEMBER_LEFT).await.str("id"), a.id, "{}", m.name);
    }
    assert_room_chats(&mut [&mut b, &mut c]).await;
    // New connections go to the remaining relays and work.
    let mut fresh = Client::connect(&env.ws_url(1)).await;
    fresh.sync().await;
}

// ---------------------------------------------------------------------------------------------
// Room linger: a relay keeps an emptied room (bus subscription, node room set) for
// `--room-linger-ms`, then lets it go.

/// The relay's `arthas_relay_local_rooms` gauge.
async fn local_rooms(env: &Env, node: usize) -> i64 {
    let url = format!("{}/metrics", env.admin_url(node).expect("a cluster relay"));
    let body = http::get(&url).await.text();
    body.lines()
        .find_map(|l| l.strip_prefix("arthas_relay_local_rooms "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no arthas_relay_local_rooms in {url}"))
}

/// Whether relay `node`'s room set in Redis (`arthas:node:{relayN-…}:rooms`) holds `room_id`.
async fn node_room_set_holds(env: &Env, node: usize, room_id: &str) -> bool {
    let redis = env.redis().expect("Redis");
    for server in redis.servers() {
        let pattern = format!("arthas:node:{{relay{node}-*}}:rooms");
        let keys = match server.command(&["KEYS", &pattern]).await {
            Ok(redis::Value::Array(keys)) => keys,
            other => panic!("KEYS {pattern}: {other:?}"),
        };
        for key in keys {
            let redis::Value::BulkString(key) = key else {
                continue;
            };
            let key = String::from_utf8_lossy(&key).to_string();
            let member = server.command(&["SISMEMBER", &key, room_id]).await;
            if matches!(member, Ok(redis::Value::Int(1))) {
                return true;
            }
        }
    }
    false
}

/// The only member on relay 1 leaves: relay 1 still holds the room (subscribed, in its node
/// room set), so when the member comes back the chat works at once; after the second leave,
/// once the linger is over, relay 1 lets the room go (gauge 0, out of its room set).
async fn emptied_room_lingers_on_its_relay_then_is_let_go(topology: Topology) {
    const LINGER_MS: u64 = 4_000;
    let env = Env::start_in(
        topology,
        Opts::new()
            .flag("--room-linger-ms", LINGER_MS)
            .flag("--heartbeat-interval-ms", 200),
    )
    .await;
    let [mut a, mut b] = open_room::<2>(&env).await; // a on relay 0, b on relay 1
    let room_id = a.room_id.clone();
    assert_eq!(local_rooms(&env, 1).await, 1);

    b.send(t::LEAVE_ROOM, crate::map! {}).await;
    assert_eq!(a.expect(t::MEMBER_LEFT).await.str("id"), b.id);
    // Within the linger (its start is before MemberLeft was published).
    assert_eq!(
        local_rooms(&env, 1).await,
        1,
        "relay 1 let the room go at once"
    );
    assert!(
        node_room_set_holds(&env, 1, &room_id).await,
        "relay 1's room set lost the room at once"
    );

    b.client
        .send(t::JOIN_ROOM, support::room::join_data(&room_id, "back", ""))
        .await;
    let joined = b.client.expect(t::ROOM_JOINED).await;
    let mut b = support::room::member_from(b.client, &joined);
    expect_member_joined(&mut [&mut a], &b).await;
    assert_room_chats(&mut [&mut a, &mut b]).await;

    b.send(t::LEAVE_ROOM, crate::map! {}).await;
    assert_eq!(a.expect(t::MEMBER_LEFT).await.str("id"), b.id);
    let deadline = Instant::now() + Duration::from_millis(LINGER_MS) + Duration::from_secs(15);
    loop {
        let gone = local_rooms(&env, 1).await == 0 && !node_room_set_holds(&env, 1, &room_id).await;
        if gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "relay 1 still holds the room long after the linger"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Relay 0 kept its member's room all along.
    assert_eq!(local_rooms(&env, 0).await, 1);
    assert!(node_room_set_holds(&env, 0, &room_id).await);
}

// ---------------------------------------------------------------------------------------------
// The public directory across relays and gateway replicas.

/// Polls `GET {base}/api/hub{query}` until `done` holds for the JSON, failing with `what`.
async fn hub_until(
    base: &str,
    query: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let url = format!("{base}/api/hub{query}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = http::get(&url).await;
        assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
        let json = resp.json();
        if done(&json) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 20 s; last {json}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A public room whose three members sit on three relays, each sending two messages: the
/// directory shows one figure for members (3), activity (6) and people online (3), and /v1/rooms
/// agrees; after one leaves, 2 members everywhere.
async fn directory_counts_are_one_figure_across_relays(topology: Topology) {
    let env = Env::start_in(
        topology,
        Opts::new()
            .flag("--hub-requests-per-minute", 1_000_000)
            .flag("--heartbeat-interval-ms", 200),
    )
    .await;
    let public = crate::map! {"name" => "m0", "password" => "", "ephemeral" => 0, "expiry" => 0,
    "public" => true, "title" => "Three relays", "description" => "one count",
    "tags" => support::msg::str_array(&["cluster-count"]), "keyEncoded" => "a2V5"};
    let mut room: Vec<Member> = support::open_room_with::<3>(&env, public, "")
        .await
        .into_iter()
        .collect(); // member i on relay i
    let room_id = room[0].room_id.clone();
    for s in 0..3 {
        for _ in 0..2 {
            let (sender, mut others) = split(&mut room, s);
            support::say(sender, &mut others).await;
        }
    }
    let base = env.http_url(0);
    let figures = |j: &serde_json::Value| {
        let r = &j["rooms"][0];
        (
            r["memberCount"].as_u64(),
            r["messageCount5min"].as_u64(),
            j["totalOnline"].as_u64(),
        )
    };
    let json = hub_until(
        &base,
        "?tag=cluster-count",
        "3 members, 6 messages, 3 online",
        |j| figures(j) == (Some(3), Some(6), Some(3)),
    )
    .await;
    assert_eq!(json["total"], 1, "{json}");
    assert_eq!(json["rooms"][0]["roomId"], room_id.as_str());
    let info = http::get(&format!("{base}/v1/rooms/{room_id}"))
        .await
        .json();
    assert_eq!(info["memberCount"], 3, "{info}");

    let mut leaver = room.pop().expect("three members");
    leaver.send(t::LEAVE_ROOM, crate::map! {}).await;
    for m in room.iter_mut() {
        assert_eq!(m.expect(t::MEMBER_LEFT).await.str("id"), leaver.id);
    }
    hub_until(
        &base,
        "?tag=cluster-count",
        "2 members after a leave",
        |j| figures(j).0 == Some(2) && figures(j).1 == Some(6),
    )
    .await;
    println!(
        "FIGURE {} directory: one room on 3 relays counted as 3 members, 6 messages, 3 online",
        topology.name()
    );
}

/// Two more gateways with the daily topic on, started at the same moment over one Redis, make
/// one daily topic between them (one logs "created", the other "exists already"); every gateway
/// lists the same room: no password, `daily-topic` first, expiring at the next 00:00 UTC. It is
/// joinable through every relay and stays listed (0 members) when everyone has left.
async fn two_gateways_started_at_once_make_one_daily_topic(topology: Topology) {
    let env = Env::start_in(
        topology,
        Opts::new().flag("--hub-requests-per-minute", 1_000_000),
    )
    .await;
    let daily = Opts::new()
        .flag("--hub-requests-per-minute", 1_000_000)
        .env("ARTHAS_DISABLE_DAILY_TOPIC", "false")
        .env("ARTHAS_LOG", "warn,arthas_gateway::daily=info");
    let starting = [
        env.spawn_gateway_with(&daily),
        env.spawn_gateway_with(&daily),
    ];
    let mut gateways = Vec::new();
    for s in starting {
        gateways.push(s.ready().await.unwrap_or_else(|e| panic!("{e}")));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let outcomes = loop {
        let logs: Vec<String> = gateways.iter().map(|g| g.stderr()).collect();
        let created = logs
            .iter()
            .filter(|l| l.contains("daily topic created"))
            .count();
        let exists = logs
            .iter()
            .filter(|l| l.contains("daily topic exists already"))
            .count();
        if created + exists == 2 {
            break (created, exists);
        }
        assert!(
            Instant::now() < deadline,
            "the gateways did not both report: {logs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(outcomes, (1, 1), "one creates, the other finds it");

    let mut room_id = String::new();
    for base in [
        env.http_url(0),
        format!("http://{}", gateways[0].addr()),
        format!("http://{}", gateways[1].addr()),
    ] {
        let json = hub_until(
            &base,
            "?isDailyTopic=true",
            "the daily topic is listed",
            |j| j["total"] == 1,
        )
        .await;
        let r = &json["rooms"][0];
        if room_id.is_empty() {
            room_id = r["roomId"].as_str().expect("roomId").to_string();
        }
        assert_eq!(
            r["roomId"],
            room_id.as_str(),
            "every gateway lists the same room"
        );
        assert_eq!(r["isDailyTopic"], true);
        assert_eq!(r["hasPassword"], false);
        assert_eq!(r["memberCount"], 0);
        assert_eq!(r["tags"][0], "daily-topic");
        let created = r["createdAt"].as_i64().expect("createdAt");
        let expires = r["expiresAt"].as_i64().expect("expiresAt");
        assert_eq!(
            expires,
            (created.div_euclid(86_400) + 1) * 86_400,
            "next 00:00 UTC"
        );
        let code = r["shareCode"].as_str().expect("shareCode");
        let parts: Vec<&str> = code.split(':').collect();
        assert_eq!(parts.len(), 4, "{code}");
        assert_eq!(
            (parts[0], parts[1].len(), parts[2]),
            (room_id.as_str(), 43, "0")
        );
        assert_eq!(parts[3], expires.to_string());
    }

    // Joinable through every relay, and kept (listed, 0 members) once everyone has left.
    let mut members: Vec<Member> = Vec::new();
    for node in 0..3 {
        let (m, joined) = join_room(&env, node, &room_id, &format!("d{node}"), "").await;
        assert_eq!(joined.array("members").len(), node + 1);
        let mut refs: Vec<&mut Member> = members.iter_mut().collect();
        expect_member_joined(&mut refs, &m).await;
        members.push(m);
    }
    let mut refs: Vec<&mut Member> = members.iter_mut().collect();
    assert_room_chats(&mut refs).await;
    let base = env.http_url(0);
    hub_until(
        &base,
        "?isDailyTopic=true",
        "3 members in the daily topic",
        |j| j["rooms"][0]["memberCount"] == 3,
    )
    .await;
    for mut m in members {
        m.send(t::LEAVE_ROOM, crate::map! {}).await;
    }
    hub_until(
        &base,
        "?isDailyTopic=true",
        "the emptied daily topic stays listed",
        |j| j["total"] == 1 && j["rooms"][0]["memberCount"] == 0,
    )
    .await;
    let (again, _) = join_room(&env, 1, &room_id, "back", "").await;
    assert_eq!(again.room_id, room_id);
}
