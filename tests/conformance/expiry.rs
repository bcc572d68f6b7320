//! Room expiry: the close, the warning, transfers at expiry, joining afterwards (PROTOCOL.md §4).

use std::time::Duration;

use crate::map;
use crate::support::msg::assert_keys;
use crate::support::room::{create_data, create_on, expect_member_joined, join_data, join_room};
use crate::support::{open_room_with, t, Client, Env, Member, Opts, ValueExt};

/// Fast sweeps with a warning lead of 0, so no warning should interfere (0 < remaining <= 0
/// never holds). The close tests still skip a warning, so that they test only the close;
/// `zero_warning_lead_sends_no_warning` tests the warning rule itself.
fn fast_no_warning() -> Opts {
    Opts::new()
        .flag("--expiry-sweep-interval-ms", 50)
        .flag("--expiry-warning-lead-secs", 0)
}

fn expiring(name: &str, secs: i64) -> rmpv::Value {
    map! {"name" => name, "password" => "", "ephemeral" => 0, "expiry" => secs}
}

/// An expiry of 1 s closes within 2 s (expired means now > expiresAt); allow slack.
const CLOSE_WITHIN: Duration = Duration::from_secs(6);

/// The next frame of `m`, skipping one expiry warning.
async fn next_skipping_warning(m: &mut Member) -> (u8, rmpv::Value) {
    m.timeout = CLOSE_WITHIN;
    let (ty, data) = m.recv().await;
    if ty == t::RELAY_MESSAGE && data.str("senderId") == "system" {
        return m.recv().await;
    }
    (ty, data)
}

async fn expect_room_closed(m: &mut Member) {
    let (ty, data) = next_skipping_warning(m).await;
    assert_eq!(
        ty,
        t::ROOM_CLOSED,
        "{}: expected RoomClosed, got 0x{ty:02X} {data}",
        m.name
    );
    assert_keys(&data, &["reason"]);
    assert_eq!(data.str("reason"), "expired");
}

#[tokio::test]
async fn zero_warning_lead_sends_no_warning() {
    let env = Env::start_with(fast_no_warning()).await;
    let [mut a] = open_room_with::<1>(&env, expiring("m0", 1), "").await;
    a.timeout = CLOSE_WITHIN;
    let (ty, data) = a.recv().await;
    assert_eq!(
        ty,
        t::ROOM_CLOSED,
        "with a 0 s lead no warning is due (0 < remaining <= 0 never holds), got {data}"
    );
}

#[tokio::test]
async fn expired_room_is_closed_for_every_member_without_member_left() {
    let env = Env::start_with(fast_no_warning()).await;
    let [mut a, mut b, mut c] = open_room_with::<3>(&env, expiring("m0", 1), "").await;
    for m in [&mut a, &mut b, &mut c] {
        expect_room_closed(m).await;
    }
    // The members stay connected, out of the room, and got no MemberLeft.
    for m in [&mut a, &mut b, &mut c] {
        m.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "c"})
            .await;
        m.expect_error("E003", "not in a room").await;
    }
}

#[tokio::test]
async fn members_of_an_expired_room_may_create_and_join_again() {
    let env = Env::start_with(fast_no_warning()).await;
    let [mut a, mut b] = open_room_with::<2>(&env, expiring("m0", 1), "").await;
    expect_room_closed(&mut a).await;
    expect_room_closed(&mut b).await;
    let (created, _) = create_on(&mut a.client, create_data("again")).await;
    let room_id = created.str("roomId").to_string();
    b.send(t::JOIN_ROOM, join_data(&room_id, "b", "")).await;
    let joined = b.expect(t::ROOM_JOINED).await;
    assert_eq!(joined.array("members").len(), 2);
    a.expect(t::MEMBER_JOINED).await;
}

