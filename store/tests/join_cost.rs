//! What a join and a leave cost Redis, counted with `INFO commandstats` on a
//! real redis-server (which lists a script's own calls too): a join into a
//! room the relay already holds is one script call (reading the room's
//! fields, not the whole record); a relay whose heartbeat holds is not
//! registered again by its joins; a leave is one script call that reads
//! nothing back. Also: member records of the older layout are still read.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use arthas_store::testing::RedisServer;
use common::{member, new_room, Fixture};
use protocol::member::MemberId;

/// Calls per command since the last `CONFIG RESETSTAT` (that one aside).
async fn command_calls(server: &RedisServer) -> HashMap<String, u64> {
    let info = match server.command(&["INFO", "commandstats"]).await {
        Ok(redis::Value::BulkString(b)) => String::from_utf8(b).expect("utf-8"),
        Ok(redis::Value::VerbatimString { text, .. }) => text,
        other => panic!("INFO commandstats: {other:?}"),
    };
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| name != "config|resetstat")
        .collect()
}

/// `[(command, calls)]` as a map.
fn calls(list: &[(&str, u64)]) -> HashMap<String, u64> {
    list.iter().map(|(c, n)| (c.to_string(), *n)).collect()
}

/// The calls join.lua makes for a member joining a room that never expires
/// (plus the record's PERSIST on the room's first join).
const JOIN_SCRIPT: [(&str, u64); 6] = [
    ("evalsha", 1),
    ("hmget", 1),
    ("hlen", 1),
    ("hincrby", 2),
    ("hsetnx", 1),
    ("hgetall", 1),
];

async fn reset_stats(server: &RedisServer) {
    server
        .command(&["CONFIG", "RESETSTAT"])
        .await
        .expect("CONFIG RESETSTAT");
}

