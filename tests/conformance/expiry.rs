//! Room expiry: the close, the warning, transfers at expiry, joining afterwards (PROTOCOL.md §4).
//!
//! The processes decide by a [`TestClock`]: a test moves it past a room's expiry (or into the
//! warning lead) and awaits the frames that follow, instead of waiting for the time to pass.

use std::time::Duration;

use crate::map;
use crate::support::msg::assert_keys;
use crate::support::room::{
    create_data, create_on, create_room_with, expect_member_joined, join_data, join_room,
};
use crate::support::{open_room_with, t, Client, Env, Member, Opts, TestClock, ValueExt};

/// The lifetime of the rooms these tests expire, seconds: long enough never to run out by
/// itself during a test; the test moves the clock past it.
const LIFETIME: i64 = 60;

/// Fast sweeps with the warning lead `lead_secs`, on `clock`.
fn sweeping(clock: &TestClock, lead_secs: u64) -> Opts {
    clock.opts(
        Opts::new()
            .flag("--expiry-sweep-interval-ms", 50)
            .flag("--expiry-warning-lead-secs", lead_secs),
    )
}

/// Fast sweeps with a warning lead of 0, so no warning should interfere (0 < remaining <= 0
/// never holds). The close tests still skip a warning, so that they test only the close;
/// `zero_warning_lead_sends_no_warning` tests the warning rule itself.
fn fast_no_warning(clock: &TestClock) -> Opts {
    sweeping(clock, 0)
}

/// No sweep during the test (the first runs at start-up, before any room), so an expired
/// room stays in the relays' memory.
fn never_sweeping(clock: &TestClock) -> Opts {
    clock.opts(
        Opts::new()
            .flag("--expiry-sweep-interval-ms", 600_000)
            .flag("--expiry-warning-lead-secs", 0),
    )
}

fn expiring(name: &str, secs: i64) -> rmpv::Value {
    map! {"name" => name, "password" => "", "ephemeral" => 0, "expiry" => secs}
}

/// Moves `clock` past the expiry of every room created so far with `lifetime` seconds
/// (expired means now > expiresAt, in whole seconds).
fn expire(clock: &TestClock, lifetime: i64) {
    clock.advance(Duration::from_secs(lifetime.unsigned_abs() + 1));
}

/// How long a frame the moved clock makes due may take: a sweep (every 50 ms) and the bus.
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

async fn expect_warning(m: &mut Member) -> rmpv::Value {
    m.timeout = CLOSE_WITHIN;
    let w = m.expect(t::RELAY_MESSAGE).await;
    assert_eq!(w.str("senderId"), "system", "{}: {w}", m.name);
    assert_eq!(w.str("ciphertext"), "__SYSTEM_EXPIRY_WARNING__");
    w
}

/// Proves that the relay of `node` has swept its rooms since this call began, at the clock's
/// time then: a new room there with `lifetime` seconds (within the warning lead) is warned,
/// and the sweep that warned it went over every other room of that relay too.
async fn swept(env: &Env, node: usize, lifetime: i64) {
    let (mut barrier, _, _) = create_room_with(env, node, expiring("sweep", lifetime)).await;
    expect_warning(&mut barrier).await;
}

#[tokio::test]
async fn zero_warning_lead_sends_no_warning() {
    let clock = TestClock::new();
    let env = Env::start_with(fast_no_warning(&clock)).await;
    let [mut a] = open_room_with::<1>(&env, expiring("m0", LIFETIME), "").await;
    expire(&clock, LIFETIME);
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
    let clock = TestClock::new();
    let env = Env::start_with(fast_no_warning(&clock)).await;
    let [mut a, mut b, mut c] = open_room_with::<3>(&env, expiring("m0", LIFETIME), "").await;
    expire(&clock, LIFETIME);
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
    let clock = TestClock::new();
    let env = Env::start_with(fast_no_warning(&clock)).await;
    let [mut a, mut b] = open_room_with::<2>(&env, expiring("m0", LIFETIME), "").await;
    expire(&clock, LIFETIME);
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
    let clock = TestClock::new();
    let env = Env::start_with(fast_no_warning(&clock)).await;
    let [mut a] = open_room_with::<1>(&env, expiring("m0", LIFETIME), "").await;
    expire(&clock, LIFETIME);
    expect_room_closed(&mut a).await;
    // RoomClosed goes out before the room is deleted (§4 steps 2 and 4), so E007 may come
    // first for a moment; E001 must follow (polled: the deletion sends nothing to await).
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
    let clock = TestClock::new();
    let env = Env::start_with(never_sweeping(&clock)).await;
    let [a] = open_room_with::<1>(&env, expiring("m0", LIFETIME), "").await;
    // Until expiresAt has passed the join succeeds.
    let mut c = Client::connect(&env.ws_url(1)).await;
    c.send(t::JOIN_ROOM, join_data(&a.room_id, "early", ""))
        .await;
    c.expect(t::ROOM_JOINED).await;
    expire(&clock, LIFETIME);
    let mut d = Client::connect(&env.ws_url(1)).await;
    d.send(t::JOIN_ROOM, join_data(&a.room_id, "late", ""))
        .await;
    d.expect_error("E007", "room has expired").await;
}

