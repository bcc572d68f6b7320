//! Abuse limits, each met by a hostile client (docs/SECURITY.md "Limits"): password guessing,
//! creation floods, per-connection message budgets, connections and handshakes per address,
//! room lookups, slow requests. Concurrent attacks are fired at once (join_all), as an attacker
//! would. Clients play different addresses by connecting from other loopback addresses
//! (127.0.0.x), which reach every listener on 127.0.0.1 without a proxy in between.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::map;
use crate::support::http;
use crate::support::msg::password_hash;
use crate::support::room::{create_data, create_room_with, join_data, unique};
use crate::support::{open_room, t, Client, ConnectError, ConnectOpts, Env, Opts, ValueExt};

const TOO_MANY_GUESSES: &str = "too many wrong passwords, try again later";
const RATE_LIMITED: &str = "rate limited, please slow down";
const RIGHT: &str = "correct horse battery staple";

fn password_room(name: &str) -> Value {
    map! {"name" => name, "password" => password_hash(RIGHT), "ephemeral" => 0, "expiry" => 0}
}

/// Connects `n` clients to `node` from `local_ip`, all at once.
async fn clients_from(env: &Env, node: usize, local_ip: &str, n: usize) -> Vec<Client> {
    let url = env.ws_url(node);
    join_all((0..n).map(|_| Client::connect_from(&url, local_ip))).await
}

/// Each client sends `ty` with its data at the same moment; returns every first reply.
async fn all_at_once(
    clients: &mut [Client],
    ty: u8,
    data: impl Fn(usize) -> Value,
) -> Vec<(u8, Value)> {
    join_all(clients.iter_mut().enumerate().map(|(i, c)| {
        let data = data(i);
        async move {
            c.send(ty, data).await;
            c.recv().await
        }
    }))
    .await
}

fn count_errors(replies: &[(u8, Value)], code: &str, msg: &str) -> usize {
    replies
        .iter()
        .filter(|(ty, d)| *ty == t::ERROR && d.str("code") == code && d.str("msg") == msg)
        .count()
}

// ---------------------------------------------------------------------------------------------
// Password guessing

/// 60 connections from one address send a wrong password for one room at the same moment: the
/// guesses are counted before argon2 runs, so exactly the per-(room, address) limit of them is
/// verified (E006) and every other one is refused unverified (E004).
#[tokio::test]
async fn sixty_concurrent_wrong_guesses_verify_at_most_the_limit() {
    let env = Env::start_with(
        Opts::new()
            .flag("--max-password-guesses-per-room-ip", 7)
            .flag("--max-password-guesses-per-ip", 1000)
            .flag("--handshakes-per-ip-per-sec", 1000),
    )
    .await;
    let (owner, _, _) = create_room_with(&env, 0, password_room("owner")).await;
    let mut guessers: Vec<Client> = Vec::new();
    for node in 0..3 {
        guessers.extend(clients_from(&env, node, "127.0.0.2", 20).await);
    }
    let replies = all_at_once(&mut guessers, t::JOIN_ROOM, |i| {
        join_data(
            &owner.room_id,
            "guesser",
            &password_hash(&format!("guess {i}")),
        )
    })
    .await;
    let verified = count_errors(&replies, "E006", "wrong password");
    let refused = count_errors(&replies, "E004", TOO_MANY_GUESSES);
    println!("FIGURE 60 concurrent wrong guesses: {verified} verified, {refused} refused");
    assert_eq!((verified, refused), (7, 53), "{replies:?}");
}

