//! Creating, joining and leaving rooms (PROTOCOL.md §1 ids and colours, §2.1, §2.2, §2.4, §7).

use crate::map;
use crate::support::msg::{assert_keys, is_member_id, is_room_id, now_secs};
use crate::support::room::{
    create_data, create_on, create_room, create_room_with, expect_member_joined, join_data,
    join_room,
};
use crate::support::{assert_room_chats, member_color, open_room, t, Client, Env, Opts, ValueExt};

const NAME_ERROR: &str = "name must be 1-20 characters";

#[tokio::test]
async fn create_room_replies_room_created_then_room_joined() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(
        t::CREATE_ROOM,
        map! {"name" => "alice", "password" => "", "ephemeral" => 0, "expiry" => 0},
    )
    .await;
    let created = c.expect(t::ROOM_CREATED).await;
    assert_keys(&created, &["roomId", "expiresAt"]);
    assert!(is_room_id(created.str("roomId")), "room id {created}");
    assert_eq!(created.int("expiresAt"), 0);
    let joined = c.expect(t::ROOM_JOINED).await;
    assert_keys(
        &joined,
        &["roomId", "members", "hasPassword", "ephemeral", "expiresAt"],
    );
    assert_eq!(joined.str("roomId"), created.str("roomId"));
    assert!(!joined.boolean("hasPassword"));
    assert_eq!(joined.int("ephemeral"), 0);
    assert_eq!(joined.int("expiresAt"), 0);
    let members = joined.array("members");
    assert_eq!(members.len(), 1);
    assert_keys(&members[0], &["id", "name", "color"]);
    assert_eq!(members[0].str("name"), "alice");
    c.sync().await;
}

#[tokio::test]
async fn room_ids_are_distinct_21_char_nanoids() {
    let env = Env::start().await;
    let a = create_room(&env, 0, "a").await;
    let b = create_room(&env, 1, "b").await;
    assert!(is_room_id(&a.room_id), "{}", a.room_id);
    assert!(is_room_id(&b.room_id), "{}", b.room_id);
    assert_ne!(a.room_id, b.room_id);
}

#[tokio::test]
async fn member_ids_are_8_lowercase_hex_and_colours_follow_the_id() {
    let env = Env::start().await;
    let members = open_room::<4>(&env).await;
    let mut ids = Vec::new();
    for m in &members {
        assert!(
            is_member_id(&m.id),
            "member id {:?} is not 8 lowercase hex chars",
            m.id
        );
        assert_eq!(m.color, member_color(&m.id), "colour of member {}", m.id);
        ids.push(m.id.clone());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "member ids must be unique within the room");
}

#[tokio::test]
async fn colour_function_matches_known_values() {
    // Checks the test's own colour function against hand-computed values (§1).
    // "00000000": h = sum of 48*31^k for k=0..7, truncated to u32.
    let mut h: u32 = 0;
    for _ in 0..8 {
        h = h.wrapping_mul(31).wrapping_add(48);
    }
    let expect = format!(
        "#{:02x}{:02x}{:02x}",
        ((h >> 16) & 0xff) | 0x40,
        ((h >> 8) & 0xff) | 0x40,
        (h & 0xff) | 0x40
    );
    assert_eq!(member_color("00000000"), expect);
    // "a": h = 97 = 0x61 -> r = 0x40, g = 0x40, b = 0x61 | 0x40 = 0x61.
    assert_eq!(member_color("a"), "#404061");
}

#[tokio::test]
async fn room_joined_echoes_ephemeral() {
    let env = Env::start().await;
    let (m, _, joined) = create_room_with(
        &env,
        0,
        map! {"name" => "a", "password" => "", "ephemeral" => 30, "expiry" => 0},
    )
    .await;
    assert_eq!(joined.int("ephemeral"), 30);
    let (_, joined_b) = join_room(&env, 1, &m.room_id, "b", "").await;
    assert_eq!(joined_b.int("ephemeral"), 30);
}

#[tokio::test]
async fn negative_ephemeral_is_passed_through() {
    let env = Env::start().await;
    let (_, _, joined) = create_room_with(
        &env,
        0,
        map! {"name" => "a", "password" => "", "ephemeral" => -5, "expiry" => 0},
    )
    .await;
    assert_eq!(joined.int("ephemeral"), -5);
}

