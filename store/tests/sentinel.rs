//! Sentinel mode against real servers: two relays chatting in many rooms
//! through a forced failover. Delivery must resume in every room (no loss
//! after recovery, no duplicates from the demoted master) and store
//! commands must reach the new master.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use arthas_store::redis::keys;
use arthas_store::testing::RecordingSink;
use arthas_store::{Bus, BusMessage, RoomStore};
use common::{member, message, new_room, relay, Backend, Fixture, Relay, WAIT};
use tokio::time::Instant;

/// Rooms both relays chat in.
const ROOMS: usize = 50;

/// How many messages with `frame` each room of `rooms` delivered.
fn counts(sink: &RecordingSink, rooms: &[String], frame: &str) -> Vec<usize> {
    rooms
        .iter()
        .map(|room| {
            sink.messages(room)
                .iter()
                .filter(|m| m.frame == frame.as_bytes())
                .count()
        })
        .collect()
}

/// Every relay publishes `frame` once in every room, then each relay must
/// have received it exactly once per publisher in every room.
async fn chat_round(relays: &[Relay], rooms: &[String], frame: &str) {
    for r in relays {
        for room in rooms {
            r.engine
                .publish(room, message(frame))
                .await
                .unwrap_or_else(|e| panic!("publish {frame} in {room}: {e:?}"));
        }
    }
    let want = relays.len();
    for (i, r) in relays.iter().enumerate() {
        let done = r
            .sink
            .wait_until(frame, WAIT, |m: &HashMap<String, Vec<BusMessage>>| {
                rooms.iter().all(|room| {
                    m.get(room).map_or(0, |ms| {
                        ms.iter().filter(|x| x.frame == frame.as_bytes()).count()
                    }) >= want
                })
            })
            .await;
        let got = counts(&r.sink, rooms, frame);
        assert!(
            done.is_ok(),
            "relay {i}: {frame} missing in some room: {got:?}"
        );
    }
    // Late duplicates (a demoted master still delivering) would show here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, r) in relays.iter().enumerate() {
        let got = counts(&r.sink, rooms, frame);
        assert!(
            got.iter().all(|n| *n == want),
            "relay {i}: {frame} delivered other than once per publisher: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_follow_a_failover_in_every_room_and_commands_reach_the_new_master() {
    let f = Fixture::sentinel().await;
    let Backend::Sentinel(group) = &f.backend else {
        unreachable!()
    };
    let relays = vec![relay(&f).await, relay(&f).await];
    let rooms: Vec<String> = (0..ROOMS).map(|i| format!("room-{i}")).collect();
    let now = arthas_store::unix_secs();
    for (n, room) in rooms.iter().enumerate() {
        assert!(relays[0]
            .engine
            .create_room(new_room(room, 10, ""))
            .await
            .expect("create"));
        for (i, r) in relays.iter().enumerate() {
            r.engine.subscribe(room).await.expect("subscribe");
            let m = member(1000 * n as u32 + i as u32 + 1, &format!("relay-{i}"));
            r.engine.join(room, m, false, now).await.expect("join");
        }
    }
    chat_round(&relays, &rooms, "before").await;

    let old = group.master_port().await.expect("master");
    let recoveries: Vec<u64> = relays
        .iter()
        .map(|r| r.engine.bus_health().borrow().recoveries)
        .collect();
    let started = Instant::now();
    let new = group.failover().await.expect("failover");
    let switched = started.elapsed();
    assert_ne!(old, new);
    for (r, before) in relays.iter().zip(&recoveries) {
        let mut health = r.engine.bus_health();
        tokio::time::timeout(WAIT, health.wait_for(|h| h.up && h.recoveries > *before))
            .await
            .expect("the bus follows the new master")
            .expect("health");
    }
    let resumed = started.elapsed();
    chat_round(&relays, &rooms, "after").await;
    let health = relays[1].engine.bus_health().borrow().clone();
    eprintln!(
        "sentinel failover: sentinels agreed after {switched:?}, both buses recovered after \
         {resumed:?} (last recovery {:?}, {} rooms)",
        health.last_recovery, health.last_recovery_rooms
    );

    // The bus connections are on the new master, none left on the old one.
    let new_master = group.server(new).expect("new master");
    let old_master = group.server(old).expect("old master");
    let channel = keys::channel(&rooms[0]);
    let subscribers = |v: redis::Value| match v {
        redis::Value::Array(parts) => match parts.get(1) {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("NUMSUB: {other:?}"),
        },
        other => panic!("NUMSUB: {other:?}"),
    };
    let on_new = new_master
        .command(&["PUBSUB", "NUMSUB", &channel])
        .await
        .expect("numsub");
    assert_eq!(subscribers(on_new), 2, "both relays on the new master");
    let deadline = Instant::now() + WAIT;
    loop {
        let on_old = old_master
            .command(&["PUBSUB", "NUMSUB", &channel])
            .await
            .expect("numsub");
        if subscribers(on_old) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a relay stays subscribed on the demoted master"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Store commands reach the new master (the pool's connections to the
    // old one were dropped or answered READONLY).
    let deadline = Instant::now() + WAIT;
    for (n, room) in rooms.iter().enumerate() {
        let m = member(1000 * n as u32 + 500, "relay-0");
        loop {
            match relays[0].engine.join(room, m.clone(), false, now).await {
                Ok(joined) => {
                    assert_eq!(joined.members.len(), 3, "{room}: members kept");
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "{room}: join fails: {e:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        relays[1]
            .engine
            .leave(room, m.id, &m.node)
            .await
            .expect("leave");
    }
    let role = new_master.command(&["ROLE"]).await.expect("role");
    assert!(format!("{role:?}").contains("master"));
}
