//! The `RoomStore` contract: one body per behaviour, run against the memory
//! engine, a real standalone Redis, a real 3-master Redis Cluster and a
//! master + replica under three sentinels.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arthas_store::{
    Departure, JoinError, Listing, RoomSecrets, RoomStore, SecretOutcome, SecretUpdate,
};
use common::{member, new_room, Fixture, WAIT};
use protocol::member::MemberId;
use tokio::time::Instant;

/// Polls `check` until it returns Some, failing after [`WAIT`] with `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn join_checks_run_in_reference_order(f: Fixture) {
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    assert_eq!(
        s.join("nope", member(1, "n1"), true, now)
            .await
            .unwrap_err(),
        JoinError::NotFound
    );
    // Expired beats password, password beats full, full beats id taken.
    let mut expired = new_room("expired", 1, "hash");
    expired.record.expires_at = now - 10;
    assert!(s.create_room(expired).await.unwrap());
    assert_eq!(
        s.join("expired", member(1, "n1"), false, now)
            .await
            .unwrap_err(),
        JoinError::Expired
    );
    assert!(s.create_room(new_room("r", 1, "hash")).await.unwrap());
    assert!(
        !s.create_room(new_room("r", 5, "")).await.unwrap(),
        "ids are unique"
    );
    assert_eq!(
        s.join("r", member(1, "n1"), false, now).await.unwrap_err(),
        JoinError::NeedsPassword
    );
    let joined = s.join("r", member(1, "n1"), true, now).await.unwrap();
    assert_eq!(joined.room.capacity, 1);
    assert_eq!(joined.room.password_hash, "hash");
    assert_eq!(joined.members, vec![member_like(&joined.members[0], 1)]);
    assert_eq!(
        s.join("r", member(1, "n1"), true, now).await.unwrap_err(),
        JoinError::Full,
        "full is checked before the id"
    );
    assert!(s.create_room(new_room("open", 5, "")).await.unwrap());
    s.join("open", member(1, "n1"), false, now).await.unwrap();
    assert_eq!(
        s.join("open", member(1, "n2"), false, now)
            .await
            .unwrap_err(),
        JoinError::IdTaken
    );
    let record = s.room("open").await.unwrap().expect("room exists");
    assert_eq!((record.id.as_str(), record.capacity), ("open", 5));
    assert!(s.room("nope").await.unwrap().is_none());
}

fn member_like(m: &arthas_store::MemberRecord, n: u32) -> arthas_store::MemberRecord {
    assert_eq!(m.id, MemberId::from_random(n));
    m.clone()
}

async fn member_list_comes_back_in_join_order(f: Fixture) {
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    s.create_room(new_room("r", 50, "")).await.unwrap();
    // Ids in descending order and equal timestamps: only the join order sorts.
    let mut expected = Vec::new();
    for n in (1..=20u32).rev() {
        let mut m = member(n * 7919, "n1");
        m.joined_at = 1_700_000_000_000;
        expected.push(m.id);
        let joined = s.join("r", m.clone(), false, now).await.unwrap();
        assert_eq!(joined.members.last(), Some(&m), "the joiner is last");
        let ids: Vec<MemberId> = joined.members.iter().map(|m| m.id).collect();
        assert_eq!(ids, expected);
    }
}

async fn member_ids_stay_unique_under_concurrent_joins(f: Fixture) {
    let s = f.store().await;
    s.create_room(new_room("r", 100, "")).await.unwrap();
    let now = arthas_store::unix_secs();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.join("r", member(42, &format!("n{i}")), false, now).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(JoinError::IdTaken) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1, "exactly one join with a given id succeeds");
}

async fn capacity_holds_under_concurrent_joins(f: Fixture) {
    // Several relays (connections) race for the seats.
    let stores: Vec<Arc<dyn RoomStore>> = vec![f.store().await, f.store().await, f.store().await];
    stores[0].create_room(new_room("r", 10, "")).await.unwrap();
    let now = arthas_store::unix_secs();
    let tasks: Vec<_> = (0..60u32)
        .map(|n| {
            let s = stores[n as usize % stores.len()].clone();
            tokio::spawn(async move { s.join("r", member(n + 1, "n1"), false, now).await })
        })
        .collect();
    let (mut ok, mut full) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(j) => {
                ok += 1;
                assert!(j.members.len() <= 10);
            }
            Err(JoinError::Full) => full += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, full), (10, 50));
    let more = stores[1].join("r", member(999, "n1"), false, now).await;
    assert_eq!(more.unwrap_err(), JoinError::Full);
}

