//! What the relays need to heal the store (relay::heal): `node_state` tells a relay that Redis
//! lost its state or swept it, and `restore_room` writes back what a relay holds, on a real
//! standalone Redis and a real 3-master Redis Cluster emptied with FLUSHALL.

mod common;

use std::time::Duration;

use arthas_store::{
    Listing, MemberRecord, MemberRestored, NodeState, RoomRestore, RoomRestored, RoomStore,
};
use common::{member, new_room, Backend, Fixture, WAIT};
use protocol::member::MemberId;
use tokio::time::Instant;

/// FLUSHALL on every server: Redis came back empty.
async fn flush(f: &Fixture) {
    let servers: Vec<&arthas_store::testing::RedisServer> = match &f.backend {
        Backend::Standalone(s) => vec![s],
        Backend::Cluster(c) => c.nodes.iter().collect(),
        _ => unreachable!("a Redis fixture"),
    };
    for server in servers {
        server.command(&["FLUSHALL"]).await.expect("FLUSHALL");
    }
}

fn restore(
    record: &arthas_store::RoomRecord,
    members: Vec<MemberRecord>,
    node: &str,
) -> RoomRestore {
    RoomRestore {
        record: record.clone(),
        owner_hash: OWNER.into(),
        listing: None,
        members,
        node: node.into(),
        now_secs: arthas_store::unix_secs(),
    }
}

/// The owner hash every restore here writes back (extension).
const OWNER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn ids(members: &[MemberRecord]) -> Vec<MemberId> {
    members.iter().map(|m| m.id).collect()
}

/// First check: lost (nothing recorded yet); then known; after FLUSHALL lost again; after
/// another relay swept the node as dead, swept.
async fn node_state_tells_lost_from_swept(f: Fixture) {
    let a = f.redis_engine().await;
    let b = f.redis_engine().await;
    assert_eq!(a.node_state("A").await.unwrap(), NodeState::Lost);
    assert_eq!(a.node_state("A").await.unwrap(), NodeState::Known);
    flush(&f).await;
    assert_eq!(a.node_state("A").await.unwrap(), NodeState::Lost);
    assert_eq!(a.node_state("A").await.unwrap(), NodeState::Known);
    // A relay whose heartbeat lapses is swept by another.
    a.heartbeat("A", Duration::from_millis(200), 1)
        .await
        .unwrap();
    let now = arthas_store::unix_secs();
    a.create_room(new_room("r", 10, "")).await.unwrap();
    a.join("r", member(1, "A"), false, now).await.unwrap();
    b.join("r", member(2, "B"), false, now).await.unwrap();
    b.heartbeat("B", Duration::from_secs(60), 1).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if !b.sweep_dead_nodes().await.unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "A not swept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.node_state("A").await.unwrap(), NodeState::Swept);
    assert_eq!(a.node_state("A").await.unwrap(), NodeState::Known);
}

