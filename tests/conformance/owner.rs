//! The room-owner extension (PROTOCOL.md §0 "Extension: room owner, kick, directed messages";
//! docs/SECURITY.md §5): the owner capability, kicks across relays, directed messages, and
//! the owner's password change and hand-over. Members sit on nodes 0, 1, 2 (three relays in
//! the redis topologies).

use rmpv::Value;

use crate::map;
use crate::support::msg::{assert_keys, password_hash};
use crate::support::room::{create_room_with, expect_member_joined, join_data, join_room, Member};
use crate::support::{assert_room_chats, t, Client, Env, ValueExt};

/// An owner secret (64 lowercase hex characters) from a seed.
fn secret(seed: &str) -> String {
    password_hash(seed)
}

/// CreateRoom data with an owner hash.
fn owned_room(name: &str, owner_secret: &str) -> Value {
    map! {"name" => name, "password" => "", "ephemeral" => 0, "expiry" => 0,
    "ownerHash" => password_hash(owner_secret)}
}

/// An owned room of three members, m0 (the owner) on node 0, m1 on node 1, m2 on node 2.
async fn owned_trio(env: &Env, owner_secret: &str) -> [Member; 3] {
    let (owner, _, _) = create_room_with(env, 0, owned_room("m0", owner_secret)).await;
    let room_id = owner.room_id.clone();
    let mut members = vec![owner];
    for i in 1..3 {
        let (m, _) = join_room(env, i, &room_id, &format!("m{i}"), "").await;
        let mut refs: Vec<&mut Member> = members.iter_mut().collect();
        expect_member_joined(&mut refs, &m).await;
        members.push(m);
    }
    match members.try_into() {
        Ok(trio) => trio,
        Err(_) => unreachable!("three members were pushed"),
    }
}

fn kick(owner_secret: &str, id: &str) -> Value {
    map! {"owner" => owner_secret, "id" => id}
}

#[tokio::test]
async fn a_kicked_member_leaves_with_the_reason_on_every_relay() {
    let env = Env::start().await;
    let owner_secret = secret("owner");
    let [mut a, mut b, mut c] = owned_trio(&env, &owner_secret).await;
    a.send(t::KICK, kick(&owner_secret, &b.id)).await;
    let closed = b.expect(t::ROOM_CLOSED).await;
    assert_eq!(closed.str("reason"), "kicked");
    for m in [&mut a, &mut c] {
        let left = m.expect(t::MEMBER_LEFT).await;
        assert_eq!(left.str("id"), b.id);
        assert_eq!(left.str("reason"), "kicked");
    }
    // The others keep chatting; the kicked connection receives none of it and is out of
    // the room (its connection stays open).
    assert_room_chats(&mut [&mut a, &mut c]).await;
    b.sync().await;
    b.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "c"})
        .await;
    b.expect_error("E003", "not in a room").await;
    // It may join again (the room's join secret is the owner's to change, below).
    b.send(t::JOIN_ROOM, join_data(&a.room_id, "m1", "")).await;
    b.expect(t::ROOM_JOINED).await;
}

#[tokio::test]
async fn rekeyed_is_the_reason_a_client_without_rotation_is_shown() {
    let env = Env::start().await;
    let owner_secret = secret("owner");
    let [mut a, mut b, mut c] = owned_trio(&env, &owner_secret).await;
    a.send(
        t::KICK,
        map! {"owner" => owner_secret.as_str(), "id" => c.id.as_str(), "reason" => "rekeyed"},
    )
    .await;
    assert_eq!(c.expect(t::ROOM_CLOSED).await.str("reason"), "rekeyed");
    for m in [&mut a, &mut b] {
        let left = m.expect(t::MEMBER_LEFT).await;
        assert_keys(&left, &["id", "reason"]);
        assert_eq!(left.str("reason"), "rekeyed");
    }
}

#[tokio::test]
async fn a_kick_needs_the_owner_secret() {
    let env = Env::start().await;
    let owner_secret = secret("owner");
    let [mut a, mut b, mut c] = owned_trio(&env, &owner_secret).await;
    // Another member, a wrong secret, a malformed one, a bad id, a bad reason.
    b.send(t::KICK, kick(&secret("guess"), &c.id)).await;
    b.expect_error("E008", "not the room owner").await;
    b.send(t::KICK, kick("short", &c.id)).await;
    b.expect_error("E005", "owner must be 64 hex characters")
        .await;
    b.send(t::KICK, kick(&owner_secret.to_uppercase(), &c.id))
        .await;
    b.expect_error("E005", "owner must be 64 hex characters")
        .await;
    a.send(t::KICK, kick(&owner_secret, "nobody")).await;
    a.expect_error("E005", "invalid member id").await;
    a.send(
        t::KICK,
        map! {"owner" => owner_secret.as_str(), "id" => c.id.as_str(), "reason" => "because"},
    )
    .await;
    a.expect_error("E005", "invalid kick reason").await;
    a.send(t::KICK, Value::from("not a map")).await;
    a.expect_error("E005", "invalid kick data").await;
    // Nobody left.
    assert_room_chats(&mut [&mut a, &mut b, &mut c]).await;
    // Outside a room.
    let mut stranger = Client::connect(&env.ws_url(1)).await;
    stranger.send(t::KICK, kick(&owner_secret, &c.id)).await;
    stranger.expect_error("E003", "not in a room").await;
}