/// A stranger who knows only the room id spends every guess it is allowed, from two
/// addresses; a member who knows the password, from a third, still joins: the room's own count
/// only slows the check down (here by the capped delay), it never refuses.
#[tokio::test]
async fn a_strangers_guesses_do_not_stop_a_member_who_knows_the_password() {
    let env = Env::start_with(
        Opts::new()
            .flag("--max-password-guesses-per-room", 3)
            .flag("--max-password-guesses-per-room-ip", 4)
            .flag("--password-guess-delay-ms", 50)
            .flag("--password-guess-max-delay-ms", 300),
    )
    .await;
    let (owner, _, _) = create_room_with(&env, 0, password_room("owner")).await;
    for stranger_ip in ["127.0.0.2", "127.0.0.3"] {
        let mut stranger = Client::connect_from(&env.ws_url(1), stranger_ip).await;
        for i in 0..4 {
            let guess = password_hash(&format!("{stranger_ip} {i}"));
            stranger
                .send(t::JOIN_ROOM, join_data(&owner.room_id, "x", &guess))
                .await;
            stranger.expect_error("E006", "wrong password").await;
        }
        stranger
            .send(
                t::JOIN_ROOM,
                join_data(&owner.room_id, "x", &password_hash(RIGHT)),
            )
            .await;
        stranger.expect_error("E004", TOO_MANY_GUESSES).await;
    }
    let mut member = Client::connect_from(&env.ws_url(2), "127.0.0.4").await;
    let started = Instant::now();
    member
        .send(
            t::JOIN_ROOM,
            join_data(&owner.room_id, "member", &password_hash(RIGHT)),
        )
        .await;
    member.expect(t::ROOM_JOINED).await;
    let waited = started.elapsed();
    println!("FIGURE a member joined a room under guessing after {waited:?}");
    assert!(
        waited >= Duration::from_millis(300),
        "the room's delay applies to every check ({waited:?})"
    );
}

// ---------------------------------------------------------------------------------------------
// Room creation

/// 30 connections from one address send CreateRoom at once: the per-address budget (5) lets
/// exactly 5 through, the others get E004; another address still creates.
#[tokio::test]
async fn a_creation_flood_over_websocket_is_refused_while_other_addresses_create() {
    let env = Env::start_with(
        Opts::new()
            .flag("--room-creations-per-minute", 5)
            .flag("--handshakes-per-ip-per-sec", 1000),
    )
    .await;
    let mut flood = Vec::new();
    for node in 0..3 {
        flood.extend(clients_from(&env, node, "127.0.0.2", 10).await);
    }
    let replies = all_at_once(&mut flood, t::CREATE_ROOM, |i| {
        create_data(&format!("f{i}"))
    })
    .await;
    let created = replies
        .iter()
        .filter(|(ty, _)| *ty == t::ROOM_CREATED)
        .count();
    let refused = count_errors(&replies, "E004", RATE_LIMITED);
    println!(
        "FIGURE 30 concurrent creations from one address: {created} created, {refused} refused"
    );
    assert_eq!((created, refused), (5, 25), "{replies:?}");
    let mut other = Client::connect_from(&env.ws_url(1), "127.0.0.3").await;
    other.send(t::CREATE_ROOM, create_data("other")).await;
    other.expect(t::ROOM_CREATED).await;
}

/// WebSocket CreateRoom and `POST /v1/rooms` spend one budget per address.
#[tokio::test]
async fn websocket_and_http_creations_share_one_budget() {
    let env = Env::start_with(Opts::new().flag("--room-creations-per-minute", 3)).await;
    for node in 0..2 {
        let mut c = Client::connect(&env.ws_url(node)).await;
        c.send(t::CREATE_ROOM, create_data("ws")).await;
        c.expect(t::ROOM_CREATED).await;
    }
    let url = format!("{}/v1/rooms", env.http_url(0));
    assert_eq!(
        http::post_json(&url, &serde_json::json!({})).await.status,
        201
    );
    let refused = http::post_json(&url, &serde_json::json!({})).await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    let mut c = Client::connect(&env.ws_url(2)).await;
    c.send(t::CREATE_ROOM, create_data("ws")).await;
    c.expect_error("E004", RATE_LIMITED).await;
}

/// Public listings come out of a per-address budget: beyond it the room is still created, but
/// private, and the creator is told so after RoomJoined.
#[tokio::test]
async fn public_listings_beyond_the_budget_are_created_private() {
    let env = Env::start_with(
        Opts::new()
            .flag("--public-listings-per-hour", 2)
            .flag("--hub-requests-per-minute", 1000),
    )
    .await;
    let public = |title: &str| {
        map! {
            "name" => "c", "password" => "", "ephemeral" => 0, "expiry" => 0,
            "public" => true, "title" => title, "description" => "", "tags" => Value::Array(vec![]),
            "keyEncoded" => "a2V5LWtleS1rZXk"
        }
    };
    let mut keep = Vec::new();
    for i in 0..2 {
        let (mut m, _, _) = create_room_with(&env, i, public(&format!("listed {i}"))).await;
        m.sync().await;
        keep.push(m);
    }
    let (mut third, _, joined) = create_room_with(&env, 2, public("one too many")).await;
    third
        .expect_error("E004", "too many public rooms, room created as private")
        .await;
    assert!(!joined.str("roomId").is_empty());
    let hub = http::get(&format!("{}/api/hub", env.http_url(0)))
        .await
        .json();
    assert_eq!(hub["total"], 2, "{hub}");
}

