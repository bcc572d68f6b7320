//! Password rooms (PROTOCOL.md §3 with its guess limits, §2.1 step 4, §2.2 steps 5-6).

use crate::map;
use crate::support::msg::password_hash;
use crate::support::room::{
    create_data, create_on, create_room_with, expect_member_joined, join_data, join_room,
};
use crate::support::{assert_room_chats, open_room_with, t, Client, Env, Opts, ValueExt};

const TOO_MANY: &str = "too many wrong passwords, try again later";

/// `c` asks to join `room_id` as `name` with `password` (plain, sent as its SHA-256 hex).
async fn guess(c: &mut Client, room_id: &str, name: &str, password: &str) {
    c.send(
        t::JOIN_ROOM,
        join_data(room_id, name, &password_hash(password)),
    )
    .await;
}

fn password_room(name: &str, hash: &str) -> rmpv::Value {
    map! {"name" => name, "password" => hash, "ephemeral" => 0, "expiry" => 0}
}

#[tokio::test]
async fn password_room_reports_has_password_to_the_creator() {
    let env = Env::start().await;
    let (_, _, joined) =
        create_room_with(&env, 0, password_room("a", &password_hash("s3cret"))).await;
    assert!(joined.boolean("hasPassword"));
}

#[tokio::test]
async fn join_with_the_right_password_joins() {
    let env = Env::start().await;
    let hash = password_hash("s3cret");
    let (mut a, _, _) = create_room_with(&env, 0, password_room("a", &hash)).await;
    let (b, joined) = join_room(&env, 1, &a.room_id, "b", &hash).await;
    assert!(joined.boolean("hasPassword"));
    assert_eq!(joined.array("members").len(), 2);
    expect_member_joined(&mut [&mut a], &b).await;
}

#[tokio::test]
async fn join_wrong_password_gets_e006() {
    let env = Env::start().await;
    let (mut a, _, _) =
        create_room_with(&env, 0, password_room("a", &password_hash("right"))).await;
    let mut c = Client::connect(&env.ws_url(1)).await;
    guess(&mut c, &a.room_id, "c", "wrong").await;
    c.expect_error("E006", "wrong password").await;
    // The room saw nothing, and c is free to try again.
    a.sync().await;
    guess(&mut c, &a.room_id, "c", "right").await;
    c.expect(t::ROOM_JOINED).await;
}

#[tokio::test]
async fn join_without_a_password_to_a_password_room_gets_e006() {
    let env = Env::start().await;
    let (a, _, _) = create_room_with(&env, 0, password_room("a", &password_hash("right"))).await;
    let mut c = Client::connect(&env.ws_url(1)).await;
    c.send(t::JOIN_ROOM, join_data(&a.room_id, "c", "")).await;
    c.expect_error("E006", "wrong password").await;
    c.send(
        t::JOIN_ROOM,
        map! {"roomId" => a.room_id.as_str(), "name" => "c"},
    )
    .await;
    c.expect_error("E006", "wrong password").await;
}

#[tokio::test]
async fn password_comparison_is_exact_so_uppercase_hex_is_wrong() {
    let env = Env::start().await;
    let hash = password_hash("right");
    let (a, _, _) = create_room_with(&env, 0, password_room("a", &hash)).await;
    let mut c = Client::connect(&env.ws_url(1)).await;
    c.send(
        t::JOIN_ROOM,
        join_data(&a.room_id, "c", &hash.to_uppercase()),
    )
    .await;
    c.expect_error("E006", "wrong password").await;
}

#[tokio::test]
async fn plain_text_password_is_not_the_credential() {
    let env = Env::start().await;
    let (a, _, _) = create_room_with(&env, 0, password_room("a", &password_hash("right"))).await;
    let mut c = Client::connect(&env.ws_url(1)).await;
    c.send(t::JOIN_ROOM, join_data(&a.room_id, "c", "right"))
        .await;
    c.expect_error("E006", "wrong password").await;
}

#[tokio::test]
async fn create_with_63_char_password_gets_invalid_password_format() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    let hash = password_hash("x");
    c.send(t::CREATE_ROOM, password_room("a", &hash[..63]))
        .await;
    c.expect_error("E005", "invalid password format").await;
    c.send(t::CREATE_ROOM, password_room("a", &format!("{hash}0")))
        .await;
    c.expect_error("E005", "invalid password format").await;
    c.send(t::CREATE_ROOM, password_room("a", "short")).await;
    c.expect_error("E005", "invalid password format").await;
    // Nothing was created: the client is free to create.
    create_on(&mut c, create_data("a")).await;
}