#[tokio::test]
async fn missing_ephemeral_and_expiry_default_to_zero() {
    let env = Env::start().await;
    let (_, created, joined) =
        create_room_with(&env, 0, map! {"name" => "a", "password" => ""}).await;
    assert_eq!(created.int("expiresAt"), 0);
    assert_eq!(joined.int("ephemeral"), 0);
    assert_eq!(joined.int("expiresAt"), 0);
}

#[tokio::test]
async fn create_with_expiry_sets_expires_at_in_both_replies_and_for_joiners() {
    let env = Env::start().await;
    let before = now_secs();
    let (m, created, joined) = create_room_with(
        &env,
        0,
        map! {"name" => "a", "password" => "", "ephemeral" => 0, "expiry" => 3600},
    )
    .await;
    let after = now_secs();
    let at = created.int("expiresAt");
    assert!(
        (before + 3600..=after + 3600).contains(&at),
        "expiresAt {at} not in [{}, {}]",
        before + 3600,
        after + 3600
    );
    assert_eq!(joined.int("expiresAt"), at);
    let (_, joined_b) = join_room(&env, 1, &m.room_id, "b", "").await;
    assert_eq!(joined_b.int("expiresAt"), at);
}

#[tokio::test]
async fn negative_expiry_means_never() {
    let env = Env::start().await;
    let (_, created, joined) = create_room_with(
        &env,
        0,
        map! {"name" => "a", "password" => "", "ephemeral" => 0, "expiry" => -100},
    )
    .await;
    assert_eq!(created.int("expiresAt"), 0);
    assert_eq!(joined.int("expiresAt"), 0);
}

#[tokio::test]
async fn expiry_above_seven_days_is_clamped() {
    let env = Env::start().await;
    let before = now_secs();
    let (_, created, _) = create_room_with(
        &env,
        0,
        map! {"name" => "a", "password" => "", "ephemeral" => 0, "expiry" => 10_000_000},
    )
    .await;
    let after = now_secs();
    let at = created.int("expiresAt");
    assert!(
        (before + 604_800..=after + 604_800).contains(&at),
        "expiresAt {at}"
    );
}

#[tokio::test]
async fn expiry_clamp_follows_max_expiry_secs_flag() {
    let env = Env::start_with(Opts::new().flag("--max-expiry-secs", 100)).await;
    let before = now_secs();
    let (_, created, _) = create_room_with(
        &env,
        0,
        map! {"name" => "a", "password" => "", "ephemeral" => 0, "expiry" => 500},
    )
    .await;
    let after = now_secs();
    let at = created.int("expiresAt");
    assert!((before + 100..=after + 100).contains(&at), "expiresAt {at}");
}

#[tokio::test]
async fn create_while_in_room_gets_e005_already_in_a_room() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.send(t::CREATE_ROOM, create_data("again")).await;
    a.expect_error("E005", "already in a room").await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn already_in_a_room_is_checked_before_the_data() {
    let env = Env::start().await;
    let mut a = create_room(&env, 0, "a").await;
    a.send(t::CREATE_ROOM, rmpv::Value::Nil).await;
    a.expect_error("E005", "already in a room").await;
    a.send(t::JOIN_ROOM, rmpv::Value::Nil).await;
    a.expect_error("E005", "already in a room").await;
}

#[tokio::test]
async fn create_with_non_map_data_gets_e005() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    for data in [
        rmpv::Value::Nil,
        rmpv::Value::from("name"),
        rmpv::Value::Array(vec![]),
        rmpv::Value::from(7),
    ] {
        c.send(t::CREATE_ROOM, data).await;
        c.expect_error("E005", "invalid create room data").await;
    }
}

#[tokio::test]
async fn create_with_empty_or_missing_name_is_rejected() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::CREATE_ROOM, create_data("")).await;
    c.expect_error("E005", NAME_ERROR).await;
    c.send(t::CREATE_ROOM, map! {"password" => ""}).await;
    c.expect_error("E005", NAME_ERROR).await;
}