#[tokio::test]
async fn a_room_created_without_an_owner_has_none() {
    let env = Env::start().await;
    let (mut a, _, _) = create_room_with(
        &env,
        0,
        map! {"name" => "m0", "password" => "", "ephemeral" => 0, "expiry" => 0},
    )
    .await;
    let (b, _) = join_room(&env, 1, &a.room_id, "m1", "").await;
    expect_member_joined(&mut [&mut a], &b).await;
    a.send(t::KICK, kick(&secret(""), &b.id)).await;
    a.expect_error("E008", "not the room owner").await;
    a.send(
        t::SET_ROOM_SECRET,
        map! {"owner" => secret("x").as_str(), "password" => password_hash("p").as_str()},
    )
    .await;
    a.expect_error("E008", "not the room owner").await;
    // A malformed owner hash at creation is refused.
    let mut c = Client::connect(&env.ws_url(2)).await;
    c.send(
        t::CREATE_ROOM,
        map! {"name" => "c", "password" => "", "ownerHash" => "abc"},
    )
    .await;
    c.expect_error("E005", "invalid ownerHash").await;
}

#[tokio::test]
async fn a_directed_message_reaches_one_member_on_any_relay() {
    let env = Env::start().await;
    let owner_secret = secret("owner");
    let [mut a, mut b, mut c] = owned_trio(&env, &owner_secret).await;
    a.send(
        t::SEND_DIRECT,
        map! {"to" => c.id.as_str(), "iv" => "iv-1", "ciphertext" => "ct-1"},
    )
    .await;
    let direct = c.expect(t::RELAY_DIRECT).await;
    assert_keys(&direct, &["senderId", "iv", "ciphertext", "t"]);
    assert_eq!(direct.str("senderId"), a.id);
    assert_eq!(direct.str("ciphertext"), "ct-1");
    b.sync().await;
    a.sync().await;
    // Bounds: the size limit, the id, the fields; a member not in the room gets nothing.
    let big = "x".repeat(65_537);
    a.send(
        t::SEND_DIRECT,
        map! {"to" => c.id.as_str(), "iv" => "iv", "ciphertext" => big.as_str()},
    )
    .await;
    a.expect_error("E005", "direct message too large").await;
    a.send(
        t::SEND_DIRECT,
        map! {"to" => "zz", "iv" => "iv", "ciphertext" => "ct"},
    )
    .await;
    a.expect_error("E005", "invalid member id").await;
    a.send(t::SEND_DIRECT, map! {"to" => c.id.as_str(), "iv" => ""})
        .await;
    a.expect_error("E005", "iv and ciphertext must be non-empty strings")
        .await;
    a.send(
        t::SEND_DIRECT,
        map! {"to" => "0badc0de", "iv" => "iv", "ciphertext" => "ct"},
    )
    .await;
    a.sync().await;
    for m in [&mut b, &mut c] {
        m.sync().await;
    }
}

