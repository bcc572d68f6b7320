//! Resilience: self-healing after Redis lost its data, a relay cut off from Redis past the
//! heartbeat TTL (relay::heal), and admission control under a join storm (relay::join_gate);
//! ARCHITECTURE.md "Failure behaviour", OPERATIONS.md §11. Real parts: a real `redis-server`
//! (or a 3-master Redis Cluster) the test starts, one `gateway` and three `relay` processes,
//! real WebSockets; partitions and slow replies go through a TCP proxy in the test that can be
//! cut or slowed (tests/support/proxy.rs).
//!
//! Nothing sleeps to synchronise: every wait is for an event (a frame, a status) with a
//! deadline; where the outcome can only be observed by asking again (a join after the
//! restart, the directory), the test asks again until the deadline. The measured figures are
//! printed as `FIGURE ...` lines (`-- --nocapture`).
//!
//! Run: `cargo test --all-features --test resilience`.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rmpv::Value;
use support::client::Event;
use support::msg::password_hash;
use support::proxy::Proxy;
use support::room::{
    create_room_with, expect_member_joined, join_data, join_room, member_from, open_room,
};
use support::{assert_room_chats, http, t, Client, Env, Member, Opts, Topology, ValueExt};

// Multi-threaded: a proxy the test cuts or slows is a task of the test's runtime and must keep
// forwarding while the test blocks.
crate::both_modes!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    rooms_come_back_after_redis_restarts_empty,
    an_owned_room_keeps_its_owner_and_new_password_after_redis_restarts_empty,
);

/// The promise: a room with members is joinable again this soon after Redis came back empty.
const HEALED_WITHIN: Duration = Duration::from_secs(5);
const RIGHT: &str = "correct horse battery staple";