async fn the_last_leave_destroys_the_room_and_its_listing(f: Fixture) {
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    s.create_room(new_room("r", 5, "")).await.unwrap();
    assert!(s.list_room(listing("r", false), 10).await.unwrap());
    s.join("r", member(1, "n1"), false, now).await.unwrap();
    s.join("r", member(2, "n2"), false, now).await.unwrap();
    let left = s.leave("r", MemberId::from_random(1), "n1").await.unwrap();
    assert_eq!((left.was_member, left.destroyed), (true, false));
    let again = s.leave("r", MemberId::from_random(1), "n1").await.unwrap();
    assert_eq!((again.was_member, again.destroyed), (false, false));
    let left = s.leave("r", MemberId::from_random(2), "n2").await.unwrap();
    assert_eq!((left.was_member, left.destroyed), (true, true));
    assert!(s.room("r").await.unwrap().is_none());
    assert!(s
        .listings(arthas_store::unix_millis())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.join("r", member(3, "n1"), false, now).await.unwrap_err(),
        JoinError::NotFound
    );
    // Destroy is idempotent and removes everything too.
    s.create_room(new_room("d", 5, "")).await.unwrap();
    s.join("d", member(1, "n1"), false, now).await.unwrap();
    s.destroy("d").await.unwrap();
    s.destroy("d").await.unwrap();
    assert!(s.room("d").await.unwrap().is_none());
}