fn standalone(f: &Fixture) -> &RedisServer {
    match &f.backend {
        common::Backend::Standalone(server) => server,
        _ => unreachable!("a standalone fixture"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_into_a_room_the_relay_holds_is_one_script_call() {
    let f = Fixture::standalone().await;
    let server = standalone(&f);
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    s.create_room(new_room("r", 10, "")).await.unwrap();
    s.join("r", member(1, "relay-a"), false, now).await.unwrap();
    reset_stats(server).await;
    let joined = s.join("r", member(2, "relay-a"), false, now).await.unwrap();
    assert_eq!(joined.members.len(), 2);
    assert_eq!(command_calls(server).await, calls(&JOIN_SCRIPT));
    // It went over the bus's own RESP3 connection, not redis-rs's (RESP2).
    assert_eq!(
        last_command_by_protocol(server).await.get("3"),
        Some(&"evalsha".to_string())
    );
}

/// The last command of each client connection, by RESP version (the bus
/// connection speaks RESP3, the command connections RESP2); the asking
/// connection left out.
async fn last_command_by_protocol(server: &RedisServer) -> HashMap<String, String> {
    let list = match server.command(&["CLIENT", "LIST"]).await {
        Ok(redis::Value::BulkString(b)) => String::from_utf8(b).expect("utf-8"),
        Ok(redis::Value::VerbatimString { text, .. }) => text,
        other => panic!("CLIENT LIST: {other:?}"),
    };
    list.lines()
        .filter_map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            let cmd = field("cmd")?;
            (cmd != "client|list").then_some((field("resp")?, cmd))
        })
        .collect()
}

/// A Redis that lost its scripts (restarted, `SCRIPT FLUSH`) answers the
/// join's EVALSHA with NOSCRIPT (on the bus connection, where nothing
/// loads scripts): the join goes through the command connections, which
/// load the script, and runs once, with the whole member list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_after_redis_lost_its_scripts_loads_the_script_and_joins_once() {
    let f = Fixture::standalone().await;
    let server = standalone(&f);
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    s.create_room(new_room("r", 10, "")).await.unwrap();
    s.join("r", member(1, "relay-a"), false, now).await.unwrap();
    server
        .command(&["SCRIPT", "FLUSH"])
        .await
        .expect("SCRIPT FLUSH");
    reset_stats(server).await;
    let joined = s.join("r", member(2, "relay-a"), false, now).await.unwrap();
    let ids: Vec<MemberId> = joined.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, [member(1, "relay-a").id, member(2, "relay-a").id]);
    let counted = command_calls(server).await;
    assert_eq!(counted.get("script|load"), Some(&1), "{counted:?}");
    assert_eq!(
        counted.get("evalsha"),
        Some(&3),
        "refused on the bus connection and by redis-rs's first try, then run: {counted:?}"
    );
    assert_eq!(
        counted.get("hsetnx"),
        Some(&1),
        "the member is written once: {counted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_heartbeat_holds_is_not_registered_by_its_joins() {
    let f = Fixture::standalone().await;
    let server = standalone(&f);
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    s.heartbeat("relay-a", Duration::from_secs(60), 0)
        .await
        .unwrap();
    s.create_room(new_room("r", 10, "")).await.unwrap();
    s.create_room(new_room("warm", 10, "")).await.unwrap();
    s.join("warm", member(9, "relay-a"), false, now)
        .await
        .unwrap(); // loads the script
    reset_stats(server).await;
    // The relay's first member of the room: the join script and the node's
    // room set, no registration.
    s.join("r", member(1, "relay-a"), false, now).await.unwrap();
    let mut want = calls(&JOIN_SCRIPT);
    want.extend(calls(&[("persist", 1), ("sadd", 1)]));
    assert_eq!(command_calls(server).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_a_heartbeat_is_registered_by_its_first_join() {
    let f = Fixture::standalone().await;
    let server = standalone(&f);
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    s.create_room(new_room("r", 10, "")).await.unwrap();
    s.create_room(new_room("q", 10, "")).await.unwrap();
    s.join("r", member(1, "relay-a"), false, now).await.unwrap();
    let score = server
        .command(&["ZSCORE", "arthas:nodes", "relay-a"])
        .await
        .unwrap();
    assert_ne!(score, redis::Value::Nil, "registered for the sweeper");
    reset_stats(server).await;
    // Registered now: the next room costs the join and the room set only.
    s.join("q", member(2, "relay-a"), false, now).await.unwrap();
    let mut want = calls(&JOIN_SCRIPT);
    want.extend(calls(&[("persist", 1), ("sadd", 1)]));
    assert_eq!(command_calls(server).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_that_keeps_the_room_is_one_script_call() {
    let f = Fixture::standalone().await;
    let server = standalone(&f);
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    s.create_room(new_room("r", 10, "")).await.unwrap();
    s.join("r", member(1, "relay-a"), false, now).await.unwrap();
    s.join("r", member(2, "relay-a"), false, now).await.unwrap();
    s.join("r", member(3, "relay-a"), false, now).await.unwrap();
    s.leave("r", MemberId::from_random(3), "relay-a") // loads the script
        .await
        .unwrap();
    reset_stats(server).await;
    let left = s
        .leave("r", MemberId::from_random(2), "relay-a")
        .await
        .unwrap();
    assert_eq!((left.was_member, left.destroyed), (true, false));
    assert_eq!(
        command_calls(server).await,
        calls(&[("evalsha", 1), ("hdel", 1), ("hlen", 1), ("hincrby", 1)])
    );
    let counts = server
        .command(&["HGET", "arthas:{r}:nodes", "relay-a"])
        .await
        .unwrap();
    assert_eq!(counts, redis::Value::BulkString(b"1".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_stored_in_the_older_layout_are_still_listed_in_order() {
    let f = Fixture::standalone().await;
    let server = standalone(&f);
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    s.create_room(new_room("r", 10, "")).await.unwrap();
    s.join("r", member(1, "relay-a"), false, now).await.unwrap();
    // A member an older relay stored: a msgpack map holding its join counter.
    let old = member(2, "relay-b");
    #[derive(serde::Serialize)]
    struct Legacy<'a> {
        name: &'a str,
        color: &'a str,
        node: &'a str,
        #[serde(rename = "joinedAt")]
        joined_at: i64,
        seq: u64,
    }
    let packed = rmp_serde::to_vec_named(&Legacy {
        name: &old.name,
        color: &old.color,
        node: &old.node,
        joined_at: old.joined_at,
        seq: 2,
    })
    .unwrap();
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::pipe()
        .cmd("HSET")
        .arg("arthas:{r}:members")
        .arg(old.id.as_str())
        .arg(packed)
        .cmd("HINCRBY")
        .arg("arthas:{r}:room")
        .arg("seq")
        .arg(1)
        .exec_async(&mut conn)
        .await
        .unwrap();
    let third = member(3, "relay-a");
    let joined = s.join("r", third.clone(), false, now).await.unwrap();
    let ids: Vec<MemberId> = joined.members.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        vec![MemberId::from_random(1), old.id, third.id],
        "join order across both layouts"
    );
    assert_eq!(joined.members[1], old);
}

/// The leave of a relay's last member in a room that stays (another relay
/// still holds members) takes the room out of that relay's room set, and
/// only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leave_of_a_relays_last_member_takes_the_room_off_its_room_set() {
    let f = Fixture::standalone().await;
    let server = standalone(&f);
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    s.create_room(new_room("r", 10, "")).await.unwrap();
    s.join("r", member(1, "relay-a"), false, now).await.unwrap();
    s.join("r", member(2, "relay-a"), false, now).await.unwrap();
    s.join("r", member(3, "relay-b"), false, now).await.unwrap();
    let holds = |node: &'static str| async move {
        let key = format!("arthas:node:{{{node}}}:rooms");
        server.command(&["SISMEMBER", &key, "r"]).await.unwrap() == redis::Value::Int(1)
    };
    assert!(holds("relay-a").await && holds("relay-b").await);
    let left = s
        .leave("r", MemberId::from_random(1), "relay-a")
        .await
        .unwrap();
    assert_eq!((left.was_member, left.destroyed), (true, false));
    assert!(holds("relay-a").await, "relay-a still holds member 2");
    let left = s
        .leave("r", MemberId::from_random(2), "relay-a")
        .await
        .unwrap();
    assert_eq!((left.was_member, left.destroyed), (true, false));
    assert!(!holds("relay-a").await, "relay-a's last member left");
    assert!(holds("relay-b").await);
    let left = s
        .leave("r", MemberId::from_random(3), "relay-b")
        .await
        .unwrap();
    assert_eq!((left.was_member, left.destroyed), (true, true));
    let again = s
        .leave("r", MemberId::from_random(3), "relay-b")
        .await
        .unwrap();
    assert_eq!((again.was_member, again.destroyed), (false, false));
}