// ---------------------------------------------------------------------------------------------
// Per-connection message budgets

/// Reactions beyond the budget get E004 and are not relayed.
#[tokio::test]
async fn reactions_beyond_the_budget_get_e004_and_are_dropped() {
    let env = Env::start_with(Opts::new().flag("--reactions-per-minute", 3)).await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for i in 0..5 {
        a.send(
            t::SEND_REACTION,
            map! {"iv" => "aXY", "ciphertext" => format!("r{i}")},
        )
        .await;
    }
    for _ in 0..2 {
        a.expect_error("E004", RATE_LIMITED).await;
    }
    for i in 0..3 {
        assert_eq!(
            b.expect(t::RELAY_REACTION).await.str("ciphertext"),
            format!("r{i}")
        );
    }
    b.sync().await;
}

/// Typing beyond the budget gets E004 and is not relayed.
#[tokio::test]
async fn typing_beyond_the_budget_gets_e004_and_is_dropped() {
    let env = Env::start_with(Opts::new().flag("--typing-per-minute", 2)).await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    for _ in 0..4 {
        a.send(t::TYPING, map! {"typing" => true}).await;
    }
    for _ in 0..2 {
        a.expect_error("E004", RATE_LIMITED).await;
    }
    for _ in 0..2 {
        b.expect(t::MEMBER_TYPING).await;
    }
    b.sync().await;
}

/// Joins (here: probes of room ids that do not exist) beyond the budget get E004 before the
/// store is asked.
#[tokio::test]
async fn room_changes_beyond_the_budget_get_e004() {
    let env = Env::start_with(Opts::new().flag("--room-changes-per-minute", 3)).await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    for _ in 0..3 {
        c.send(t::JOIN_ROOM, join_data("AAAAAAAAAAAAAAAAAAAAA", "p", ""))
            .await;
        c.expect_error("E001", "room not found").await;
    }
    c.send(t::JOIN_ROOM, join_data("AAAAAAAAAAAAAAAAAAAAA", "p", ""))
        .await;
    c.expect_error("E004", RATE_LIMITED).await;
}