#[tokio::test]
async fn any_64_byte_password_is_accepted_hex_or_not() {
    let env = Env::start().await;
    let odd = "z".repeat(64);
    let (a, _, joined) = create_room_with(&env, 0, password_room("a", &odd)).await;
    assert!(joined.boolean("hasPassword"));
    let (_, joined_b) = join_room(&env, 1, &a.room_id, "b", &odd).await;
    assert!(joined_b.boolean("hasPassword"));
}

#[tokio::test]
async fn unknown_room_is_checked_before_the_password() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(
        t::JOIN_ROOM,
        join_data("AAAAAAAAAAAAAAAAAAAAA", "c", &password_hash("x")),
    )
    .await;
    c.expect_error("E001", "room not found").await;
}

#[tokio::test]
async fn password_is_checked_before_capacity() {
    let env = Env::start_with(Opts::new().flag("--max-room-members", 2)).await;
    let hash = password_hash("right");
    let [a, _b] = open_room_with::<2>(&env, password_room("m0", &hash), &hash).await;
    let mut c = Client::connect(&env.ws_url(2)).await;
    guess(&mut c, &a.room_id, "c", "wrong").await;
    c.expect_error("E006", "wrong password").await;
    c.send(t::JOIN_ROOM, join_data(&a.room_id, "c", &hash))
        .await;
    c.expect_error("E002", "room is full").await;
}