#[tokio::test]
async fn expired_password_room_gets_e007_before_the_password_check() {
    let clock = TestClock::new();
    let env = Env::start_with(never_sweeping(&clock)).await;
    let hash = crate::support::msg::password_hash("pw");
    let data =
        map! {"name" => "m0", "password" => hash.as_str(), "ephemeral" => 0, "expiry" => LIFETIME};
    let (a, created, _) = create_room_with(&env, 0, data).await;
    // Expired by the clock: now > expiresAt, in whole seconds.
    clock.set_secs(created.int("expiresAt") + 1);
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
    const LEAD: i64 = 30;
    let clock = TestClock::new();
    let env = Env::start_with(sweeping(&clock, LEAD as u64)).await;
    let [mut a, mut b] = open_room_with::<2>(&env, expiring("m0", LIFETIME), "").await;
    // At most LEAD - 1 s remain: inside the lead, both members have joined long before.
    clock.advance(Duration::from_secs((LIFETIME - LEAD + 1) as u64));
    for m in [&mut a, &mut b] {
        let w = expect_warning(m).await;
        assert_keys(&w, &["senderId", "senderName", "iv", "ciphertext", "t"]);
        assert_eq!(w.str("senderName"), "System");
        assert_eq!(w.str("iv"), "");
        assert_eq!(w.int("t") % 1000, 0, "t is now-in-seconds x 1000");
    }
    // Both relays sweep again, still within the lead...
    swept(&env, 0, LEAD / 2).await;
    swept(&env, 1, LEAD / 2).await;
    // ...and at the close: sent once, the next frame is the close, not a second warning.
    expire(&clock, LEAD);
    for m in [&mut a, &mut b] {
        m.timeout = CLOSE_WITHIN;
        let data = m.expect(t::ROOM_CLOSED).await;
        assert_eq!(data.str("reason"), "expired");
    }
}

#[tokio::test]
async fn warning_lead_is_respected() {
    const LEAD: i64 = 10;
    let clock = TestClock::new();
    let env = Env::start_with(sweeping(&clock, LEAD as u64)).await;
    let (mut a, created, _) = create_room_with(&env, 0, expiring("m0", LIFETIME)).await;
    let expires_at = created.int("expiresAt");
    // Two seconds before the lead begins, a sweep warns nobody...
    clock.set_secs(expires_at - LEAD - 2);
    swept(&env, 0, LEAD / 2).await;
    a.sync().await;
    // ...one second into it, the next one warns.
    clock.set_secs(expires_at - LEAD + 1);
    let w = expect_warning(&mut a).await;
    let before = expires_at - w.int("t") / 1000;
    assert!(
        0 < before && before <= LEAD,
        "warned {before} s before expiresAt with a {LEAD} s lead"
    );
    clock.set_secs(expires_at + 1);
    a.expect(t::ROOM_CLOSED).await;
}

#[tokio::test]
async fn late_joiner_after_the_warning_gets_only_the_close() {
    let clock = TestClock::new();
    let env = Env::start_with(sweeping(&clock, 300)).await;
    let (mut a, _, _) = create_room_with(&env, 0, expiring("m0", LIFETIME)).await;
    expect_warning(&mut a).await;
    let (mut b, _) = join_room(&env, 1, &a.room_id, "late", "").await;
    expect_member_joined(&mut [&mut a], &b).await;
    expire(&clock, LIFETIME);
    expect_room_closed(&mut a).await;
    expect_room_closed(&mut b).await;
}

#[tokio::test]
async fn expiry_cancels_active_transfers_to_everyone_including_the_sender() {
    let clock = TestClock::new();
    let env = Env::start_with(fast_no_warning(&clock)).await;
    let [mut a, mut b, mut c] = open_room_with::<3>(&env, expiring("m0", LIFETIME), "").await;
    a.send(t::FILE_META, super::files::meta("tr-exp")).await;
    b.expect(t::RELAY_FILE_META).await;
    c.expect(t::RELAY_FILE_META).await;
    expire(&clock, LIFETIME);
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
    let clock = TestClock::new();
    let env = Env::start_with(fast_no_warning(&clock)).await;
    let [mut a, mut b] = open_room_with::<2>(&env, expiring("m0", 0), "").await;
    let [mut x] = open_room_with::<1>(&env, expiring("x", LIFETIME), "").await;
    expire(&clock, LIFETIME);
    // Once a room that expires has been closed, sweeps have run over the other one too.
    expect_room_closed(&mut x).await;
    crate::support::assert_room_chats(&mut [&mut a, &mut b]).await;
}