/// File frames beyond the byte budget are paced, not dropped: every chunk arrives, and the
/// last one no sooner than the budget allows.
#[tokio::test]
async fn file_frames_beyond_the_byte_budget_are_paced_not_dropped() {
    const CHUNK: usize = 30_000;
    const CHUNKS: usize = 5;
    let env = Env::start_with(
        Opts::new()
            .flag("--file-bytes-per-sec", 100_000)
            .flag("--file-burst-bytes", 50_000),
    )
    .await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    let id = unique("paced");
    let started = Instant::now();
    a.send(t::FILE_META, crate::conformance::files::meta(&id))
        .await;
    for i in 0..CHUNKS {
        let data = vec![i as u8; CHUNK];
        a.send(
            t::FILE_CHUNK,
            crate::conformance::files::chunk(&id, i as i64, data),
        )
        .await;
    }
    b.expect(t::RELAY_FILE_META).await;
    for i in 0..CHUNKS {
        let chunk = b.expect(t::RELAY_FILE_CHUNK).await;
        assert_eq!(chunk.int("index"), i as i64);
        assert_eq!(chunk.bin("data").len(), CHUNK);
    }
    let took = started.elapsed();
    // 1 KiB (meta) + 150 kB of chunks, 50 kB of burst, 100 kB/s: at least 1.01 s.
    println!(
        "FIGURE {} file bytes with a 100 kB/s budget relayed in {took:?}",
        CHUNK * CHUNKS
    );
    assert!(took >= Duration::from_secs(1), "not paced: {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Connections and handshakes per address

fn from(ip: &str) -> ConnectOpts {
    ConnectOpts {
        local_ip: Some(ip.parse().expect("an address")),
        ..ConnectOpts::default()
    }
}

/// A relay holds at most `--max-connections-per-ip` sockets per address: the next upgrade is
/// an HTTP 429, another address still connects, and a closed socket frees its slot.
#[tokio::test]
async fn connections_beyond_the_per_address_cap_get_429_before_the_upgrade() {
    let env = Env::start_with(Opts::new().flag("--max-connections-per-ip", 3)).await;
    let url = env.ws_url(0);
    let mut held = clients_from(&env, 0, "127.0.0.2", 3).await;
    match Client::connect_opts(&url, &from("127.0.0.2")).await {
        Err(ConnectError::Status(429)) => {}
        Ok(_) => panic!("a fourth connection from one address was accepted"),
        Err(e) => panic!("expected 429, got {e:?}"),
    }
    assert!(Client::connect_opts(&url, &from("127.0.0.3")).await.is_ok());
    let mut gone = held.pop().expect("three held");
    gone.send_close(1000).await;
    gone.expect_close(1000).await;
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Client::connect_opts(&url, &from("127.0.0.2")).await {
            Ok(_) => break,
            Err(ConnectError::Status(429)) if Instant::now() < deadline => {
                tokio::task::yield_now().await
            }
            Err(e) => panic!("the closed socket's slot did not come back: {e:?}"),
        }
    }
}

/// Handshakes beyond `--handshakes-per-ip-per-sec` get HTTP 429: never more than the burst
/// plus the rate over the time the attempts took.
#[tokio::test]
async fn handshake_floods_get_429() {
    const RATE: u64 = 5;
    let env = Env::start_with(Opts::new().flag("--handshakes-per-ip-per-sec", RATE)).await;
    let url = env.ws_url(0);
    let started = Instant::now();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..30 {
        match Client::connect_opts(&url, &from("127.0.0.5")).await {
            Ok(c) => accepted.push(c),
            Err(ConnectError::Status(429)) => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    let took = started.elapsed().as_secs_f64();
    let bound = RATE as usize + (took * RATE as f64).ceil() as usize + 1;
    println!(
        "FIGURE 30 handshakes in {took:.2} s: {} accepted, {refused} refused",
        accepted.len()
    );
    assert!(refused > 0);
    assert!(
        accepted.len() <= bound,
        "{} accepted in {took:.2} s",
        accepted.len()
    );
    assert!(Client::connect_opts(&url, &from("127.0.0.6")).await.is_ok());
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// `GET /v1/rooms/{id}` beyond the per-address budget gets 429.
#[tokio::test]
async fn room_lookups_beyond_the_budget_get_429() {
    let env = Env::start_with(Opts::new().flag("--room-lookups-per-minute", 3)).await;
    let url = format!("{}/v1/rooms/AAAAAAAAAAAAAAAAAAAAA", env.http_url(0));
    let answers = join_all((0..8).map(|_| http::get(&url))).await;
    let limited = answers.iter().filter(|a| a.status == 429).count();
    assert_eq!(
        limited,
        5,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
}

/// Every HTTP listener (the all-in-one's; or the gateway's public and internal ones and every
/// relay's) drops a client that sends half a request head and nothing more.
#[tokio::test]
async fn half_a_request_head_is_cut_off_on_every_listener() {
    let env = Env::start_with(Opts::new().flag("--header-read-timeout-ms", 300)).await;
    let mut listeners = vec![env.http_url(0)];
    for node in 0..env.node_count() {
        listeners.push(env.node_http_url(node));
    }
    listeners.extend(env.gateway_internal_url());
    listeners.dedup();
    for base in listeners {
        let addr = base.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let started = Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "{base} kept a half-sent request open");
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "{base} closed early"
        );
    }
}

/// A request body that does not arrive in time is answered 408.
#[tokio::test]
async fn a_request_body_that_does_not_arrive_in_time_gets_408() {
    let env = Env::start_with(Opts::new().flag("--body-read-timeout-ms", 300)).await;
    let base = env.http_url(0);
    let mut tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect");
    tcp.write_all(
        b"POST /v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection stayed open");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