#[tokio::test]
async fn the_owner_changes_the_join_password_and_hands_over() {
    let env = Env::start().await;
    let owner_secret = secret("owner");
    let [mut a, mut b, mut c] = owned_trio(&env, &owner_secret).await;
    let new_password = password_hash("derived from the new key");
    a.send(
        t::SET_ROOM_SECRET,
        map! {"owner" => owner_secret.as_str(), "password" => new_password.as_str()},
    )
    .await;
    let set = a.expect(t::ROOM_SECRET_SET).await;
    assert!(set.boolean("password"));
    assert!(!set.boolean("owner"));
    // The old way in (no password) and a wrong one are refused; the new one joins.
    let mut d = Client::connect(&env.ws_url(1)).await;
    d.send(t::JOIN_ROOM, join_data(&a.room_id, "d", "")).await;
    d.expect_error("E006", "wrong password").await;
    let (e, joined) = join_room(&env, 2, &a.room_id, "e", &new_password).await;
    assert!(joined.boolean("hasPassword"));
    expect_member_joined(&mut [&mut a, &mut b, &mut c], &e).await;
    // Hand-over to c: the old secret stops working, the new one works.
    let next_secret = secret("next owner");
    a.send(
        t::SET_ROOM_SECRET,
        map! {"owner" => owner_secret.as_str(), "ownerHash" => password_hash(&next_secret).as_str()},
    )
    .await;
    let set = a.expect(t::ROOM_SECRET_SET).await;
    assert!(!set.boolean("password"));
    assert!(set.boolean("owner"));
    a.send(t::KICK, kick(&owner_secret, &b.id)).await;
    a.expect_error("E008", "not the room owner").await;
    c.send(t::KICK, kick(&next_secret, &b.id)).await;
    assert_eq!(b.expect(t::ROOM_CLOSED).await.str("reason"), "kicked");
    assert_eq!(c.expect(t::MEMBER_LEFT).await.str("id"), b.id);
    // Malformed requests.
    c.send(
        t::SET_ROOM_SECRET,
        map! {"owner" => next_secret.as_str(), "password" => "short"},
    )
    .await;
    c.expect_error("E005", "invalid password format").await;
    c.send(
        t::SET_ROOM_SECRET,
        map! {"owner" => next_secret.as_str(), "ownerHash" => "ABC"},
    )
    .await;
    c.expect_error("E005", "invalid ownerHash").await;
}

#[tokio::test]
async fn an_ordinary_leave_carries_no_reason() {
    let env = Env::start().await;
    let owner_secret = secret("owner");
    let [mut a, mut b, c] = owned_trio(&env, &owner_secret).await;
    let c_id = c.id.clone();
    drop(c);
    for m in [&mut a, &mut b] {
        let left = m.expect(t::MEMBER_LEFT).await;
        assert_keys(&left, &["id"]);
        assert_eq!(left.str("id"), c_id);
    }
}

#[tokio::test]
async fn a_room_created_over_http_with_an_owner_hash_has_that_owner() {
    let env = Env::start().await;
    let owner_secret = secret("http owner");
    let url = format!("{}/v1/rooms", env.http_url(0));
    let created = crate::support::http::post_json(
        &url,
        &serde_json::json!({"ownerHash": password_hash(&owner_secret)}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let room_id = created.json()["roomId"].as_str().unwrap().to_owned();
    let (mut a, _) = join_room(&env, 0, &room_id, "a", "").await;
    let (mut b, _) = join_room(&env, 1, &room_id, "b", "").await;
    expect_member_joined(&mut [&mut a], &b).await;
    a.send(t::KICK, kick(&owner_secret, &b.id)).await;
    assert_eq!(b.expect(t::ROOM_CLOSED).await.str("reason"), "kicked");
    let refused =
        crate::support::http::post_json(&url, &serde_json::json!({"ownerHash": "nope"})).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
}

#[tokio::test]
async fn a_kicked_members_transfer_is_cancelled_for_the_others_before_it_leaves() {
    let env = Env::start().await;
    let owner_secret = secret("owner");
    let [mut a, mut b, mut c] = owned_trio(&env, &owner_secret).await;
    b.send(
        t::FILE_META,
        crate::conformance::files::meta("kicked-transfer"),
    )
    .await;
    for m in [&mut a, &mut c] {
        assert_eq!(
            m.expect(t::RELAY_FILE_META).await.str("transferId"),
            "kicked-transfer"
        );
    }
    a.send(t::KICK, kick(&owner_secret, &b.id)).await;
    assert_eq!(b.expect(t::ROOM_CLOSED).await.str("reason"), "kicked");
    for m in [&mut a, &mut c] {
        let cancel = m.expect(t::RELAY_FILE_CANCEL).await;
        assert_eq!(cancel.str("senderId"), b.id);
        assert_eq!(cancel.str("transferId"), "kicked-transfer");
        let left = m.expect(t::MEMBER_LEFT).await;
        assert_eq!(left.str("id"), b.id);
    }
    // The kicked connection may start over elsewhere: its transfer is gone.
    b.send(t::CREATE_ROOM, crate::support::room::create_data("b"))
        .await;
    b.expect(t::ROOM_CREATED).await;
    b.expect(t::ROOM_JOINED).await;
    b.send(t::FILE_META, crate::conformance::files::meta("fresh"))
        .await;
    // Accepted (no "already has active transfer"): the next frame is the reply to this.
    b.send(t::CREATE_ROOM, map! {"name" => "", "password" => ""})
        .await;
    b.expect_error("E005", "already in a room").await;
}