#[tokio::test]
async fn create_with_21_runes_is_rejected() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::CREATE_ROOM, create_data(&"x".repeat(21))).await;
    c.expect_error("E005", NAME_ERROR).await;
    c.send(t::CREATE_ROOM, create_data(&"ü".repeat(21))).await;
    c.expect_error("E005", NAME_ERROR).await;
}

#[tokio::test]
async fn create_with_20_multibyte_runes_succeeds() {
    let env = Env::start().await;
    for name in ["ü".repeat(20), "🦀".repeat(20), "x".repeat(20)] {
        let (m, _, joined) = create_room_with(&env, 0, create_data(&name)).await;
        assert_eq!(joined.array("members")[0].str("name"), name);
        assert_eq!(m.name, name);
    }
}

#[tokio::test]
async fn whitespace_only_name_is_accepted() {
    let env = Env::start().await;
    let (_, _, joined) = create_room_with(&env, 0, create_data("   ")).await;
    assert_eq!(joined.array("members")[0].str("name"), "   ");
}

#[tokio::test]
async fn name_is_checked_before_password_format() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::CREATE_ROOM, map! {"name" => "", "password" => "short"})
        .await;
    c.expect_error("E005", NAME_ERROR).await;
}

#[tokio::test]
async fn failed_create_leaves_the_client_free_to_create() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::CREATE_ROOM, create_data("")).await;
    c.expect_error("E005", NAME_ERROR).await;
    create_on(&mut c, create_data("ok")).await;
}

#[tokio::test]
async fn join_sends_member_joined_to_existing_then_room_joined_with_joiner_last() {
    let env = Env::start().await;
    let mut a = create_room(&env, 0, "alice").await;
    let (mut b, joined_b) = join_room(&env, 1, &a.room_id, "bob", "").await;
    let seen = a.expect(t::MEMBER_JOINED).await;
    assert_keys(&seen, &["id", "name", "color"]);
    assert_eq!(seen.str("id"), b.id);
    assert_eq!(seen.str("name"), "bob");
    assert_eq!(seen.str("color"), member_color(&b.id));
    let members = joined_b.array("members");
    assert_eq!(members.len(), 2);
    assert_eq!(members[0].str("id"), a.id);
    assert_eq!(members[0].str("name"), "alice");
    assert_eq!(members[0].str("color"), a.color);
    assert_eq!(members[1].str("name"), "bob");
    assert_eq!(members[1].str("color"), member_color(members[1].str("id")));
    assert_keys(
        &joined_b,
        &["roomId", "members", "hasPassword", "ephemeral", "expiresAt"],
    );
    // The joiner does not get a MemberJoined about itself.
    b.sync().await;
    a.sync().await;
}

#[tokio::test]
async fn room_joined_lists_members_in_join_order_joiner_last() {
    let env = Env::start().await;
    let mut a = create_room(&env, 0, "m0").await;
    let (mut b, _) = join_room(&env, 1, &a.room_id, "m1", "").await;
    expect_member_joined(&mut [&mut a], &b).await;
    let (mut c, _) = join_room(&env, 2, &a.room_id, "m2", "").await;
    expect_member_joined(&mut [&mut a, &mut b], &c).await;
    let (d, joined_d) = join_room(&env, 0, &a.room_id, "m3", "").await;
    expect_member_joined(&mut [&mut a, &mut b, &mut c], &d).await;
    let ids: Vec<&str> = joined_d
        .array("members")
        .iter()
        .map(|m| m.str("id"))
        .collect();
    assert_eq!(
        ids,
        [a.id.as_str(), b.id.as_str(), c.id.as_str(), d.id.as_str()]
    );
}

#[tokio::test]
async fn member_list_keeps_join_order_after_a_member_leaves() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    b.send(t::LEAVE_ROOM, map! {}).await;
    for m in [&mut a, &mut c] {
        assert_eq!(m.expect(t::MEMBER_LEFT).await.str("id"), b.id);
    }
    let (d, joined) = join_room(&env, 1, &a.room_id, "m3", "").await;
    let ids: Vec<&str> = joined
        .array("members")
        .iter()
        .map(|m| m.str("id"))
        .collect();
    assert_eq!(ids, [a.id.as_str(), c.id.as_str(), d.id.as_str()]);
}