#[tokio::test]
async fn joining_after_the_sweep_gets_e001() {
    let env = Env::start_with(fast_no_warning()).await;
    let [mut a] = open_room_with::<1>(&env, expiring("m0", 1), "").await;
    expect_room_closed(&mut a).await;
    // RoomClosed goes out before the room is deleted (§4 steps 2 and 4), so E007 may come
    // first for a moment; E001 must follow.
    let mut c = Client::connect(&env.ws_url(1)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        c.send(t::JOIN_ROOM, join_data(&a.room_id, "late", ""))
            .await;
        let data = c.expect(t::ERROR).await;
        match (data.str("code"), data.str("msg")) {
            ("E001", "room not found") => break,
            ("E007", "room has expired") => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "expired room never removed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("unexpected error {other:?}"),
        }
    }
}

#[tokio::test]
async fn joining_an_expired_room_before_the_sweep_gets_e007() {
    // The sweep never runs during this test, so the expired room stays in memory.
    let env = Env::start_with(
        Opts::new()
            .flag("--expiry-sweep-interval-ms", 600_000)
            .flag("--expiry-warning-lead-secs", 0),
    )
    .await;
    let [a] = open_room_with::<1>(&env, expiring("m0", 1), "").await;
    let mut c = Client::connect(&env.ws_url(1)).await;
    let deadline = tokio::time::Instant::now() + CLOSE_WITHIN;
    // Until expiresAt has passed the join succeeds; poll with fresh clients until E007.
    loop {
        c.send(t::JOIN_ROOM, join_data(&a.room_id, "late", ""))
            .await;
        let (ty, data) = c.recv().await;
        if ty == t::ERROR {
            assert_eq!(
                (data.str("code"), data.str("msg")),
                ("E007", "room has expired")
            );
            break;
        }
        assert_eq!(ty, t::ROOM_JOINED, "unexpected {data}");
        assert!(tokio::time::Instant::now() < deadline, "room never expired");
        c = Client::connect(&env.ws_url(1)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn expired_password_room_gets_e007_before_the_password_check() {
    let env = Env::start_with(
        Opts::new()
            .flag("--expiry-sweep-interval-ms", 600_000)
            .flag("--expiry-warning-lead-secs", 0),
    )
    .await;
    let hash = crate::support::msg::password_hash("pw");
    let data = map! {"name" => "m0", "password" => hash.as_str(), "ephemeral" => 0, "expiry" => 1};
    let (a, created, _) = crate::support::room::create_room_with(&env, 0, data).await;
    let expires_at = created.int("expiresAt");
    // Wait until the room has expired by the clock (now > expiresAt, in whole seconds).
    while crate::support::msg::now_secs() <= expires_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = Client::connect(&env.ws_url(1)).await;
    c.send(
        t::JOIN_ROOM,
        join_data(
            &a.room_id,
            "c",
            &crate::support::msg::password_hash("wrong"),
        ),
    )
    .await;
    c.expect_error("E007", "room has expired").await;
}

#[tokio::test]
async fn warning_is_sent_once_to_all_members_before_the_close() {
    let env = Env::start_with(
        Opts::new()
            .flag("--expiry-sweep-interval-ms", 50)
            .flag("--expiry-warning-lead-secs", 2),
    )
    .await;
    // expiry 4 s, warning when at most 2 s remain: both members have joined long before.
    let [mut a, mut b] = open_room_with::<2>(&env, expiring("m0", 4), "").await;
    for m in [&mut a, &mut b] {
        m.timeout = Duration::from_secs(8);
        let w = m.expect(t::RELAY_MESSAGE).await;
        assert_keys(&w, &["senderId", "senderName", "iv", "ciphertext", "t"]);
        assert_eq!(w.str("senderId"), "system");
        assert_eq!(w.str("senderName"), "System");
        assert_eq!(w.str("iv"), "");
        assert_eq!(w.str("ciphertext"), "__SYSTEM_EXPIRY_WARNING__");
        assert_eq!(w.int("t") % 1000, 0, "t is now-in-seconds x 1000");
        // Sent once: the next frame is the close, not a second warning.
        let data = m.expect(t::ROOM_CLOSED).await;
        assert_eq!(data.str("reason"), "expired");
    }
}

#[tokio::test]
async fn warning_lead_is_respected() {
    let env = Env::start_with(
        Opts::new()
            .flag("--expiry-sweep-interval-ms", 50)
            .flag("--expiry-warning-lead-secs", 1),
    )
    .await;
    let (mut a, created, _) =
        crate::support::room::create_room_with(&env, 0, expiring("m0", 4)).await;
    let expires_at_ms = created.int("expiresAt") * 1000;
    a.timeout = Duration::from_secs(8);
    let w = a.expect(t::RELAY_MESSAGE).await;
    assert_eq!(w.str("ciphertext"), "__SYSTEM_EXPIRY_WARNING__");
    let now = crate::support::msg::now_ms();
    assert!(
        expires_at_ms - now <= 1000 + 200,
        "warned {} ms before expiresAt with a 1 s lead",
        expires_at_ms - now
    );
    a.expect(t::ROOM_CLOSED).await;
}

#[tokio::test]
async fn late_joiner_after_the_warning_gets_only_the_close() {
    let env = Env::start_with(
        Opts::new()
            .flag("--expiry-sweep-interval-ms", 50)
            .flag("--expiry-warning-lead-secs", 300),
    )
    .await;
    let (mut a, _, _) = crate::support::room::create_room_with(&env, 0, expiring("m0", 2)).await;
    let w = a.expect(t::RELAY_MESSAGE).await;
    assert_eq!(w.str("senderId"), "system");
    let (mut b, _) = join_room(&env, 1, &a.room_id, "late", "").await;
    expect_member_joined(&mut [&mut a], &b).await;
    expect_room_closed(&mut a).await;
    expect_room_closed(&mut b).await;
}

#[tokio::test]
async fn expiry_cancels_active_transfers_to_everyone_including_the_sender() {
    let env = Env::start_with(fast_no_warning()).await;
    let [mut a, mut b, mut c] = open_room_with::<3>(&env, expiring("m0", 2), "").await;
    a.send(t::FILE_META, super::files::meta("tr-exp")).await;
    b.expect(t::RELAY_FILE_META).await;
    c.expect(t::RELAY_FILE_META).await;
    let a_id = a.id.clone();
    for (node, m) in [(0, &mut a), (1, &mut b), (2, &mut c)] {
        let (ty, cancel) = next_skipping_warning(m).await;
        // PROTOCOL.md §4 "Close": in a cluster, a member on another relay than the sender's
        // may get RoomClosed from its own relay before the sender's relay cancels the
        // transfer; it has left the room by then, so the cancel is not for it any more.
        if ty == t::ROOM_CLOSED && !env.same_process(node, 0) {
            assert_eq!(cancel.str("reason"), "expired", "{}: {cancel}", m.name);
            continue;
        }
        assert_eq!(
            ty,
            t::RELAY_FILE_CANCEL,
            "{}: expected the cancel first: {cancel}",
            m.name
        );
        assert_eq!(cancel.str("senderId"), a_id);
        assert_eq!(cancel.str("transferId"), "tr-exp");
        expect_room_closed(m).await;
    }
    // The transfer was cleared: a new one may start in a new room.
    create_on(&mut a.client, create_data("again")).await;
    a.send(t::FILE_META, super::files::meta("tr-next")).await;
    // An Ack without transferId is answered "missing transferId": if the Meta had been refused,
    // its "already has active transfer" would come first.
    a.send(t::FILE_ACK, map! {}).await;
    a.expect_error("E005", "missing transferId").await;
}

#[tokio::test]
async fn room_without_expiry_is_never_closed_by_the_sweep() {
    let env = Env::start_with(fast_no_warning()).await;
    let [mut a, mut b] = open_room_with::<2>(&env, expiring("m0", 0), "").await;
    let [mut x] = open_room_with::<1>(&env, expiring("x", 1), "").await;
    // Once a room that expires has been closed, sweeps have run over the other one too.
    expect_room_closed(&mut x).await;
    crate::support::assert_room_chats(&mut [&mut a, &mut b]).await;
}