async fn an_expired_room_answers_e007_then_e001_after_the_grace(f: Fixture) {
    let s = f.store().await;
    let now = arthas_store::unix_secs();
    let mut room = new_room("r", 5, "");
    room.record.expires_at = now + 1;
    s.create_room(room).await.unwrap();
    s.join("r", member(1, "n1"), false, now).await.unwrap();
    assert_eq!(
        s.join("r", member(2, "n1"), false, now + 2)
            .await
            .unwrap_err(),
        JoinError::Expired
    );
    let Some(grace) = f.expired_grace() else {
        return; // memory: expired until a relay destroys it
    };
    // Redis: the keys outlive expiresAt by the grace, then vanish.
    let started = std::time::Instant::now();
    eventually("the expired room's keys vanish", || {
        let s = s.clone();
        async move {
            match s
                .join(
                    "r",
                    member(2, "n1"),
                    false,
                    arthas_store::unix_secs().max(now + 2),
                )
                .await
            {
                Err(JoinError::NotFound) => Some(()),
                Err(JoinError::Expired) => None,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(
        arthas_store::unix_secs() > now + 1 + grace.as_secs() as i64 - 1,
        "E001 came before the grace was over ({:?})",
        started.elapsed()
    );
}

async fn an_unjoined_room_vanishes_after_its_ttl(f: Fixture) {
    let s = f.store().await;
    let mut room = new_room("unjoined", 5, "");
    room.unjoined_ttl = Duration::from_millis(200);
    s.create_room(room).await.unwrap();
    assert!(s.room("unjoined").await.unwrap().is_some());
    eventually("the unjoined room vanishes", || {
        let s = s.clone();
        async move {
            // The memory engine drops unjoined rooms when rooms are created.
            let _ = s.create_room(new_room("other", 5, "")).await;
            s.room("unjoined").await.unwrap().is_none().then_some(())
        }
    })
    .await;
}

fn listing(room_id: &str, daily: bool) -> Listing {
    Listing {
        room_id: room_id.into(),
        title: format!("title of {room_id}"),
        description: "a room".into(),
        tags: vec!["rust".into(), "chat".into()],
        share_code: format!("{room_id}:key:0:0"),
        has_password: false,
        created_at: 1_700_000_000,
        expires_at: 0,
        is_daily_topic: daily,
    }
}

async fn listings_count_members_and_recent_activity(f: Fixture) {
    let s = f.store().await;
    let now_secs = arthas_store::unix_secs();
    for id in ["a", "b", "c", "daily"] {
        s.create_room(new_room(id, 5, "")).await.unwrap();
    }
    assert!(s.list_room(listing("a", false), 2).await.unwrap());
    assert!(s.list_room(listing("b", false), 2).await.unwrap());
    assert!(
        !s.list_room(listing("c", false), 2).await.unwrap(),
        "directory full"
    );
    assert!(
        s.list_room(listing("daily", true), 2).await.unwrap(),
        "daily topics always fit"
    );
    assert!(s.room("a").await.unwrap().unwrap().listed);

    s.join("a", member(1, "n1"), false, now_secs).await.unwrap();
    s.join("a", member(2, "n1"), false, now_secs).await.unwrap();
    s.join("b", member(3, "n1"), false, now_secs).await.unwrap();
    let now = arthas_store::unix_millis();
    for _ in 0..3 {
        s.count_activity("a", now).await.unwrap();
    }
    s.count_activity("a", now - 6 * 60 * 1000).await.unwrap(); // outside the window
    s.count_activity("c", now).await.unwrap(); // not listed: not counted

    let mut views = s.listings(now).await.unwrap();
    views.sort_by(|x, y| x.listing.room_id.cmp(&y.listing.room_id));
    let figures: Vec<(&str, u32, u32)> = views
        .iter()
        .map(|v| {
            (
                v.listing.room_id.as_str(),
                v.member_count,
                v.message_count_5min,
            )
        })
        .collect();
    assert_eq!(figures, vec![("a", 2, 3), ("b", 1, 0), ("daily", 0, 0)]);
    assert_eq!(views[0].listing, listing("a", false));
    // Five minutes later the activity is gone.
    let later = s.listings(now + 5 * 60 * 1000 + 1).await.unwrap();
    assert!(later.iter().all(|v| v.message_count_5min == 0));
}

async fn counters_count_per_window_and_claims_are_single_use(f: Fixture) {
    let s = f.store().await;
    let w = Duration::from_secs(60);
    assert_eq!(s.hit("ip:1", 1, w).await.unwrap(), 1);
    assert_eq!(s.hit("ip:1", 2, w).await.unwrap(), 3);
    assert_eq!(s.hit("ip:1", 0, w).await.unwrap(), 3);
    assert_eq!(s.hit("ip:2", 0, w).await.unwrap(), 0);
    assert_eq!(s.hit("zero", 1, Duration::ZERO).await.unwrap(), 1);
    assert_eq!(s.hit("zero", 1, Duration::ZERO).await.unwrap(), 1);
    let short = Duration::from_millis(150);
    assert_eq!(s.hit("short", 5, short).await.unwrap(), 5);
    eventually("the window resets", || {
        let s = s.clone();
        async move { (s.hit("short", 0, short).await.unwrap() == 0).then_some(()) }
    })
    .await;

    assert!(s.claim_once("ticket", w).await.unwrap());
    assert!(!s.claim_once("ticket", w).await.unwrap());
    assert!(s.claim_once("brief", short).await.unwrap());
    eventually("a lapsed claim can be made again", || {
        let s = s.clone();
        async move { s.claim_once("brief", short).await.unwrap().then_some(()) }
    })
    .await;
}

/// Rooms for the presence tests: node A holds a1, a2 in "shared" (with b1
/// of node B) and a3 alone in "lonely".
async fn rooms_on_two_nodes(s: &dyn RoomStore) {
    let now = arthas_store::unix_secs();
    s.create_room(new_room("shared", 10, "")).await.unwrap();
    s.create_room(new_room("lonely", 10, "")).await.unwrap();
    s.join("shared", member(1, "A"), false, now).await.unwrap();
    s.join("shared", member(11, "B"), false, now).await.unwrap();
    s.join("shared", member(2, "A"), false, now).await.unwrap();
    s.join("lonely", member(3, "A"), false, now).await.unwrap();
}

async fn members_of_a_dead_node_are_swept(f: Fixture) {
    let s = f.store().await;
    s.heartbeat("A", Duration::from_millis(300), 3)
        .await
        .unwrap();
    s.heartbeat("B", Duration::from_secs(60), 4).await.unwrap();
    rooms_on_two_nodes(s.as_ref()).await;
    if !f.has_presence() {
        assert_eq!(s.online().await.unwrap(), 4, "one node: its last count");
        assert!(s.sweep_dead_nodes().await.unwrap().is_empty());
        return;
    }
    assert_eq!(s.online().await.unwrap(), 7, "both relays' connections");
    assert!(s.sweep_dead_nodes().await.unwrap().is_empty(), "A is alive");
    let mut departures: Vec<Departure> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while departures.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "A's members not swept: {departures:?}"
        );
        departures.extend(s.sweep_dead_nodes().await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    departures.sort_by_key(|d| (d.room_id.clone(), d.member_id.as_str().to_owned()));
    let dep = |room: &str, n: u32, destroyed: bool| Departure {
        room_id: room.into(),
        member_id: MemberId::from_random(n),
        room_destroyed: destroyed,
    };
    let mut expected = vec![
        dep("lonely", 3, true),
        dep("shared", 1, false),
        dep("shared", 2, false),
    ];
    expected.sort_by_key(|d| (d.room_id.clone(), d.member_id.as_str().to_owned()));
    assert_eq!(departures, expected);
    assert!(s.sweep_dead_nodes().await.unwrap().is_empty(), "swept once");
    assert_eq!(
        s.online().await.unwrap(),
        4,
        "a dead relay's connections no longer count"
    );
    assert!(s.room("lonely").await.unwrap().is_none());
    let left = s
        .join("shared", member(4, "B"), false, arthas_store::unix_secs())
        .await
        .unwrap();
    let ids: Vec<MemberId> = left.members.iter().map(|m| m.id).collect();
    assert_eq!(
        ids,
        vec![MemberId::from_random(11), MemberId::from_random(4)]
    );
}

async fn live_nodes_count_relays_whose_heartbeat_has_not_lapsed(f: Fixture) {
    let s = f.store().await;
    if !f.has_presence() {
        assert_eq!(s.live_nodes().await.unwrap(), 1, "one process is one node");
        return;
    }
    assert_eq!(s.live_nodes().await.unwrap(), 0, "no heartbeat yet");
    s.heartbeat("A", Duration::from_millis(300), 3)
        .await
        .unwrap();
    s.heartbeat("B", Duration::from_secs(60), 4).await.unwrap();
    assert_eq!(s.live_nodes().await.unwrap(), 2);
    eventually("A's heartbeat lapses", || async {
        (s.live_nodes().await.unwrap() == 1).then_some(())
    })
    .await;
}

async fn concurrent_sweepers_get_each_departure_once(f: Fixture) {
    if !f.has_presence() {
        return;
    }
    let s = f.store().await;
    s.heartbeat("A", Duration::from_millis(300), 3)
        .await
        .unwrap();
    s.heartbeat("B", Duration::from_secs(60), 4).await.unwrap();
    let now = arthas_store::unix_secs();
    let mut expected = HashSet::new();
    for r in 0..20u32 {
        let room = format!("room-{r}");
        s.create_room(new_room(&room, 10, "")).await.unwrap();
        for k in 0..2 {
            let n = r * 10 + k + 1;
            s.join(&room, member(n, "A"), false, now).await.unwrap();
            expected.insert((room.clone(), MemberId::from_random(n)));
        }
        if r % 2 == 0 {
            s.join(&room, member(r * 10 + 9, "B"), false, now)
                .await
                .unwrap();
        }
    }
    // Five relays sweep at once, repeatedly, until A's members are gone.
    let mut sweepers = Vec::new();
    for _ in 0..5 {
        sweepers.push(f.store().await);
    }
    let mut seen: Vec<(String, MemberId)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} departures",
            seen.len(),
            expected.len()
        );
        let rounds: Vec<_> = sweepers
            .iter()
            .map(|s| {
                let s = s.clone();
                tokio::spawn(async move { s.sweep_dead_nodes().await })
            })
            .collect();
        for r in rounds {
            for d in r.await.unwrap().unwrap() {
                assert_eq!(
                    d.room_destroyed,
                    d.room_id
                        .trim_start_matches("room-")
                        .parse::<u32>()
                        .unwrap()
                        % 2
                        == 1
                );
                seen.push((d.room_id, d.member_id));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a departure was reported twice");
    assert_eq!(unique, expected);
}

/// A daily topic's room: kept while empty, expiring in an hour.
fn kept_room(id: &str) -> arthas_store::NewRoom {
    let mut room = new_room(id, 5, "");
    room.keep_while_empty = true;
    room.record.expires_at = arthas_store::unix_secs() + 3_600;
    room.unjoined_ttl = Duration::from_millis(50); // ignored: kept rooms need no joiner
    room
}

async fn a_room_kept_while_empty_outlives_its_members(f: Fixture) {
    let s = f.store().await;
    s.create_room(kept_room("kept")).await.unwrap();
    assert!(s
        .list_daily_topic(1, listing("kept", true), WAIT)
        .await
        .unwrap());
    // Nobody has to join it: it is still there well after the unjoined ttl.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = s.create_room(new_room("other", 5, "")).await; // memory sweeps unjoined rooms here
    assert!(
        s.room("kept").await.unwrap().is_some(),
        "kept without a joiner"
    );

    let now = arthas_store::unix_secs();
    s.join("kept", member(1, "n1"), false, now).await.unwrap();
    let left = s
        .leave("kept", MemberId::from_random(1), "n1")
        .await
        .unwrap();
    assert_eq!((left.was_member, left.destroyed), (true, false));
    let views = s.listings(arthas_store::unix_millis()).await.unwrap();
    let figures: Vec<(&str, u32)> = views
        .iter()
        .map(|v| (v.listing.room_id.as_str(), v.member_count))
        .collect();
    assert_eq!(figures, [("kept", 0)], "listed, empty");
    // Joinable again, and a dead relay's sweep does not destroy it either.
    s.heartbeat("A", Duration::from_millis(300), 1)
        .await
        .unwrap();
    let joined = s.join("kept", member(2, "A"), false, now).await.unwrap();
    assert_eq!(joined.members.len(), 1);
    if f.has_presence() {
        let departures = eventually("the dead relay's member is swept", || {
            let s = s.clone();
            async move {
                let d = s.sweep_dead_nodes().await.unwrap();
                (!d.is_empty()).then_some(d)
            }
        })
        .await;
        assert_eq!(departures.len(), 1);
        assert!(!departures[0].room_destroyed);
        assert!(s.room("kept").await.unwrap().is_some());
    }
    // Destroy still ends it, listing and all.
    s.destroy("kept").await.unwrap();
    assert!(s.room("kept").await.unwrap().is_none());
    assert!(s
        .listings(arthas_store::unix_millis())
        .await
        .unwrap()
        .is_empty());
}

async fn one_daily_topic_per_day_under_concurrent_listing(f: Fixture) {
    const RACERS: usize = 8;
    const DAY: i64 = 20_500;
    // Each racer is a gateway of its own (its own Redis connection) with
    // its own candidate room; all list at once.
    let mut racers = Vec::new();
    for i in 0..RACERS {
        let s = f.store().await;
        s.create_room(kept_room(&format!("cand-{i}")))
            .await
            .unwrap();
        racers.push(s);
    }
    let tasks: Vec<_> = racers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.clone();
            tokio::spawn(async move {
                s.list_daily_topic(DAY, listing(&format!("cand-{i}"), true), WAIT)
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        if t.await.unwrap().unwrap() {
            winners.push(format!("cand-{i}"));
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let listed: Vec<String> = racers[0]
        .listings(arthas_store::unix_millis())
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.listing.room_id)
        .collect();
    assert_eq!(listed, winners, "only the winner is listed");
    assert!(racers[0].room(&winners[0]).await.unwrap().unwrap().listed);
    // A later attempt the same day changes nothing; the next day has its own.
    assert!(!racers[1]
        .list_daily_topic(DAY, listing("cand-1", true), WAIT)
        .await
        .unwrap());
    let loser = if winners[0] == "cand-2" {
        "cand-3"
    } else {
        "cand-2"
    };
    assert!(racers[2]
        .list_daily_topic(DAY + 1, listing(loser, true), WAIT)
        .await
        .unwrap());
}

/// The owner hash lives in the room record; secrets change only with it
/// (compare and set), and a hand-over retires the old hash at once.
async fn room_secrets_change_only_with_the_owner_hash(f: Fixture) {
    let s = f.store().await;
    let owner = "a".repeat(64);
    let next = "b".repeat(64);
    let mut room = new_room("owned", 5, "");
    room.owner_hash = owner.clone();
    assert!(s.create_room(room).await.unwrap());
    assert!(s.create_room(new_room("ownerless", 5, "")).await.unwrap());
    assert_eq!(s.owner_hash("owned").await.unwrap(), Some(owner.clone()));
    assert_eq!(
        s.owner_hash("ownerless").await.unwrap(),
        Some(String::new())
    );
    assert_eq!(s.owner_hash("missing").await.unwrap(), None);
    let secrets = |password: &str, owner: &str| RoomSecrets {
        password_hash: password.to_owned(),
        owner_hash: owner.to_owned(),
    };
    assert_eq!(s.secrets("owned").await.unwrap(), Some(secrets("", &owner)));
    assert_eq!(s.secrets("ownerless").await.unwrap(), Some(secrets("", "")));
    assert_eq!(s.secrets("missing").await.unwrap(), None);
    let update = |password: &str, owner: Option<&str>| SecretUpdate {
        password_hash: Some(password.to_owned()),
        owner_hash: owner.map(str::to_owned),
    };
    assert_eq!(
        s.update_room_secrets("missing", &owner, update("h", None))
            .await
            .unwrap(),
        SecretOutcome::NotFound
    );
    assert_eq!(
        s.update_room_secrets("ownerless", "", update("h", None))
            .await
            .unwrap(),
        SecretOutcome::NotOwner
    );
    assert_eq!(
        s.update_room_secrets("owned", &next, update("h", None))
            .await
            .unwrap(),
        SecretOutcome::NotOwner
    );
    assert!(!s.room("owned").await.unwrap().unwrap().has_password());
    assert_eq!(
        s.update_room_secrets("owned", &owner, update("phc", Some(&next)))
            .await
            .unwrap(),
        SecretOutcome::Updated
    );
    assert_eq!(s.room("owned").await.unwrap().unwrap().password_hash, "phc");
    assert_eq!(s.owner_hash("owned").await.unwrap(), Some(next.clone()));
    assert_eq!(
        s.secrets("owned").await.unwrap(),
        Some(secrets("phc", &next))
    );
    let now = arthas_store::unix_secs();
    assert_eq!(
        s.join("owned", member(1, "n1"), false, now)
            .await
            .unwrap_err(),
        JoinError::NeedsPassword,
        "the new password is required from now on"
    );
    assert_eq!(
        s.update_room_secrets("owned", &owner, update("x", None))
            .await
            .unwrap(),
        SecretOutcome::NotOwner,
        "the handed-over hash no longer works"
    );
}

arthas_store::on_engines!(
    [memory, standalone, cluster, sentinel] => [
        join_checks_run_in_reference_order,
        member_list_comes_back_in_join_order,
        member_ids_stay_unique_under_concurrent_joins,
        capacity_holds_under_concurrent_joins,
        the_last_leave_destroys_the_room_and_its_listing,
        an_expired_room_answers_e007_then_e001_after_the_grace,
        an_unjoined_room_vanishes_after_its_ttl,
        listings_count_members_and_recent_activity,
        counters_count_per_window_and_claims_are_single_use,
        members_of_a_dead_node_are_swept,
        live_nodes_count_relays_whose_heartbeat_has_not_lapsed,
        concurrent_sweepers_get_each_departure_once,
        a_room_kept_while_empty_outlives_its_members,
        one_daily_topic_per_day_under_concurrent_listing,
        room_secrets_change_only_with_the_owner_hash,
    ]
);

/// Redis: a joined room's three keys (record, members, node counts) carry the room's lifetime
/// (none, or expiresAt plus the grace) whichever join set it, the first or a later one from a
/// node new to the room; the unjoined room's TTL is gone after the first join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_room_keys_carry_the_room_lifetime() {
    let f = Fixture::standalone().await;
    let common::Backend::Standalone(server) = &f.backend else {
        unreachable!("a standalone fixture");
    };
    let s = f.store().await;
    let grace = f.expired_grace().expect("redis has a grace").as_secs() as i64;
    let now = arthas_store::unix_secs();
    let mut expiring = new_room("exp", 10, "");
    expiring.record.expires_at = now + 3_600;
    s.create_room(expiring).await.unwrap();
    s.create_room(new_room("forever", 10, "")).await.unwrap();
    for room in ["exp", "forever"] {
        s.join(room, member(1, "n1"), false, now).await.unwrap();
        s.join(room, member(2, "n1"), false, now).await.unwrap();
        s.join(room, member(3, "n2"), false, now).await.unwrap();
        s.leave(room, MemberId::from_random(3), "n2").await.unwrap();
        s.join(room, member(4, "n2"), false, now).await.unwrap();
    }
    let expiretime = |key: String| async move {
        match server.command(&["EXPIRETIME", &key]).await {
            Ok(redis::Value::Int(t)) => t,
            other => panic!("EXPIRETIME {key}: {other:?}"),
        }
    };
    for (room, want) in [("exp", now + 3_600 + grace), ("forever", -1)] {
        for key in [
            format!("arthas:{{{room}}}:room"),
            format!("arthas:{{{room}}}:members"),
            format!("arthas:{{{room}}}:nodes"),
        ] {
            assert_eq!(expiretime(key.clone()).await, want, "{key}");
        }
    }
}