#[tokio::test]
async fn joiner_room_joined_carries_the_room_settings() {
    let env = Env::start().await;
    let (a, _, joined_a) = create_room_with(
        &env,
        0,
        map! {"name" => "a", "password" => "", "ephemeral" => 45, "expiry" => 3600},
    )
    .await;
    let (_, joined_b) = join_room(&env, 1, &a.room_id, "b", "").await;
    assert!(!joined_b.boolean("hasPassword"));
    assert_eq!(joined_b.int("ephemeral"), 45);
    assert_eq!(joined_b.int("expiresAt"), joined_a.int("expiresAt"));
}

#[tokio::test]
async fn join_unknown_room_gets_e001() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::JOIN_ROOM, join_data("AAAAAAAAAAAAAAAAAAAAA", "bob", ""))
        .await;
    c.expect_error("E001", "room not found").await;
}

#[tokio::test]
async fn join_without_room_id_gets_e001() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::JOIN_ROOM, map! {"name" => "bob", "password" => ""})
        .await;
    c.expect_error("E001", "room not found").await;
    c.send(t::JOIN_ROOM, join_data("", "bob", "")).await;
    c.expect_error("E001", "room not found").await;
}

#[tokio::test]
async fn join_with_bin_room_id_gets_e001() {
    let env = Env::start().await;
    let a = create_room(&env, 0, "a").await;
    let mut c = Client::connect(&env.ws_url(1)).await;
    c.send(
        t::JOIN_ROOM,
        map! {"roomId" => a.room_id.as_bytes().to_vec(), "name" => "bob", "password" => ""},
    )
    .await;
    c.expect_error("E001", "room not found").await;
}

#[tokio::test]
async fn join_while_in_room_gets_e005_already_in_a_room() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    let other = create_room(&env, 2, "other").await;
    b.send(t::JOIN_ROOM, join_data(&other.room_id, "b", ""))
        .await;
    b.expect_error("E005", "already in a room").await;
    b.send(t::JOIN_ROOM, join_data(&a.room_id, "b", "")).await;
    b.expect_error("E005", "already in a room").await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn join_with_non_map_data_gets_e005() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    for data in [
        rmpv::Value::Nil,
        rmpv::Value::from("x"),
        rmpv::Value::Array(vec![]),
    ] {
        c.send(t::JOIN_ROOM, data).await;
        c.expect_error("E005", "invalid join room data").await;
    }
}

#[tokio::test]
async fn join_name_is_checked_before_the_room_lookup() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::JOIN_ROOM, join_data("AAAAAAAAAAAAAAAAAAAAA", "", ""))
        .await;
    c.expect_error("E005", NAME_ERROR).await;
    c.send(
        t::JOIN_ROOM,
        join_data("AAAAAAAAAAAAAAAAAAAAA", &"é".repeat(21), ""),
    )
    .await;
    c.expect_error("E005", NAME_ERROR).await;
}

#[tokio::test]
async fn join_with_20_multibyte_runes_succeeds() {
    let env = Env::start().await;
    let mut a = create_room(&env, 0, "a").await;
    let name = "名".repeat(20);
    let (b, _) = join_room(&env, 1, &a.room_id, &name, "").await;
    let seen = a.expect(t::MEMBER_JOINED).await;
    assert_eq!(seen.str("name"), name);
    assert_eq!(b.name, name);
}

