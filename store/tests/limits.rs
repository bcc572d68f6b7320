//! The store's abuse-limit primitives, on every engine (memory, a real
//! standalone Redis, a real 3-master Redis Cluster, Redis under sentinels):
//! budgets that refuse without counting, and password guesses counted before
//! they are verified, atomically, only for rooms that exist. Concurrent
//! callers (join_all) never overspend.

mod common;

use std::time::Duration;

use arthas_store::RoomGuess;
use common::{member, new_room, Fixture};
use futures_util::future::join_all;

const WINDOW: Duration = Duration::from_secs(60);

async fn budgets_refuse_without_counting_and_take_back_refunds(f: Fixture) {
    let s = f.store().await;
    let takes = join_all((0..50).map(|_| s.take("create:203.0.113.7", 7, WINDOW))).await;
    let taken = takes.iter().filter(|t| *t.as_ref().unwrap()).count();
    assert_eq!(taken, 7, "50 concurrent takes of a budget of 7");
    assert_eq!(s.hit("create:203.0.113.7", 0, WINDOW).await.unwrap(), 7);
    s.give_back("create:203.0.113.7").await.unwrap();
    assert!(s.take("create:203.0.113.7", 7, WINDOW).await.unwrap());
    assert!(!s.take("create:203.0.113.7", 7, WINDOW).await.unwrap());
    assert!(
        s.take("create:198.51.100.1", 7, WINDOW).await.unwrap(),
        "another key has its own budget"
    );
    // Giving back more than was taken never goes below zero.
    for _ in 0..3 {
        s.give_back("unused").await.unwrap();
    }
    assert_eq!(s.hit("unused", 0, WINDOW).await.unwrap(), 0);
}

async fn guesses_are_counted_only_on_password_rooms_that_exist(f: Fixture) {
    let s = f.store().await;
    assert_eq!(
        s.reserve_guess("nope", "203.0.113.7", 5, WINDOW)
            .await
            .unwrap(),
        RoomGuess::NotFound
    );
    s.create_room(new_room("open", 5, "")).await.unwrap();
    assert_eq!(
        s.reserve_guess("open", "203.0.113.7", 5, WINDOW)
            .await
            .unwrap(),
        RoomGuess::Open
    );
    s.create_room(new_room("locked", 5, "$argon2id$hash"))
        .await
        .unwrap();
    assert_eq!(
        s.reserve_guess("locked", "203.0.113.7", 5, WINDOW)
            .await
            .unwrap(),
        RoomGuess::Reserved {
            password_hash: "$argon2id$hash".into(),
            room_guesses: 1
        }
    );
}

async fn concurrent_guesses_never_exceed_the_client_limit(f: Fixture) {
    let s = f.store().await;
    s.create_room(new_room("locked", 5, "$argon2id$hash"))
        .await
        .unwrap();
    let guesses =
        join_all((0..60).map(|_| s.reserve_guess("locked", "203.0.113.7", 5, WINDOW))).await;
    let mut counts: Vec<u64> = guesses
        .into_iter()
        .filter_map(|g| match g.unwrap() {
            RoomGuess::Reserved { room_guesses, .. } => Some(room_guesses),
            RoomGuess::Refused => None,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        vec![1, 2, 3, 4, 5],
        "each reservation saw its own count"
    );
    // The room's count is shared by every client; the client limit is per client.
    match s
        .reserve_guess("locked", "2001:db8::/64", 5, WINDOW)
        .await
        .unwrap()
    {
        RoomGuess::Reserved { room_guesses, .. } => assert_eq!(room_guesses, 6),
        other => panic!("another client: {other:?}"),
    }
}

async fn a_released_guess_is_given_back_to_the_client_and_the_room(f: Fixture) {
    let s = f.store().await;
    s.create_room(new_room("locked", 5, "$argon2id$hash"))
        .await
        .unwrap();
    for _ in 0..2 {
        assert!(matches!(
            s.reserve_guess("locked", "c", 2, WINDOW).await.unwrap(),
            RoomGuess::Reserved { .. }
        ));
    }
    assert_eq!(
        s.reserve_guess("locked", "c", 2, WINDOW).await.unwrap(),
        RoomGuess::Refused
    );
    s.release_guess("locked", "c").await.unwrap();
    match s.reserve_guess("locked", "c", 2, WINDOW).await.unwrap() {
        RoomGuess::Reserved { room_guesses, .. } => {
            assert_eq!(room_guesses, 2, "the room's count went down too")
        }
        other => panic!("after a release: {other:?}"),
    }
    // Releasing on a room that is gone is harmless.
    s.release_guess("nope", "c").await.unwrap();
}

async fn member_counts_follow_joins(f: Fixture) {
    let s = f.store().await;
    assert_eq!(s.member_count("r").await.unwrap(), None);
    s.create_room(new_room("r", 5, "")).await.unwrap();
    assert_eq!(s.member_count("r").await.unwrap(), Some(0));
    let now = arthas_store::unix_secs();
    s.join("r", member(1, "n1"), false, now).await.unwrap();
    s.join("r", member(2, "n1"), false, now).await.unwrap();
    assert_eq!(s.member_count("r").await.unwrap(), Some(2));
}

arthas_store::on_engines!(
    [memory, standalone, cluster, sentinel] => [
        budgets_refuse_without_counting_and_take_back_refunds,
        guesses_are_counted_only_on_password_rooms_that_exist,
        concurrent_guesses_never_exceed_the_client_limit,
        a_released_guess_is_given_back_to_the_client_and_the_room,
        member_counts_follow_joins,
    ]
);

/// Redis: guessing at rooms that do not exist, or have no password, makes no key at all (the
/// reference's server and our first version made one per probed room id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_of_missing_rooms_leave_no_keys() {
    let f = Fixture::standalone().await;
    let common::Backend::Standalone(server) = &f.backend else {
        unreachable!("a standalone fixture");
    };
    let s = f.store().await;
    s.create_room(new_room("open", 5, "")).await.unwrap();
    for i in 0..20 {
        let room = format!("missing{i}");
        s.reserve_guess(&room, "203.0.113.7", 5, WINDOW)
            .await
            .unwrap();
        s.reserve_guess("open", "203.0.113.7", 5, WINDOW)
            .await
            .unwrap();
    }
    match server.command(&["DBSIZE"]).await {
        Ok(redis::Value::Int(n)) => assert_eq!(n, 1, "only the open room's record"),
        other => panic!("DBSIZE: {other:?}"),
    }
}