/// Joins `room_id` on `node` as `name` with `password` (plain, sent as its SHA-256 hex),
/// asking again while the answer is E001 "room not found" or E005 "retry" (the relays have not
/// restored the room yet), until `deadline`. Returns the client and its first answer that is
/// neither.
async fn join_until_restored(
    env: &Env,
    node: usize,
    room_id: &str,
    name: &str,
    password: &str,
    deadline: Instant,
) -> (Client, u8, Value) {
    let hash = if password.is_empty() {
        String::new()
    } else {
        password_hash(password)
    };
    loop {
        let mut c = Client::connect(&env.ws_url(node)).await;
        c.label = name.to_string();
        c.send(t::JOIN_ROOM, join_data(room_id, name, &hash)).await;
        let (ty, data) = c.recv().await;
        let retry = ty == t::ERROR && matches!(data.str("code"), "E001" | "E005");
        if !retry {
            return (c, ty, data);
        }
        assert!(
            Instant::now() < deadline,
            "{name}: room {room_id} still answers {data} after the deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names(joined: &Value) -> Vec<String> {
    joined
        .array("members")
        .iter()
        .map(|m| m.str("name").to_string())
        .collect()
}

/// Redis restarts empty under three rooms whose members sit on three relays: a plain room
/// (m0, m1, m2 on relays 0, 1, 2), a password room with an expiry (owner on relay 0, guest on
/// relay 1) and a listed room (on relays 2 and 0). Within 5 s of Redis answering again:
/// - a newcomer joins the plain room with the same share code through relay 1, sees m0, m1,
///   m2 and itself in join order, and every member sees its MemberJoined;
/// - the password room takes the right password (same expiry as before) and answers a wrong
///   one with E006;
/// - the directory lists the public room again, with its members counted.
///
/// The rooms chat across relays afterwards.
async fn rooms_come_back_after_redis_restarts_empty(topology: Topology) {
    let _side_by_side = HEAVY.read().await;
    // The directory is polled every 100 ms below: at the default 30 requests a
    // minute the poll is refused after three seconds and could never see the
    // room come back after that (seen once under the full suite's load).
    let mut env = Env::start_in(
        topology,
        Opts::new()
            .flag("--handshakes-per-ip-per-sec", 1000)
            .flag("--hub-requests-per-minute", 100_000),
    )
    .await;
    let [mut m0, mut m1, mut m2] = open_room::<3>(&env).await;

    let hash = password_hash(RIGHT);
    let expiry = 3600;
    let data = crate::map! {"name" => "owner", "password" => hash.as_str(), "ephemeral" => 0, "expiry" => expiry};
    let (mut owner, created, _) = create_room_with(&env, 0, data).await;
    let expires_at = created.int("expiresAt");
    let (mut guest, _) = join_room(&env, 1, &owner.room_id, "guest", &hash).await;
    expect_member_joined(&mut [&mut owner], &guest).await;

    let title = format!("healing-{}", support::room::unique("t"));
    let data = crate::map! {
        "name" => "host", "password" => "", "ephemeral" => 0, "expiry" => 0,
        "public" => true, "title" => title.as_str(), "description" => "", "tags" => support::msg::str_array(&[]),
        "keyEncoded" => "a2V5",
    };
    let (mut host, _, _) = create_room_with(&env, 2, data).await;
    let (mut visitor, _) = join_room(&env, 0, &host.room_id, "visitor", "").await;
    expect_member_joined(&mut [&mut host], &visitor).await;
    let hub = format!("{}/api/hub", env.http_url(0));
    let listed = |json: &serde_json::Value| {
        json["rooms"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["title"] == title.as_str())
            .cloned()
    };
    let before = http::get(&hub).await.json();
    let entry =
        listed(&before).unwrap_or_else(|| panic!("the public room is not listed: {before}"));
    assert_eq!(entry["memberCount"], 2, "{entry}");

    env.redis_mut()
        .expect("a cluster env has Redis")
        .restart()
        .await;
    let back = Instant::now();
    let deadline = back + HEALED_WITHIN;

    // The plain room: the newcomer's member list (RoomJoined, then a MemberJoined for each
    // member put back after it joined) is m0, m1, m2 and itself.
    let (newcomer, ty, joined) =
        join_until_restored(&env, 1, &m0.room_id, "newcomer", "", deadline).await;
    assert_eq!(ty, t::ROOM_JOINED, "the newcomer: {joined}");
    let took = back.elapsed();
    let mut newcomer = member_from(newcomer, &joined);
    let view = complete_view(&mut newcomer, &joined, &["m0", "m1", "m2", "newcomer"]).await;
    // The others see the newcomer join, and nothing else (they never lost anyone).
    expect_member_joined(&mut [&mut m0, &mut m1, &mut m2], &newcomer).await;
    for m in [&mut m0, &mut m1, &mut m2] {
        m.sync().await;
    }
    println!(
        "FIGURE {} redis restarted empty: a newcomer joined the room again {took:?} after Redis answered; its member list was whole after {view:?}",
        topology.name()
    );
    // Once healed, the store's list is whole and in join order.
    let (mut late, joined) = join_room(&env, 2, &m0.room_id, "late", "").await;
    assert_eq!(
        names(&joined),
        ["m0", "m1", "m2", "newcomer", "late"],
        "the member list after the restore: {joined}"
    );
    expect_member_joined(&mut [&mut m0, &mut m1, &mut m2, &mut newcomer], &late).await;

    // The password room: the right password joins (expiry unchanged), a wrong one is E006.
    let (wrong, ty, data) =
        join_until_restored(&env, 2, &owner.room_id, "wrong", "nope", deadline).await;
    assert_eq!(
        (ty, data.str("code"), data.str("msg")),
        (t::ERROR, "E006", "wrong password"),
        "a wrong password after the restore: {data}"
    );
    drop(wrong);
    let (right, ty, joined) =
        join_until_restored(&env, 2, &owner.room_id, "third", RIGHT, deadline).await;
    assert_eq!(
        ty,
        t::ROOM_JOINED,
        "the right password after the restore: {joined}"
    );
    assert_eq!(
        joined.int("expiresAt"),
        expires_at,
        "the expiry changed: {joined}"
    );
    assert!(joined.boolean("hasPassword"), "{joined}");
    let mut third = member_from(right, &joined);
    complete_view(&mut third, &joined, &["owner", "guest", "third"]).await;
    expect_member_joined(&mut [&mut owner, &mut guest], &third).await;

    // The listed room is in the directory again, with both members.
    loop {
        let json = http::get(&hub).await.json();
        // Listed again by the first relay to restore it; both members once both did.
        if let Some(entry) = listed(&json) {
            assert_eq!(
                entry["shareCode"],
                before_share_code(&before, &title),
                "{entry}"
            );
            if entry["memberCount"] == 2 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the public room is not listed again with both members within {HEALED_WITHIN:?}: {json}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "FIGURE {} redis restarted empty: password and listed rooms restored within {:?}",
        topology.name(),
        back.elapsed()
    );

    // Everyone chats across relays.
    assert_room_chats(&mut [&mut m0, &mut m1, &mut m2, &mut newcomer, &mut late]).await;
    assert_room_chats(&mut [&mut owner, &mut guest, &mut third]).await;
    assert_room_chats(&mut [&mut host, &mut visitor]).await;
}

/// Waits until every relay has read a room's secrets `reads` times in all
/// (`arthas_relay_room_secret_reads_total`; the env's only room).
async fn await_secret_reads(env: &Env, reads: f64) {
    let deadline = Instant::now() + HEALED_WITHIN;
    for node in 0..3 {
        loop {
            let n = metric(env, node, "arthas_relay_room_secret_reads_total").await;
            if n >= reads {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "relay {node} read the room's secrets {n} times, not {reads}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The owner extension survives Redis restarting empty: a room with an owner hash and a
/// join password has its owner on relay 0 and members on relays 1 and 2, each relay having
/// read the room's secrets once. The owner sets a new password (every relay reads the secrets
/// again). Redis restarts empty. Then the old password is refused (E006), the new one joins,
/// and the owner can still kick a member (the owner hash came back with the room).
async fn an_owned_room_keeps_its_owner_and_new_password_after_redis_restarts_empty(
    topology: Topology,
) {
    let _side_by_side = HEAVY.read().await;
    let mut env = Env::start_in(
        topology,
        Opts::new().flag("--handshakes-per-ip-per-sec", 1000),
    )
    .await;
    let owner_secret = password_hash("the owner's secret");
    const NEW: &str = "the owner's new password";
    let data = crate::map! {
        "name" => "owner", "password" => password_hash(RIGHT).as_str(), "ephemeral" => 0,
        "expiry" => 0, "ownerHash" => password_hash(&owner_secret).as_str(),
    };
    let (mut owner, _, _) = create_room_with(&env, 0, data).await;
    let room_id = owner.room_id.clone();
    let (mut b, _) = join_room(&env, 1, &room_id, "b", &password_hash(RIGHT)).await;
    expect_member_joined(&mut [&mut owner], &b).await;
    let (mut c, _) = join_room(&env, 2, &room_id, "c", &password_hash(RIGHT)).await;
    expect_member_joined(&mut [&mut owner, &mut b], &c).await;
    await_secret_reads(&env, 1.0).await;
    owner
        .send(
            t::SET_ROOM_SECRET,
            crate::map! {"owner" => owner_secret.as_str(), "password" => password_hash(NEW).as_str()},
        )
        .await;
    assert!(owner.expect(t::ROOM_SECRET_SET).await.boolean("password"));
    await_secret_reads(&env, 2.0).await;

    env.redis_mut()
        .expect("a cluster env has Redis")
        .restart()
        .await;
    let deadline = Instant::now() + HEALED_WITHIN;
    // Through each relay: the old password is refused, whichever relay restored the room.
    for node in 0..3 {
        let (old, ty, data) =
            join_until_restored(&env, node, &room_id, "old", RIGHT, deadline).await;
        assert_eq!(
            ty,
            t::ERROR,
            "the password from before the change joined through relay {node}: {data}"
        );
        assert_eq!(
            (ty, data.str("code"), data.str("msg")),
            (t::ERROR, "E006", "wrong password"),
            "the password from before the change, through relay {node}: {data}"
        );
        drop(old);
    }
    let (d, ty, joined) = join_until_restored(&env, 1, &room_id, "d", NEW, deadline).await;
    assert_eq!(
        ty,
        t::ROOM_JOINED,
        "the new password after the restore: {joined}"
    );
    let mut d = member_from(d, &joined);
    complete_view(&mut d, &joined, &["owner", "b", "c", "d"]).await;
    expect_member_joined(&mut [&mut owner, &mut b, &mut c], &d).await;

    // The owner kicks b (on another relay): the owner hash was written back.
    owner
        .send(
            t::KICK,
            crate::map! {"owner" => owner_secret.as_str(), "id" => b.id.as_str()},
        )
        .await;
    assert_eq!(b.expect(t::ROOM_CLOSED).await.str("reason"), "kicked");
    for m in [&mut owner, &mut c, &mut d] {
        let left = m.expect(t::MEMBER_LEFT).await;
        assert_eq!(left.str("id"), b.id, "{}", m.label);
    }
    assert_room_chats(&mut [&mut owner, &mut c, &mut d]).await;
}

/// Reads `member`'s MemberJoined frames after its RoomJoined (`joined`) until its member
/// list holds exactly `want` (in any order); returns how long that took. Fails on anything
/// else, or if the list is not whole within the member's timeout.
async fn complete_view(member: &mut Member, joined: &Value, want: &[&str]) -> Duration {
    let started = Instant::now();
    let mut have = names(joined);
    loop {
        let mut sorted = have.clone();
        sorted.sort();
        let mut wanted: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        wanted.sort();
        if sorted == wanted {
            return started.elapsed();
        }
        let data = member.expect(t::MEMBER_JOINED).await;
        let name = data.str("name").to_string();
        assert!(
            want.contains(&name.as_str()) && !have.contains(&name),
            "{}: MemberJoined for {name} with {have:?} known already",
            member.name
        );
        have.push(name);
    }
}

/// Redis Cluster: only the master holding a room's slot loses its data (FLUSHALL on it); the
/// relays' epoch keys may live on the other masters, so the relays need not notice by
/// themselves. A newcomer joining through a relay that hosts the room finds it anyway: that
/// relay writes the room back and asks the other hosting relays (over the room's channel) to
/// write back their members; the newcomer's list is whole within 5 s and the room chats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_that_lost_one_room_is_healed_by_a_join() {
    let _side_by_side = HEAVY.read().await;
    let env = Env::start_in(Topology::RedisCluster, Opts::new()).await;
    let [mut m0, mut m1, mut m2] = open_room::<3>(&env).await;
    let cluster = env.redis().and_then(|r| r.cluster()).expect("a cluster");
    let key = format!("arthas:{{{}}}:room", m0.room_id);
    let slot = cluster.slot_of(&key).await.expect("slot");
    let owner = cluster.owner_of_slot(slot).await.expect("owner");
    cluster.nodes[owner]
        .command(&["FLUSHALL"])
        .await
        .expect("FLUSHALL one master");
    let lost = Instant::now();
    let (newcomer, ty, joined) =
        join_until_restored(&env, 1, &m0.room_id, "newcomer", "", lost + HEALED_WITHIN).await;
    assert_eq!(ty, t::ROOM_JOINED, "{joined}");
    let mut newcomer = member_from(newcomer, &joined);
    let view = complete_view(&mut newcomer, &joined, &["m0", "m1", "m2", "newcomer"]).await;
    println!(
        "FIGURE redis-cluster one master flushed: a newcomer joined after {:?}, its member list whole {view:?} later",
        lost.elapsed() - view
    );
    expect_member_joined(&mut [&mut m0, &mut m1, &mut m2], &newcomer).await;
    assert_room_chats(&mut [&mut m0, &mut m1, &mut m2, &mut newcomer]).await;
}

fn before_share_code(before: &serde_json::Value, title: &str) -> serde_json::Value {
    before["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["title"] == title)
        .map(|r| r["shareCode"].clone())
        .unwrap_or_default()
}

/// Relay 2 reaches Redis through a proxy the test cuts for longer than the heartbeat TTL
/// (standalone Redis: a cluster announces its nodes' own addresses, which no proxy sits in).
/// Relay 0 sweeps relay 2's member and the others see MemberLeft. When the proxy is back,
/// relay 2 finds it was swept and re-joins its member properly: the others see MemberJoined
/// for it, the store lists it again (a newcomer sees it), and it chats with everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_swept_during_a_partition_re_joins_its_members() {
    let _side_by_side = HEAVY.read().await;
    let redis = support::server::Redis::start(Topology::Redis).await;
    let upstream = match &redis {
        support::server::Redis::Standalone(s) => s.addr(),
        _ => unreachable!("standalone"),
    };
    let proxy = Proxy::start(&upstream).await;
    let ttl_ms = 2_000;
    let opts = Opts::new()
        .flag("--heartbeat-interval-ms", 300)
        .flag("--heartbeat-ttl-ms", ttl_ms)
        .flag("--heal-jitter-ms", 200)
        .relay_redis_url(2, &format!("redis://{}", proxy.addr()));
    let env = Env::start_on(redis, opts).await;
    let [mut m0, mut m1, mut m2] = open_room::<3>(&env).await;

    let cut = Instant::now();
    proxy.cut();
    // The others are told m2 left (relay 0 or 1 swept relay 2).
    for m in [&mut m0, &mut m1] {
        m.timeout = Duration::from_secs(20);
        let data = m.expect(t::MEMBER_LEFT).await;
        assert_eq!(
            data.str("id"),
            m2.id,
            "{}: MemberLeft for the wrong member",
            m.name
        );
    }
    let swept = cut.elapsed();
    println!("FIGURE partition of relay 2 from Redis: its member announced gone after {swept:?} (ttl {ttl_ms} ms)");

    proxy.restore();
    let healed = Instant::now();
    // m2 is re-joined: MemberJoined for it, with its name and colour.
    for m in [&mut m0, &mut m1] {
        let data = m.expect(t::MEMBER_JOINED).await;
        assert_eq!(
            (data.str("id"), data.str("name"), data.str("color")),
            (m2.id.as_str(), m2.name.as_str(), m2.color.as_str()),
            "{}: MemberJoined after the partition",
            m.name
        );
    }
    println!(
        "FIGURE partition of relay 2 from Redis healed: its member re-joined (MemberJoined to the others) {:?} after the proxy was back",
        healed.elapsed()
    );
    // m2 itself saw nothing of it (it never left).
    m2.sync().await;
    // The store has m2 again: a newcomer sees all three.
    let (mut newcomer, joined) = join_room(&env, 0, &m0.room_id, "newcomer", "").await;
    assert_eq!(names(&joined), ["m0", "m1", "m2", "newcomer"], "{joined}");
    expect_member_joined(&mut [&mut m0, &mut m1, &mut m2], &newcomer).await;
    assert_room_chats(&mut [&mut m0, &mut m1, &mut m2, &mut newcomer]).await;
    // And when m2 leaves, the others hear it once more.
    let m2_id = m2.id.clone();
    drop(m2);
    for m in [&mut m0, &mut m1, &mut newcomer] {
        loop {
            match m.event("MemberLeft for m2").await {
                Event::Msg(ty, data) if ty == t::MEMBER_LEFT => {
                    assert_eq!(data.str("id"), m2_id, "{}: MemberLeft", m.name);
                    break;
                }
                Event::Msg(ty, _) if ty == t::PING => {}
                Event::Ping(_) | Event::Pong => {}
                other => panic!("{}: expected MemberLeft, got {other:?}", m.name),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Admission control (relay::join_gate).

/// The outcome of one storm client.
struct Admitted {
    member: Member,
    /// HTTP 503 answers to its handshakes (the relay's joins were all busy).
    refused_handshakes: usize,
    /// E005 answers to its JoinRoom (no join permit free).
    refused_joins: usize,
}

/// A client as the web client behaves in a storm: connect, JoinRoom; on HTTP 503 or E005
/// "retry", back off (10–40 ms, jittered) and try again, until `deadline`.
async fn storm_join(url: String, room_id: String, name: String, deadline: Instant) -> Admitted {
    let (mut refused_handshakes, mut refused_joins) = (0, 0);
    let backoff = || Duration::from_millis(10 + rand::random_range(0..30));
    loop {
        assert!(
            Instant::now() < deadline,
            "{name}: not admitted in time ({refused_handshakes} handshakes and {refused_joins} joins refused)"
        );
        let mut client = match Client::connect_opts(&url, &support::ConnectOpts::default()).await {
            Ok(c) => c,
            Err(support::ConnectError::Status(503)) => {
                refused_handshakes += 1;
                tokio::time::sleep(backoff()).await;
                continue;
            }
            Err(e) => panic!("{name}: connect: {e:?}"),
        };
        client.label = name.clone();
        loop {
            client
                .send(t::JOIN_ROOM, join_data(&room_id, &name, ""))
                .await;
            let (ty, data) = client.recv().await;
            if ty == t::ROOM_JOINED {
                return Admitted {
                    member: member_from(client, &data),
                    refused_handshakes,
                    refused_joins,
                };
            }
            assert_eq!(
                (ty, data.str("code"), data.str("msg")),
                (t::ERROR, "E005", "service temporarily unavailable, retry"),
                "{name}: {data}"
            );
            refused_joins += 1;
            assert!(Instant::now() < deadline, "{name}: still refused");
            tokio::time::sleep(backoff()).await;
        }
    }
}

/// The value of metric series `series` (name and labels) on relay `node`.
async fn metric(env: &Env, node: usize, series: &str) -> f64 {
    let url = format!("{}/metrics", env.admin_url(node).expect("relay admin"));
    let metrics = http::get(&url).await.text();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in {metrics}"))
}

/// The members Redis holds for a room (standalone).
async fn members_in_redis(env: &Env, room_id: &str) -> i64 {
    let Some(support::server::Redis::Standalone(server)) = env.redis() else {
        panic!("a standalone Redis");
    };
    match server
        .command(&["HLEN", &format!("arthas:{{{room_id}}}:members")])
        .await
    {
        Ok(redis::Value::Int(n)) => n,
        other => panic!("HLEN: {other:?}"),
    }
}

/// `--max-joins-in-flight 1`: 60 clients join one room through one relay at once. Joins beyond
/// the limit are refused before any work (HTTP 503 with Retry-After at the handshake, or E005
/// "retry"), every client gets in after retrying, the relay counts its refusals, and Redis holds
/// exactly the members that are connected (the owner and the 60).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_storm_beyond_the_limit_is_refused_early_and_all_get_in() {
    let _side_by_side = HEAVY.read().await;
    let env = Env::start_in(
        Topology::Redis,
        Opts::new()
            .flag("--max-joins-in-flight", 1)
            .flag("--max-room-members", 100)
            .flag("--handshakes-per-ip-per-sec", 100_000)
            .flag("--max-connections-per-ip", 1_000),
    )
    .await;
    let (mut owner, _, _) = create_room_with(&env, 0, support::room::create_data("owner")).await;
    const JOINERS: usize = 60;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let tasks: Vec<_> = (0..JOINERS)
        .map(|i| {
            tokio::spawn(storm_join(
                env.ws_url(1),
                owner.room_id.clone(),
                format!("j{i}"),
                deadline,
            ))
        })
        .collect();
    let mut admitted = Vec::new();
    for task in tasks {
        admitted.push(task.await.expect("a storm client"));
    }
    let took = started.elapsed();
    let handshakes: usize = admitted.iter().map(|a| a.refused_handshakes).sum();
    let joins: usize = admitted.iter().map(|a| a.refused_joins).sum();
    let most = admitted
        .iter()
        .map(|a| a.refused_handshakes + a.refused_joins)
        .max()
        .unwrap_or(0);
    println!(
        "FIGURE join storm: {JOINERS} joins at once through a relay with max-joins-in-flight 1 all admitted in {took:?}; {handshakes} handshakes refused (503), {joins} joins refused (E005), at most {most} refusals for one client"
    );
    assert!(
        handshakes + joins > 0,
        "60 joins at once never met the limit of 1 in flight"
    );
    assert_eq!(
        metric(&env, 1, "arthas_relay_joins_refused_total").await as usize,
        joins
    );
    assert_eq!(
        metric(
            &env,
            1,
            "arthas_relay_connections_rejected_total{reason=\"joins_busy\"}"
        )
        .await as usize,
        handshakes
    );
    assert_eq!(
        members_in_redis(&env, &owner.room_id).await,
        JOINERS as i64 + 1,
        "Redis holds exactly the connected members"
    );
    // The owner heard of each admitted member once, and of nobody else.
    let mut expected: Vec<String> = admitted.iter().map(|a| a.member.id.clone()).collect();
    let mut heard = Vec::new();
    for _ in 0..JOINERS {
        heard.push(owner.expect(t::MEMBER_JOINED).await.str("id").to_string());
    }
    owner.sync().await;
    expected.sort();
    heard.sort();
    assert_eq!(heard, expected);
}

/// Standalone Redis, relay 2 reaching it through a proxy that can hold replies back, and a
/// 300 ms command timeout (plus `opts`); a room owned by a member on relay 0. A member comes
/// and goes first, so Redis has the leave script cached: a rollback's EVALSHA is then answered
/// at once (a NOSCRIPT round trip would be delayed past the timeout too, and only the second
/// rollback, ten seconds later, would remove the phantom).
async fn relay_2_behind_a_proxy(opts: Opts) -> (Env, Proxy, Member) {
    let redis = support::server::Redis::start(Topology::Redis).await;
    let upstream = match &redis {
        support::server::Redis::Standalone(s) => s.addr(),
        _ => unreachable!("standalone"),
    };
    let proxy = Proxy::start(&upstream).await;
    let opts = opts
        .flag("--redis-command-timeout-ms", 300)
        .relay_redis_url(2, &format!("redis://{}", proxy.addr()));
    let env = Env::start_on(redis, opts).await;
    let (mut owner, _, _) = create_room_with(&env, 0, support::room::create_data("owner")).await;
    let (mut visitor, _) = join_room(&env, 1, &owner.room_id, "visitor", "").await;
    expect_member_joined(&mut [&mut owner], &visitor).await;
    visitor.send(t::LEAVE_ROOM, crate::map! {}).await;
    assert_eq!(owner.expect(t::MEMBER_LEFT).await.str("id"), visitor.id);
    drop(visitor);
    (env, proxy, owner)
}

/// Relay 2's Redis replies arrive late (a proxy holds them past `--redis-command-timeout-ms`):
/// a JoinRoom through it is written in Redis but answered E005 "retry" when the reply times
/// out. The relay rolls the join back: the phantom member leaves Redis, and the room's owner
/// never heard of it. Once replies are prompt again, the same client joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_that_times_out_after_being_written_is_rolled_back() {
    let _side_by_side = HEAVY.read().await;
    let (env, proxy, mut owner) = relay_2_behind_a_proxy(Opts::new()).await;

    proxy.delay_replies(Duration::from_millis(600));
    let mut c = Client::connect(&env.ws_url(2)).await;
    c.label = "late".into();
    c.send(t::JOIN_ROOM, join_data(&owner.room_id, "late", ""))
        .await;
    c.expect_error("E005", "service temporarily unavailable, retry")
        .await;
    // The join was written (the request went through at once) and is taken back.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = members_in_redis(&env, &owner.room_id).await;
        if n == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timed-out join still left {n} members in Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    owner.sync().await;
    // The join was written: the room's join counter counted it (owner 1, visitor 2, it 3).
    let Some(support::server::Redis::Standalone(server)) = env.redis() else {
        panic!("a standalone Redis");
    };
    let seq = server
        .command(&["HGET", &format!("arthas:{{{}}}:room", owner.room_id), "seq"])
        .await
        .expect("HGET seq");
    assert_eq!(
        seq,
        redis::Value::BulkString(b"3".to_vec()),
        "the timed-out join was not written: this test proves nothing"
    );
    proxy.delay_replies(Duration::ZERO);
    // Prompt again: the same connection joins (a new member id).
    let joined = loop {
        c.send(t::JOIN_ROOM, join_data(&owner.room_id, "late", ""))
            .await;
        let (ty, data) = c.recv().await;
        if ty == t::ROOM_JOINED {
            break data;
        }
        assert_eq!(data.str("code"), "E005", "{data}");
        assert!(Instant::now() < deadline, "never joined: {data}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(names(&joined), ["owner", "late"], "{joined}");
    let late = member_from(c, &joined);
    expect_member_joined(&mut [&mut owner], &late).await;
    assert_eq!(members_in_redis(&env, &owner.room_id).await, 2);
}

/// `--join-rollback-queue 4`: 40 joins fired at once through relay 2 whose Redis replies
/// arrive past the command timeout, so every join is written but answered E005. Each session
/// removes its phantom at once (no task per join); the second rollbacks beyond the queue's 4
/// places are dropped, counted and logged. Redis ends with the owner alone, the queue never
/// held more than its 4 (plus the one the worker holds), and the relay says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_joins_at_once_leave_no_phantom_and_a_bounded_rollback_queue() {
    let _side_by_side = HEAVY.read().await;
    let opts = Opts::new()
        .flag("--join-rollback-queue", 4)
        .flag("--max-room-members", 100)
        .flag("--handshakes-per-ip-per-sec", 100_000)
        .flag("--max-connections-per-ip", 1_000);
    let (mut env, proxy, mut owner) = relay_2_behind_a_proxy(opts).await;

    proxy.delay_replies(Duration::from_millis(600));
    const JOINERS: usize = 40;
    let mut clients = Vec::new();
    for i in 0..JOINERS {
        let mut c = Client::connect(&env.ws_url(2)).await;
        c.label = format!("failing{i}");
        clients.push(c);
    }
    // Fired at once: every JoinRoom is written before any answer comes back.
    for c in &mut clients {
        c.send(
            t::JOIN_ROOM,
            join_data(&owner.room_id, &c.label.clone(), ""),
        )
        .await;
    }
    for c in &mut clients {
        c.expect_error("E005", "service temporarily unavailable, retry")
            .await;
    }
    // Each session removed its phantom before answering: Redis holds the owner alone.
    assert_eq!(
        members_in_redis(&env, &owner.room_id).await,
        1,
        "phantom members left in Redis"
    );
    proxy.delay_replies(Duration::ZERO);
    let queued = metric(&env, 2, "arthas_relay_join_rollback_queue").await;
    let dropped = metric(
        &env,
        2,
        "arthas_relay_join_rollbacks_total{outcome=\"dropped\"}",
    )
    .await;
    let mut first = 0.0;
    for outcome in ["removed", "absent", "failed"] {
        first += metric(
            &env,
            2,
            &format!("arthas_relay_join_rollbacks_total{{outcome=\"{outcome}\"}}"),
        )
        .await;
    }
    println!(
        "FIGURE failing joins: {JOINERS} joins written and timed out at once; {first} first rollbacks by the sessions, {queued} second rollbacks queued (capacity 4), {dropped} dropped; 0 phantom members"
    );
    assert!(queued <= 4.0, "the queue holds {queued} > 4");
    assert!(first >= JOINERS as f64, "{first} first rollbacks");
    assert!(
        dropped >= (JOINERS - 5) as f64,
        "{dropped} second rollbacks dropped: the queue was not bounded at 4 (+1 in the worker)"
    );
    let stderr = env.server(2).stderr();
    assert!(
        stderr.contains("the join rollback queue is full"),
        "no log of the full queue: {stderr}"
    );
    owner.sync().await;
}

// ---------------------------------------------------------------------------------------------
// Failover under chat load (Redis Sentinel, Redis Cluster with replicas).

/// What one chatting member saw.
struct ChatLog {
    room: usize,
    member: String,
    /// (ciphertext, sent at, the sender got an error for it).
    sent: Vec<(String, Instant, bool)>,
    /// ciphertext → when it arrived.
    received: std::collections::HashMap<String, Instant>,
    /// The connection ended during the run.
    closed: bool,
}

/// A chatting member: sends a message every 20 ms until `stop`, each followed by a barrier
/// (CreateRoom with an empty name: E005 with a known text), so any other Error before the
/// barrier's reply is the message's; then reads until 3 s pass without a frame.
async fn chat(
    room: usize,
    mut m: Member,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> ChatLog {
    use std::sync::atomic::Ordering;
    let mut log = ChatLog {
        room,
        member: m.name.clone(),
        sent: Vec::new(),
        received: Default::default(),
        closed: false,
    };
    // The barrier's text, to tell its reply from a message's error.
    m.send(t::CREATE_ROOM, crate::map! {"name" => "", "password" => ""})
        .await;
    let barrier = loop {
        match m.next_event(Duration::from_secs(10)).await {
            Some(Event::Msg(ty, data)) if ty == t::ERROR => break data.str("msg").to_string(),
            // The others may have started chatting already.
            Some(Event::Msg(ty, data)) if ty == t::RELAY_MESSAGE => {
                log.received
                    .insert(data.str("ciphertext").to_string(), Instant::now());
            }
            Some(Event::Msg(..)) | Some(Event::Ping(_)) | Some(Event::Pong) => {}
            other => panic!("{}: no barrier reply: {other:?}", m.name),
        }
    };
    assert_ne!(barrier, "service temporarily unavailable, retry");
    let mut seq = 0u64;
    'run: while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let ct = format!("{}-{seq}", m.name);
        let sent_at = Instant::now();
        let data = crate::map! {"iv" => "iv", "ciphertext" => ct.as_str()};
        let barrier_frame = crate::map! {"name" => "", "password" => ""};
        if m.client.try_send(t::SEND_MESSAGE, data).await.is_err()
            || m.client
                .try_send(t::CREATE_ROOM, barrier_frame)
                .await
                .is_err()
        {
            log.closed = true;
            break;
        }
        let mut told = false;
        loop {
            match m.next_event(Duration::from_secs(20)).await {
                Some(Event::Msg(ty, data)) if ty == t::RELAY_MESSAGE => {
                    log.received
                        .insert(data.str("ciphertext").to_string(), Instant::now());
                }
                Some(Event::Msg(ty, data)) if ty == t::ERROR => {
                    if data.str("msg") == barrier {
                        break;
                    }
                    told = true;
                }
                Some(Event::Msg(..)) | Some(Event::Ping(_)) | Some(Event::Pong) => {}
                Some(Event::Close(..)) | Some(Event::Gone(_)) => {
                    log.sent.push((ct, sent_at, told));
                    log.closed = true;
                    break 'run;
                }
                None => panic!("{}: no barrier reply within 20 s", m.name),
            }
        }
        log.sent.push((ct, sent_at, told));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while !log.closed {
        match m.next_event(Duration::from_secs(3)).await {
            None => break,
            Some(Event::Msg(ty, data)) if ty == t::RELAY_MESSAGE => {
                log.received
                    .insert(data.str("ciphertext").to_string(), Instant::now());
            }
            Some(Event::Close(..)) | Some(Event::Gone(_)) => log.closed = true,
            Some(_) => {}
        }
    }
    log
}

/// Joins `room_id` through each relay in turn on a new connection every 100 ms until `stop`;
/// returns (joins that succeeded, joins answered with an error, their error texts).
async fn keep_joining(
    urls: Vec<String>,
    room_id: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize, Vec<String>) {
    let (mut ok, mut failed, mut texts) = (0, 0, Vec::new());
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        i += 1;
        let url = &urls[i % urls.len()];
        match Client::connect_opts(url, &support::ConnectOpts::default()).await {
            Ok(mut c) => {
                c.send(t::JOIN_ROOM, join_data(&room_id, &format!("joiner{i}"), ""))
                    .await;
                loop {
                    match c.next_event(Duration::from_secs(20)).await {
                        Some(Event::Msg(ty, _)) if ty == t::ROOM_JOINED => {
                            ok += 1;
                            break;
                        }
                        Some(Event::Msg(ty, data)) if ty == t::ERROR => {
                            failed += 1;
                            texts.push(data.str("msg").to_string());
                            break;
                        }
                        Some(Event::Msg(..)) | Some(Event::Ping(_)) | Some(Event::Pong) => {}
                        other => {
                            failed += 1;
                            texts.push(format!("{other:?}"));
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                texts.push(format!("connect: {e:?}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (ok, failed, texts)
}

/// The failover-under-chat tests load both cores (nine members sending 50 messages a second,
/// joins, Redis with replicas): each runs alone; the other tests of this file run side by side
/// (their timings assume a machine not saturated by another test).
static HEAVY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A Redis whose master has a replica to fail over to.
#[derive(Debug, Clone, Copy)]
enum Replicated {
    /// A master, a replica and three sentinels (the relays in `--redis-mode sentinel`).
    Sentinel,
    /// A Redis Cluster with a replica per master.
    Cluster,
}

/// How the Redis master goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failover {
    /// Asked for: SENTINEL FAILOVER, or CLUSTER FAILOVER on the replica.
    Graceful,
    /// The master process killed (SIGKILL); Sentinel or the cluster notices and promotes the
    /// replica (a killed cluster node is started again, empty, and rejoins as a replica).
    Kill,
}

/// Three rooms, each with a member on every relay, chatting; joins going on; the Redis master
/// (Cluster: the master serving the first room) fails over as `how` says after 2 s of chat and
/// the load goes on 5 s after it. Prints the figures: messages acknowledged (no error frame to
/// the sender) but not delivered, time to the first delivery, joins failing. Asserts that every
/// acknowledged message reached every other member of its room that stayed connected, and
/// that no message is refused any more 4 s after the failover.
async fn chat_through_failover(redis: Replicated, how: Failover, label: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let _alone = HEAVY.write().await;
    let redis = match redis {
        Replicated::Sentinel => support::server::Redis::Sentinel(
            store::testing::RedisSentinel::start()
                .await
                .unwrap_or_else(|e| panic!("start Redis Sentinel: {e}")),
        ),
        Replicated::Cluster => support::server::Redis::Cluster(
            store::testing::RedisCluster::start_with_replicas()
                .await
                .unwrap_or_else(|e| panic!("start a Redis Cluster with replicas: {e}")),
        ),
    };
    let mut env = Env::start_on(redis, failover_opts()).await;
    let mut rooms = Vec::new();
    let mut members = Vec::new();
    for r in 0..3 {
        let owner = create_room_with(&env, r, support::room::create_data(&format!("r{r}m0")))
            .await
            .0;
        let room_id = owner.room_id.clone();
        members.push((r, owner));
        for k in 1..3 {
            let (m, _) = join_room(&env, (r + k) % 3, &room_id, &format!("r{r}m{k}"), "").await;
            members.push((r, m));
        }
        rooms.push(room_id);
    }
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let chatters: Vec<_> = members
        .into_iter()
        .map(|(r, m)| tokio::spawn(chat(r, m, stop.clone())))
        .collect();
    let urls: Vec<String> = (0..3).map(|i| env.ws_url(i)).collect();
    let joiner = tokio::spawn(keep_joining(urls, rooms[0].clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failover_at = Instant::now();
    match env.redis_mut().expect("a Redis") {
        support::server::Redis::Sentinel(group) => match how {
            Failover::Graceful => drop(group.failover().await.expect("SENTINEL FAILOVER")),
            Failover::Kill => drop(group.kill_master().await.expect("kill the master")),
        },
        support::server::Redis::Cluster(cluster) => {
            // The master serving the first room (its keys and its channel).
            let slot = cluster
                .slot_of(&format!("arthas:{{{}}}", rooms[0]))
                .await
                .expect("slot");
            let master = cluster.owner_of_slot(slot).await.expect("owner");
            match how {
                Failover::Graceful => cluster.fail_over(master).await.expect("CLUSTER FAILOVER"),
                Failover::Kill => cluster.kill_master(master).await.expect("kill the master"),
            }
        }
        support::server::Redis::Standalone(_) => unreachable!("a Redis with a replica"),
    }
    let failover_done = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let (joins_ok, joins_failed, join_errors) = joiner.await.expect("joiner");
    let mut logs = Vec::new();
    for c in chatters {
        logs.push(c.await.expect("a chatter"));
    }
    let (mut sent, mut told, mut lost, mut closed) = (0, 0, Vec::new(), 0);
    let mut lost_span = None::<(Duration, Duration)>;
    let mut told_span = None::<(Duration, Duration)>;
    let mut first_after: Option<Duration> = None;
    let mut slowest = Duration::ZERO;
    for log in &logs {
        closed += usize::from(log.closed);
        for (ct, sent_at, was_told) in &log.sent {
            sent += 1;
            if *was_told {
                told += 1;
                widen(
                    &mut told_span,
                    sent_at.saturating_duration_since(failover_at),
                );
                continue;
            }
            for other in logs
                .iter()
                .filter(|o| o.room == log.room && o.member != log.member)
            {
                match other.received.get(ct) {
                    Some(at) => {
                        slowest = slowest.max(at.saturating_duration_since(*sent_at));
                        if *sent_at >= failover_at {
                            let after = at.saturating_duration_since(failover_at);
                            first_after = Some(first_after.map_or(after, |f| f.min(after)));
                        }
                    }
                    None if other.closed => {}
                    None => {
                        widen(
                            &mut lost_span,
                            sent_at.saturating_duration_since(failover_at),
                        );
                        lost.push(format!("{ct} never reached {}", other.member));
                    }
                }
            }
        }
    }
    println!(
        "FIGURE {label} failover under chat: failover took {:?}; {sent} messages sent by 9 members in 3 rooms, {told} answered with an error (sent {told_span:?} after the failover started), {} (message, recipient) pairs acknowledged but not delivered, of messages sent {lost_span:?} after the failover started; first delivery {first_after:?} after the failover started; slowest delivery {slowest:?}; {closed} connections closed; joins during the run: {joins_ok} succeeded, {joins_failed} failed {join_errors:?}",
        failover_done - failover_at,
        lost.len()
    );
    if let Some(support::server::Redis::Cluster(cluster)) = env.redis() {
        let channel = format!("arthas:{{{}}}", rooms[0]);
        for (role, node) in cluster
            .nodes
            .iter()
            .map(|n| ("master", n))
            .chain(cluster.replicas.iter().map(|n| ("replica", n)))
        {
            let subs = node.command(&["PUBSUB", "SHARDNUMSUB", &channel]).await;
            println!(
                "{role} {}: PUBSUB SHARDNUMSUB {channel}: {subs:?}",
                node.addr()
            );
        }
    }
    // A publish that reached fewer relays than hold members is answered with an error (the
    // relay's `reach`), and a relay moving its subscription off a master first takes every push
    // that master counted for it: nothing acknowledged is lost.
    assert!(
        lost.is_empty(),
        "acknowledged (no error to the sender) but not delivered: {lost:?}"
    );
    assert!(
        first_after.is_some(),
        "nothing delivered after the failover"
    );
    // Delivery is whole again: the last second's messages were all acknowledged.
    let last_second = failover_done + Duration::from_secs(4);
    let late_told = logs
        .iter()
        .flat_map(|l| &l.sent)
        .filter(|(_, at, told)| *told && *at >= last_second)
        .count();
    assert_eq!(
        late_told, 0,
        "messages still refused 4 s after the failover ended"
    );
}

/// Widens a span of offsets to include `at`.
fn widen(span: &mut Option<(Duration, Duration)>, at: Duration) {
    *span = Some(match *span {
        None => (at, at),
        Some((a, b)) => (a.min(at), b.max(at)),
    });
}

/// Redis Sentinel (a master, a replica, three sentinels; the relays and the gateway in
/// `--redis-mode sentinel`): SENTINEL FAILOVER while nine members chat in three rooms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_under_chat_loses_no_acknowledged_message() {
    chat_through_failover(Replicated::Sentinel, Failover::Graceful, "sentinel").await;
}

/// The same with the master killed (SIGKILL): the sentinels promote the replica after 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_killed_under_chat_loses_no_acknowledged_message() {
    chat_through_failover(
        Replicated::Sentinel,
        Failover::Kill,
        "sentinel (master killed)",
    )
    .await;
}

/// Redis Cluster with a replica per master: CLUSTER FAILOVER on the replica of the master
/// serving the first room while nine members chat in three rooms.
///
/// The shard's subscriptions do not survive the failover and the old master does not always
/// unsubscribe them: each relay notices the slots' masters changed (CLUSTER SLOTS, every 2 s)
/// and resubscribes its rooms; until then publishes reach fewer relays than hold members and
/// their senders are told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_under_chat_loses_no_acknowledged_message() {
    chat_through_failover(Replicated::Cluster, Failover::Graceful, "cluster").await;
}

/// The same with the master killed (SIGKILL): the cluster promotes its replica after the node
/// timeout (5 s); commands to its slots fail meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_killed_under_chat_loses_no_acknowledged_message() {
    chat_through_failover(
        Replicated::Cluster,
        Failover::Kill,
        "cluster (master killed)",
    )
    .await;
}

/// Chat limits out of the way of a load of 50 messages a second per member.
fn failover_opts() -> Opts {
    Opts::new()
        .flag("--chat-rate-limit", 100_000)
        .flag("--chat-rate-window-ms", 1_000)
        .flag("--max-room-members", 100)
        .flag("--handshakes-per-ip-per-sec", 100_000)
        .flag("--max-connections-per-ip", 1_000)
}