#[tokio::test]
async fn wrong_guesses_beyond_the_room_ip_limit_get_e004() {
    let env = Env::start_with(Opts::new().flag("--max-password-guesses-per-room-ip", 3)).await;
    let hash = password_hash("right");
    let [mut a, mut b] = open_room_with::<2>(&env, password_room("m0", &hash), &hash).await;
    let mut c = Client::connect(&env.ws_url(2)).await;
    for i in 0..3 {
        c.send(
            t::JOIN_ROOM,
            join_data(&a.room_id, "c", &password_hash(&format!("guess{i}"))),
        )
        .await;
        c.expect_error("E006", "wrong password").await;
    }
    guess(&mut c, &a.room_id, "c", "guess3").await;
    c.expect_error("E004", TOO_MANY).await;
    // The members are not affected.
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn room_ip_guess_limit_counts_guesses_from_every_connection() {
    let env = Env::start_with(Opts::new().flag("--max-password-guesses-per-room-ip", 2)).await;
    let hash = password_hash("right");
    let (a, _, _) = create_room_with(&env, 0, password_room("a", &hash)).await;
    for node in 0..2 {
        let mut c = Client::connect(&env.ws_url(node)).await;
        guess(&mut c, &a.room_id, "c", "nope").await;
        c.expect_error("E006", "wrong password").await;
    }
    let mut c = Client::connect(&env.ws_url(2)).await;
    guess(&mut c, &a.room_id, "c", "nope").await;
    c.expect_error("E004", TOO_MANY).await;
}

#[tokio::test]
async fn room_ip_guess_limit_does_not_affect_other_rooms() {
    let env = Env::start_with(
        Opts::new()
            .flag("--max-password-guesses-per-room-ip", 1)
            .flag("--max-password-guesses-per-ip", 100),
    )
    .await;
    let hash = password_hash("right");
    let (a, _, _) = create_room_with(&env, 0, password_room("a", &hash)).await;
    let (b, _, _) = create_room_with(&env, 1, password_room("b", &hash)).await;
    let mut c = Client::connect(&env.ws_url(2)).await;
    guess(&mut c, &a.room_id, "c", "nope").await;
    c.expect_error("E006", "wrong password").await;
    guess(&mut c, &a.room_id, "c", "nope").await;
    c.expect_error("E004", TOO_MANY).await;
    // Room b's budget is untouched: the right password joins.
    c.send(t::JOIN_ROOM, join_data(&b.room_id, "c", &hash))
        .await;
    c.expect(t::ROOM_JOINED).await;
}

#[tokio::test]
async fn wrong_guesses_beyond_the_ip_limit_get_e004() {
    let env = Env::start_with(
        Opts::new()
            .flag("--max-password-guesses-per-room-ip", 100)
            .flag("--max-password-guesses-per-ip", 2),
    )
    .await;
    let hash = password_hash("right");
    let (a, _, _) = create_room_with(&env, 0, password_room("a", &hash)).await;
    let (b, _, _) = create_room_with(&env, 1, password_room("b", &hash)).await;
    let mut c = Client::connect(&env.ws_url(2)).await;
    guess(&mut c, &a.room_id, "c", "x1").await;
    c.expect_error("E006", "wrong password").await;
    guess(&mut c, &b.room_id, "c", "x2").await;
    c.expect_error("E006", "wrong password").await;
    guess(&mut c, &b.room_id, "c", "x3").await;
    c.expect_error("E004", TOO_MANY).await;
}

#[tokio::test]
async fn rooms_without_password_are_never_guess_limited() {
    let env = Env::start_with(
        Opts::new()
            .flag("--max-password-guesses-per-room", 1)
            .flag("--max-password-guesses-per-room-ip", 1)
            .flag("--max-password-guesses-per-ip", 1),
    )
    .await;
    let (mut a, _, _) = create_room_with(&env, 0, create_data("a")).await;
    let mut joined = Vec::new();
    for i in 0..4 {
        let (m, _) = join_room(&env, i, &a.room_id, &format!("j{i}"), &password_hash("any")).await;
        expect_member_joined(&mut [&mut a], &m).await;
        joined.push(m);
    }
}

/// Connects to node 0 through a proxy that appends `ip` to X-Forwarded-For (the client itself
/// forged `6.6.6.6`).
async fn connect_from(env: &Env, ip: &str) -> Client {
    let opts = crate::support::ConnectOpts {
        headers: vec![("X-Forwarded-For".to_string(), format!("6.6.6.6, {ip}"))],
        ..Default::default()
    };
    Client::connect_opts(&env.ws_url(0), &opts)
        .await
        .expect("connect")
}

#[tokio::test]
async fn ip_guess_limit_uses_forwarded_for_behind_a_trusted_proxy() {
    let env = Env::start_with(
        Opts::new()
            .flag("--max-password-guesses-per-ip", 1)
            .flag("--trusted-proxies", "127.0.0.0/8"),
    )
    .await;
    let (a, _, _) = create_room_with(&env, 0, password_room("a", &password_hash("right"))).await;
    let mut x = connect_from(&env, "10.0.0.1").await;
    guess(&mut x, &a.room_id, "x", "w1").await;
    x.expect_error("E006", "wrong password").await;
    guess(&mut x, &a.room_id, "x", "w2").await;
    x.expect_error("E004", TOO_MANY).await;
    let mut y = connect_from(&env, "10.0.0.2").await;
    guess(&mut y, &a.room_id, "y", "w3").await;
    y.expect_error("E006", "wrong password").await;
}

#[tokio::test]
async fn ip_guess_limit_ignores_forwarded_for_unless_trusted() {
    let env = Env::start_with(Opts::new().flag("--max-password-guesses-per-ip", 1)).await;
    let (a, _, _) = create_room_with(&env, 0, password_room("a", &password_hash("right"))).await;
    let mut x = connect_from(&env, "10.0.0.1").await;
    guess(&mut x, &a.room_id, "x", "w1").await;
    x.expect_error("E006", "wrong password").await;
    let mut y = connect_from(&env, "10.0.0.2").await;
    guess(&mut y, &a.room_id, "y", "w2").await;
    y.expect_error("E004", TOO_MANY).await;
}

#[tokio::test]
async fn bin_password_on_create_counts_as_no_password() {
    let env = Env::start().await;
    let hash = password_hash("pw");
    let data = map! {"name" => "a", "password" => hash.as_bytes().to_vec(), "ephemeral" => 0, "expiry" => 0};
    let (a, _, joined) = create_room_with(&env, 0, data).await;
    assert!(
        !joined.boolean("hasPassword"),
        "a bin password is not a str password: {joined}"
    );
    let (_, joined_b) = join_room(&env, 1, &a.room_id, "b", "").await;
    assert!(!joined_b.boolean("hasPassword"));
}

#[tokio::test]
async fn bin_password_on_join_is_wrong() {
    let env = Env::start().await;
    let hash = password_hash("pw");
    let (a, _, _) = create_room_with(&env, 0, password_room("a", &hash)).await;
    let mut c = Client::connect(&env.ws_url(1)).await;
    c.send(
        t::JOIN_ROOM,
        map! {"roomId" => a.room_id.as_str(), "name" => "c", "password" => hash.as_bytes().to_vec()},
    )
    .await;
    c.expect_error("E006", "wrong password").await;
}
