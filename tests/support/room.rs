//! Room-level helpers: create/join with the expected reply sequences checked, and a quick
//! "the room still chats" check used after every kind of bad input.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};

use rmpv::Value;

use super::client::{t, Client};
use super::msg::ValueExt;
use super::server::Env;
use crate::map;

/// A connected client that is in a room.
pub struct Member {
    /// The connection.
    pub client: Client,
    /// The member id the server assigned (last entry of RoomJoined.members).
    pub id: String,
    /// The display name.
    pub name: String,
    /// The colour the server assigned.
    pub color: String,
    /// The room the member is in.
    pub room_id: String,
}

impl Deref for Member {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Member {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// A string unique within the test process (for ciphertexts, transfer ids, ...).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// CreateRoom data as the web client sends it for a private room without a password.
pub fn create_data(name: &str) -> Value {
    map! {"name" => name, "password" => "", "ephemeral" => 0, "expiry" => 0}
}

/// JoinRoom data.
pub fn join_data(room_id: &str, name: &str, password: &str) -> Value {
    map! {"roomId" => room_id, "name" => name, "password" => password}
}

/// Sends CreateRoom with `data` on `client` and checks RoomCreated then RoomJoined (same roomId,
/// the creator as the only member). Returns (RoomCreated data, RoomJoined data).
pub async fn create_on(client: &mut Client, data: Value) -> (Value, Value) {
    client.send(t::CREATE_ROOM, data).await;
    let created = client.expect(t::ROOM_CREATED).await;
    let joined = client.expect(t::ROOM_JOINED).await;
    assert_eq!(
        created.str("roomId"),
        joined.str("roomId"),
        "RoomCreated and RoomJoined name different rooms"
    );
    assert_eq!(
        joined.array("members").len(),
        1,
        "a new room has only its creator: {joined}"
    );
    (created, joined)
}

/// Turns a client and its RoomJoined into a `Member` (the last member is the client itself).
pub fn member_from(mut client: Client, joined: &Value) -> Member {
    let me = joined
        .array("members")
        .last()
        .unwrap_or_else(|| panic!("RoomJoined without members: {joined}"))
        .clone();
    client.label = me.str("name").to_string();
    Member {
        client,
        id: me.str("id").to_string(),
        name: me.str("name").to_string(),
        color: me.str("color").to_string(),
        room_id: joined.str("roomId").to_string(),
    }
}

/// Connects to `node` and creates a room with `data`. Returns the member, RoomCreated and RoomJoined.
pub async fn create_room_with(env: &Env, node: usize, data: Value) -> (Member, Value, Value) {
    let mut client = Client::connect(&env.ws_url(node)).await;
    let (created, joined) = create_on(&mut client, data).await;
    (member_from(client, &joined), created, joined)
}

/// Connects to `node` and creates a plain room as `name`.
pub async fn create_room(env: &Env, node: usize, name: &str) -> Member {
    create_room_with(env, node, create_data(name)).await.0
}

/// Connects to `node` and joins `room_id`; checks RoomJoined (joiner last) and returns it.
/// The existing members' MemberJoined frames are left for the caller.
pub async fn join_room(
    env: &Env,
    node: usize,
    room_id: &str,
    name: &str,
    password: &str,
) -> (Member, Value) {
    let mut client = Client::connect(&env.ws_url(node)).await;
    client.label = name.to_string();
    client
        .send(t::JOIN_ROOM, join_data(room_id, name, password))
        .await;
    let joined = client.expect(t::ROOM_JOINED).await;
    assert_eq!(joined.str("roomId"), room_id);
    let last = joined
        .array("members")
        .last()
        .expect("members not empty")
        .clone();
    assert_eq!(
        last.str("name"),
        name,
        "the joiner must be the last member: {joined}"
    );
    (member_from(client, &joined), joined)
}

/// Every member in `existing` must receive MemberJoined for `joiner` next.
pub async fn expect_member_joined(existing: &mut [&mut Member], joiner: &Member) {
    for m in existing.iter_mut() {
        let data = m.expect(t::MEMBER_JOINED).await;
        assert_eq!(
            data.str("id"),
            joiner.id,
            "{}: MemberJoined for the wrong member",
            m.name
        );
        assert_eq!(data.str("name"), joiner.name);
        assert_eq!(data.str("color"), joiner.color);
    }
}

/// Opens a room of `N` members named m0..m{N-1}; member i connects to node i. Every
/// MemberJoined is consumed, so all members start with nothing pending.
pub async fn open_room<const N: usize>(env: &Env) -> [Member; N] {
    open_room_with(env, create_data("m0"), "").await
}

/// Like `open_room`, creating the room with `data` (whose name should be "m0") and joining
/// with `password`.
pub async fn open_room_with<const N: usize>(env: &Env, data: Value, password: &str) -> [Member; N] {
    assert!(N >= 1);
    let (first, _, _) = create_room_with(env, 0, data).await;
    let room_id = first.room_id.clone();
    let mut members = vec![first];
    for i in 1..N {
        let (m, _) = join_room(env, i, &room_id, &format!("m{i}"), password).await;
        let mut refs: Vec<&mut Member> = members.iter_mut().collect();
        expect_member_joined(&mut refs, &m).await;
        members.push(m);
    }
    match members.try_into() {
        Ok(arr) => arr,
        Err(_) => unreachable!("exactly N members were pushed"),
    }
}

/// `from` sends a chat message; every member of `to` must receive it as its next frame.
/// Returns the ciphertext used.
pub async fn say(from: &mut Member, to: &mut [&mut Member]) -> String {
    let iv = unique("iv");
    let ciphertext = unique("ct");
    from.send(
        t::SEND_MESSAGE,
        map! {"iv" => iv.as_str(), "ciphertext" => ciphertext.as_str()},
    )
    .await;
    for m in to.iter_mut() {
        expect_message(m, from, &iv, &ciphertext).await;
    }
    ciphertext
}

/// The next frame of `to` must be `from`'s RelayMessage with this iv and ciphertext.
pub async fn expect_message(to: &mut Member, from: &Member, iv: &str, ciphertext: &str) {
    let data = to.expect(t::RELAY_MESSAGE).await;
    assert_eq!(
        data.str("senderId"),
        from.id,
        "{}: message from the wrong sender",
        to.name
    );
    assert_eq!(data.str("senderName"), from.name);
    assert_eq!(data.str("iv"), iv);
    assert_eq!(data.str("ciphertext"), ciphertext);
}

/// The room still works: each member in turn says something and all the others get it.
pub async fn assert_room_chats(members: &mut [&mut Member]) {
    for i in 0..members.len() {
        let (before, rest) = members.split_at_mut(i);
        let (sender, after) = rest.split_first_mut().expect("i < len");
        let mut others: Vec<&mut Member> = before
            .iter_mut()
            .chain(after.iter_mut())
            .map(|m| &mut **m)
            .collect();
        say(sender, &mut others).await;
    }
}