/// Two relays hold a password room with an expiry (A: members 1 and 3, B: member 2, joined in
/// that order). Redis is flushed. A restores first (record recreated), a newcomer joins
/// through B, then B restores: the record is back with its expiry, capacity and verifier, the
/// list is 1, 2, 3 then the newcomer, and B is told the newcomer joined since the loss. A
/// second restore changes nothing. The node room sets are back: when A dies, the sweep
/// removes A's members.
async fn restore_writes_back_rooms_and_members(f: Fixture) {
    let a = f.redis_engine().await;
    let b = f.redis_engine().await;
    let now = arthas_store::unix_secs();
    let mut room = new_room("healed", 5, "$argon2id$v=19$fake");
    room.record.expires_at = now + 3_600;
    let record = room.record.clone();
    a.create_room(room).await.unwrap();
    let (m1, mut m2, mut m3) = (member(1, "A"), member(2, "B"), member(3, "A"));
    m2.joined_at = m1.joined_at + 1;
    m3.joined_at = m1.joined_at + 2;
    a.join("healed", m1.clone(), true, now).await.unwrap();
    b.join("healed", m2.clone(), true, now).await.unwrap();
    a.join("healed", m3.clone(), true, now).await.unwrap();
    flush(&f).await;
    assert!(a.room("healed").await.unwrap().is_none());

    let restored = a
        .restore_room(restore(&record, vec![m1.clone(), m3.clone()], "A"))
        .await
        .unwrap();
    assert_eq!(restored.room, RoomRestored::Recreated);
    assert_eq!(
        restored.members,
        vec![
            (m1.id, MemberRestored::Added),
            (m3.id, MemberRestored::Added)
        ]
    );
    assert!(restored.joined_since_loss.is_empty());
    assert_eq!(a.room("healed").await.unwrap().as_ref(), Some(&record));
    // The owner hash came back with the record (kicks work again).
    assert_eq!(
        a.owner_hash("healed").await.unwrap().as_deref(),
        Some(OWNER)
    );
    // A joiner before B restored: the store lists A's members only (yet).
    let newcomer = member(4, "B");
    let joined = b
        .join("healed", newcomer.clone(), true, arthas_store::unix_secs())
        .await
        .unwrap();
    assert_eq!(ids(&joined.members), vec![m1.id, m3.id, newcomer.id]);
    let restored = b
        .restore_room(restore(&record, vec![m2.clone()], "B"))
        .await
        .unwrap();
    assert_eq!(restored.room, RoomRestored::Kept);
    assert_eq!(restored.members, vec![(m2.id, MemberRestored::Added)]);
    assert_eq!(restored.joined_since_loss, vec![newcomer.id]);
    let again = a
        .restore_room(restore(&record, vec![m1.clone(), m3.clone()], "A"))
        .await
        .unwrap();
    assert_eq!(
        again.members,
        vec![
            (m1.id, MemberRestored::Present),
            (m3.id, MemberRestored::Present)
        ]
    );
    // Join order, the newcomer last; a password is still needed.
    let late = member(5, "B");
    let joined = b
        .join("healed", late.clone(), true, arthas_store::unix_secs())
        .await
        .unwrap();
    assert_eq!(
        ids(&joined.members),
        vec![m1.id, m2.id, m3.id, newcomer.id, late.id]
    );
    assert_eq!(joined.room, record);
    assert_eq!(
        b.join("healed", member(6, "B"), false, now)
            .await
            .unwrap_err(),
        arthas_store::JoinError::NeedsPassword
    );
    // Full now (capacity 5): a restore of a sixth member is refused.
    let restored = a
        .restore_room(restore(&record, vec![member(7, "A")], "A"))
        .await
        .unwrap();
    assert_eq!(
        restored.members,
        vec![(MemberId::from_random(7), MemberRestored::Full)]
    );
    // A's node set is back: A's death sweeps its two members.
    a.heartbeat("A", Duration::from_millis(200), 1)
        .await
        .unwrap();
    b.heartbeat("B", Duration::from_secs(60), 1).await.unwrap();
    let mut swept = Vec::new();
    let deadline = Instant::now() + WAIT;
    while swept.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "A's members not swept: {swept:?}"
        );
        swept.extend(b.sweep_dead_nodes().await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.member_count("healed").await.unwrap(), Some(3));
}

/// A listed room comes back into the directory; an expired room is not restored.
async fn restore_relists_and_skips_expired_rooms(f: Fixture) {
    let a = f.redis_engine().await;
    let now = arthas_store::unix_secs();
    let mut room = new_room("listed", 10, "");
    room.record.listed = true;
    let record = room.record.clone();
    a.create_room(room).await.unwrap();
    let listing = Listing {
        room_id: "listed".into(),
        title: "Back again".into(),
        description: String::new(),
        tags: vec!["heal".into()],
        share_code: "listed:a2V5:0:0".into(),
        has_password: false,
        created_at: now,
        expires_at: 0,
        is_daily_topic: false,
    };
    assert!(a.list_room(listing.clone(), 10).await.unwrap());
    a.join("listed", member(1, "A"), false, now).await.unwrap();
    assert_eq!(a.listing("listed").await.unwrap(), Some(listing.clone()));
    flush(&f).await;
    assert!(a
        .listings(arthas_store::unix_millis())
        .await
        .unwrap()
        .is_empty());
    let mut r = restore(&record, vec![member(1, "A")], "A");
    r.listing = Some(listing.clone());
    assert_eq!(
        a.restore_room(r).await.unwrap().room,
        RoomRestored::Recreated
    );
    let views = a.listings(arthas_store::unix_millis()).await.unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].listing, listing);
    assert_eq!(views[0].member_count, 1);

    let mut expired = new_room("expired", 10, "").record;
    expired.expires_at = now - 10;
    let restored = a
        .restore_room(restore(&expired, vec![member(2, "A")], "A"))
        .await
        .unwrap();
    assert_eq!(restored.room, RoomRestored::Expired);
    assert!(a.room("expired").await.unwrap().is_none());
}

arthas_store::on_engines!(
    [standalone, cluster] => [
        node_state_tells_lost_from_swept,
        restore_writes_back_rooms_and_members,
        restore_relists_and_skips_expired_rooms,
    ]
);