#[tokio::test]
async fn duplicate_names_are_allowed() {
    let env = Env::start().await;
    let mut a = create_room(&env, 0, "same").await;
    let (b, _) = join_room(&env, 1, &a.room_id, "same", "").await;
    expect_member_joined(&mut [&mut a], &b).await;
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn password_for_a_room_without_one_is_ignored() {
    let env = Env::start().await;
    let mut a = create_room(&env, 0, "a").await;
    let hash = crate::support::msg::password_hash("whatever");
    let (b, joined) = join_room(&env, 1, &a.room_id, "b", &hash).await;
    assert!(!joined.boolean("hasPassword"));
    expect_member_joined(&mut [&mut a], &b).await;
}

#[tokio::test]
async fn full_room_gets_e002() {
    let env = Env::start_with(Opts::new().flag("--max-room-members", 3)).await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    let mut d = Client::connect(&env.ws_url(1)).await;
    d.send(t::JOIN_ROOM, join_data(&a.room_id, "d", "")).await;
    d.expect_error("E002", "room is full").await;
    // Nobody saw a MemberJoined, and the room still chats.
    assert_room_chats(&mut [&mut a, &mut b, &mut c]).await;
    // The rejected client is not in a room and may create one.
    create_on(&mut d, create_data("d")).await;
}

#[tokio::test]
async fn room_capacity_can_be_set_by_environment_variable() {
    let env = Env::start_with(Opts::new().env("ARTHAS_MAX_ROOM_MEMBERS", 2)).await;
    let [a, _b] = open_room::<2>(&env).await;
    let mut c = Client::connect(&env.ws_url(2)).await;
    c.send(t::JOIN_ROOM, join_data(&a.room_id, "c", "")).await;
    c.expect_error("E002", "room is full").await;
}

#[tokio::test]
async fn full_room_at_default_capacity_of_50() {
    // 51 sockets from one address in a moment: more than the default handshake burst.
    let env = Env::start_with(Opts::new().flag("--handshakes-per-ip-per-sec", 1000)).await;
    let mut first = create_room(&env, 0, "m0").await;
    let mut others = Vec::new();
    for i in 1..50 {
        let (m, joined) = join_room(&env, i, &first.room_id, &format!("m{i}"), "").await;
        assert_eq!(joined.array("members").len(), i + 1);
        others.push(m);
    }
    let mut late = Client::connect(&env.ws_url(0)).await;
    late.send(t::JOIN_ROOM, join_data(&first.room_id, "late", ""))
        .await;
    late.expect_error("E002", "room is full").await;
    let mut ids: Vec<&str> = others.iter().map(|m| m.id.as_str()).collect();
    ids.push(&first.id);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "member ids must be unique within the room");
    // The first member saw exactly 49 joins and nothing else: in join order on one node. In a
    // cluster each joiner's relay publishes its MemberJoined after the joiner got RoomJoined
    // (PROTOCOL.md §2.2 step 7), so two joins made back to back through
    // different relays may be announced in either order: there, each join exactly once.
    let mut seen = Vec::new();
    for _ in &others {
        seen.push(first.expect(t::MEMBER_JOINED).await.str("id").to_string());
    }
    first.sync().await;
    let mut joined: Vec<String> = others.iter().map(|m| m.id.clone()).collect();
    if env.is_cluster() {
        seen.sort();
        joined.sort();
    }
    assert_eq!(seen, joined, "MemberJoined ids seen by the first member");
}

#[tokio::test]
async fn room_has_space_again_after_a_member_leaves() {
    let env = Env::start_with(Opts::new().flag("--max-room-members", 3)).await;
    let [mut a, mut b, c] = open_room::<3>(&env).await;
    drop(c);
    a.expect(t::MEMBER_LEFT).await;
    b.expect(t::MEMBER_LEFT).await;
    let (d, _) = join_room(&env, 2, &a.room_id, "d", "").await;
    expect_member_joined(&mut [&mut a, &mut b], &d).await;
}

#[tokio::test]
async fn leave_broadcasts_member_left_and_sends_nothing_to_the_leaver() {
    let env = Env::start().await;
    let [mut a, mut b, mut c] = open_room::<3>(&env).await;
    b.send(t::LEAVE_ROOM, map! {}).await;
    for m in [&mut a, &mut c] {
        let left = m.expect(t::MEMBER_LEFT).await;
        assert_keys(&left, &["id"]);
        assert_eq!(left.str("id"), b.id);
    }
    b.sync().await;
    assert_room_chats(&mut [&mut a, &mut c]).await;
}

#[tokio::test]
async fn leaver_gets_no_more_room_messages() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    b.send(t::LEAVE_ROOM, map! {}).await;
    a.expect(t::MEMBER_LEFT).await;
    a.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "c"})
        .await;
    a.sync().await;
    // The barrier reply to b comes first: nothing from the room was delivered to b.
    b.sync().await;
    b.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "c"})
        .await;
    b.expect_error("E003", "not in a room").await;
}

#[tokio::test]
async fn leave_outside_a_room_is_silent() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.send(t::LEAVE_ROOM, map! {}).await;
    c.sync().await;
}

#[tokio::test]
async fn leave_ignores_its_data() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    b.send(t::LEAVE_ROOM, rmpv::Value::Nil).await;
    assert_eq!(a.expect(t::MEMBER_LEFT).await.str("id"), b.id);
}

#[tokio::test]
async fn leaver_can_join_again() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    b.send(t::LEAVE_ROOM, map! {}).await;
    a.expect(t::MEMBER_LEFT).await;
    b.send(t::JOIN_ROOM, join_data(&a.room_id, "b2", "")).await;
    let joined = b.expect(t::ROOM_JOINED).await;
    assert_eq!(joined.array("members").len(), 2);
    let seen = a.expect(t::MEMBER_JOINED).await;
    assert_eq!(seen.str("name"), "b2");
}

#[tokio::test]
async fn leaver_can_create_a_new_room() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    b.send(t::LEAVE_ROOM, map! {}).await;
    a.expect(t::MEMBER_LEFT).await;
    let (created, _) = create_on(&mut b, create_data("b")).await;
    assert_ne!(created.str("roomId"), a.room_id);
}

#[tokio::test]
async fn last_member_leaving_deletes_the_room() {
    let env = Env::start().await;
    let mut a = create_room(&env, 0, "a").await;
    a.send(t::LEAVE_ROOM, map! {}).await;
    a.sync().await;
    let mut c = Client::connect(&env.ws_url(1)).await;
    c.send(t::JOIN_ROOM, join_data(&a.room_id, "c", "")).await;
    c.expect_error("E001", "room not found").await;
}

#[tokio::test]
async fn last_member_disconnecting_deletes_the_room() {
    let env = Env::start().await;
    let [a, mut b] = open_room::<2>(&env).await;
    let room_id = a.room_id.clone();
    drop(a);
    b.expect(t::MEMBER_LEFT).await;
    b.send(t::LEAVE_ROOM, map! {}).await;
    b.sync().await;
    let mut c = Client::connect(&env.ws_url(2)).await;
    c.send(t::JOIN_ROOM, join_data(&room_id, "c", "")).await;
    c.expect_error("E001", "room not found").await;
}

#[tokio::test]
async fn room_lives_on_while_a_member_remains() {
    let env = Env::start().await;
    let [a, mut b] = open_room::<2>(&env).await;
    let room_id = a.room_id.clone();
    drop(a);
    b.expect(t::MEMBER_LEFT).await;
    let (c, joined) = join_room(&env, 2, &room_id, "c", "").await;
    assert_eq!(joined.array("members").len(), 2);
    expect_member_joined(&mut [&mut b], &c).await;
}

#[tokio::test]
async fn disconnect_broadcasts_member_left_without_room_closed() {
    let env = Env::start().await;
    let [mut a, b, mut c] = open_room::<3>(&env).await;
    let gone = b.id.clone();
    drop(b);
    for m in [&mut a, &mut c] {
        assert_eq!(m.expect(t::MEMBER_LEFT).await.str("id"), gone);
    }
    // Next frames are the chat, not a RoomClosed.
    assert_room_chats(&mut [&mut a, &mut c]).await;
}

#[tokio::test]
async fn close_frame_from_client_is_a_disconnect() {
    let env = Env::start().await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    b.send_close(1000).await;
    assert_eq!(a.expect(t::MEMBER_LEFT).await.str("id"), b.id);
}

#[tokio::test]
async fn concurrent_joins_never_overfill_a_room() {
    let env = Env::start_with(Opts::new().flag("--max-room-members", 2)).await;
    let a = create_room(&env, 0, "a").await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let url = env.ws_url(i);
        let room_id = a.room_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await;
            c.send(t::JOIN_ROOM, join_data(&room_id, &format!("j{i}"), ""))
                .await;
            let (ty, data) = c.recv().await;
            (ty, data, c)
        }));
    }
    let mut joined = 0;
    let mut keep = Vec::new();
    for task in tasks {
        let (ty, data, c) = task.await.expect("join task");
        match ty {
            t::ROOM_JOINED => joined += 1,
            t::ERROR => assert_eq!(
                (data.str("code"), data.str("msg")),
                ("E002", "room is full")
            ),
            other => panic!("unexpected 0x{other:02X} {data}"),
        }
        keep.push(c);
    }
    assert_eq!(joined, 1, "exactly one joiner fits into a room of 2");
}
