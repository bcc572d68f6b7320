//! The public room directory: listing on CreateRoom, E010/E011, /api/hub queries, paging,
//! errors, CORS, rate limit, /api/hub/stats (PROTOCOL.md §2.1 step 12, §9).

use std::time::Duration;

use rmpv::Value;
use serde_json::Value as Json;

use crate::map;
use crate::support::http::{self, HttpResponse};
use crate::support::msg::{now_secs, password_hash, str_array};
use crate::support::room::{create_on, create_room_with, expect_member_joined, join_room, Member};
use crate::support::{assert_room_chats, say, t, Client, Env, Opts, TestClock, ValueExt};

/// CreateRoom data for a public room.
fn public_room(name: &str, title: &str, tags: &[&str]) -> Value {
    map! {
        "name" => name, "password" => "", "ephemeral" => 0, "expiry" => 0,
        "public" => true, "title" => title, "description" => "", "tags" => str_array(tags),
        "keyEncoded" => "a2V5LWtleS1rZXk"
    }
}

/// Replaces (or adds) one field of a map.
fn with(data: Value, key: &str, value: Value) -> Value {
    let Value::Map(mut map) = data else {
        panic!("not a map: {data}")
    };
    match map.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
        Some((_, v)) => *v = value,
        None => map.push((Value::from(key), value)),
    }
    Value::Map(map)
}

/// Removes one field of a map.
fn without(data: Value, key: &str) -> Value {
    let Value::Map(mut map) = data else {
        panic!("not a map: {data}")
    };
    map.retain(|(k, _)| k.as_str() != Some(key));
    Value::Map(map)
}

/// An env whose hub rate limit does not get in the way.
async fn hub_env() -> Env {
    Env::start_with(Opts::new().flag("--hub-requests-per-minute", 10_000)).await
}

async fn hub(env: &Env, query: &str) -> HttpResponse {
    http::get(&format!("{}/api/hub{query}", env.http_url(0))).await
}

async fn listing(env: &Env, query: &str) -> Json {
    let resp = hub(env, query).await;
    assert_eq!(resp.status, 200, "GET /api/hub{query}: {}", resp.text());
    resp.json()
}

fn room_ids(list: &Json) -> Vec<String> {
    list["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("rooms is not an array: {list}"))
        .iter()
        .map(|r| r["roomId"].as_str().expect("roomId").to_string())
        .collect()
}

/// Creates a public room on `node` and checks that no error follows RoomJoined. Keep the
/// returned member alive (`let _open = ...`): dropping it empties the room and unlists it.
async fn create_public(env: &Env, node: usize, data: Value) -> Member {
    let (mut m, _, _) = create_room_with(env, node, data).await;
    m.sync().await;
    m
}

/// Creates a room with `data` and expects `E011 text` right after RoomJoined; the room
/// stays usable (someone can join and chat) and is not listed.
async fn expect_e011(env: &Env, data: Value, text: &str) {
    let (mut a, _, _) = create_room_with(env, 0, data).await;
    a.expect_error("E011", text).await;
    let (mut b, _) = join_room(env, 1, &a.room_id, "b", "").await;
    expect_member_joined(&mut [&mut a], &b).await;
    assert_room_chats(&mut [&mut a, &mut b]).await;
    assert!(
        !room_ids(&listing(env, "").await).contains(&a.room_id),
        "a room refused with E011 must not be listed"
    );
}

#[tokio::test]
async fn public_room_is_listed_with_its_share_code() {
    let env = hub_env().await;
    let data = map! {
        "name" => "host", "password" => "", "ephemeral" => 60, "expiry" => 3600,
        "public" => true, "title" => "Rust fans", "description" => "All about Rust",
        "tags" => str_array(&["rust", "dev-talk"]), "keyEncoded" => "S0VZa2V5"
    };
    let before = now_secs();
    let (mut m, created, _) = create_room_with(&env, 0, data).await;
    m.sync().await;
    let resp = hub(&env, "").await;
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json"),
        "content-type {:?}",
        resp.header("content-type")
    );
    assert_eq!(
        resp.header("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );
    let list = resp.json();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["limit"], 50);
    assert_eq!(list["offset"], 0);
    assert!(
        list["totalOnline"].as_u64().is_some(),
        "totalOnline: {list}"
    );
    let room = &list["rooms"][0];
    let expires_at = created.int("expiresAt");
    let mut keys: Vec<&str> = room
        .as_object()
        .expect("room object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "createdAt",
            "description",
            "expiresAt",
            "hasPassword",
            "memberCount",
            "messageCount5min",
            "roomId",
            "shareCode",
            "tags",
            "title"
        ],
        "{room}"
    );
    assert_eq!(room["roomId"], m.room_id.as_str());
    assert_eq!(
        room["shareCode"],
        format!("{}:S0VZa2V5:60:{expires_at}", m.room_id).as_str()
    );
    assert_eq!(room["title"], "Rust fans");
    assert_eq!(room["description"], "All about Rust");
    assert_eq!(room["tags"], serde_json::json!(["rust", "dev-talk"]));
    assert_eq!(room["memberCount"], 1);
    assert_eq!(room["hasPassword"], false);
    assert_eq!(room["expiresAt"], expires_at);
    assert_eq!(room["messageCount5min"], 0);
    let created_at = room["createdAt"].as_i64().expect("createdAt");
    assert!(
        (before..=now_secs()).contains(&created_at),
        "createdAt {created_at}"
    );
}

#[tokio::test]
async fn private_rooms_are_not_listed() {
    let env = hub_env().await;
    let base = public_room("p", "Private", &[]);
    let _open = create_public(&env, 0, with(base.clone(), "public", Value::from(false))).await;
    let _open = create_public(&env, 1, without(base.clone(), "public")).await;
    let _open = create_public(&env, 2, with(base, "public", Value::from(1))).await;
    let list = listing(&env, "").await;
    assert_eq!(list["total"], 0, "{list}");
    assert_eq!(list["rooms"], serde_json::json!([]));
}

#[tokio::test]
async fn tags_are_null_when_the_room_has_none() {
    let env = hub_env().await;
    let a = create_public(&env, 0, without(public_room("a", "No tags", &[]), "tags")).await;
    let b = create_public(&env, 1, public_room("b", "Empty tags", &[])).await;
    let list = listing(&env, "").await;
    for room in list["rooms"].as_array().expect("rooms") {
        assert!(room["roomId"] == a.room_id.as_str() || room["roomId"] == b.room_id.as_str());
        assert_eq!(room["tags"], Json::Null, "{room}");
    }
}

#[tokio::test]
async fn non_string_tags_are_dropped() {
    let env = hub_env().await;
    let tags = Value::Array(vec![Value::from("ok"), Value::from(5), Value::from("fine")]);
    let _open = create_public(&env, 0, with(public_room("a", "Mixed", &[]), "tags", tags)).await;
    let list = listing(&env, "").await;
    assert_eq!(list["rooms"][0]["tags"], serde_json::json!(["ok", "fine"]));
}

#[tokio::test]
async fn member_count_follows_joins_and_leaves_and_empty_rooms_vanish() {
    let env = hub_env().await;
    let mut a = create_public(&env, 0, public_room("a", "Counted", &[])).await;
    let (mut b, _) = join_room(&env, 1, &a.room_id, "b", "").await;
    expect_member_joined(&mut [&mut a], &b).await;
    let (mut c, _) = join_room(&env, 2, &a.room_id, "c", "").await;
    expect_member_joined(&mut [&mut a, &mut b], &c).await;
    assert_eq!(listing(&env, "").await["rooms"][0]["memberCount"], 3);
    c.client.send_close(1000).await;
    drop(c);
    a.expect(t::MEMBER_LEFT).await;
    b.expect(t::MEMBER_LEFT).await;
    assert_eq!(listing(&env, "").await["rooms"][0]["memberCount"], 2);
    b.send(t::LEAVE_ROOM, map! {}).await;
    a.expect(t::MEMBER_LEFT).await;
    assert_eq!(listing(&env, "").await["rooms"][0]["memberCount"], 1);
    a.send(t::LEAVE_ROOM, map! {}).await;
    a.sync().await;
    assert_eq!(listing(&env, "").await["total"], 0);
}

#[tokio::test]
async fn password_room_is_listed_with_has_password() {
    let env = hub_env().await;
    let data = with(
        public_room("a", "Locked", &[]),
        "password",
        Value::from(password_hash("pw")),
    );
    let _open = create_public(&env, 0, data).await;
    assert_eq!(listing(&env, "").await["rooms"][0]["hasPassword"], true);
}

#[tokio::test]
async fn missing_title_gets_e011_after_room_joined() {
    let env = hub_env().await;
    expect_e011(
        &env,
        without(public_room("a", "", &[]), "title"),
        "title is required",
    )
    .await;
    expect_e011(&env, public_room("a", "", &[]), "title is required").await;
}

#[tokio::test]
async fn title_that_is_only_markup_and_spaces_is_missing() {
    let env = hub_env().await;
    expect_e011(
        &env,
        public_room("a", "  <b></b> \u{7} ", &[]),
        "title is required",
    )
    .await;
}

#[tokio::test]
async fn title_over_50_runes_gets_e011() {
    let env = hub_env().await;
    expect_e011(
        &env,
        public_room("a", &"é".repeat(51), &[]),
        "title must be 50 characters or less",
    )
    .await;
    let _open = create_public(&env, 0, public_room("a", &"é".repeat(50), &[])).await;
    assert_eq!(listing(&env, "").await["total"], 1);
}

#[tokio::test]
async fn description_over_200_runes_gets_e011() {
    let env = hub_env().await;
    let long = with(
        public_room("a", "T", &[]),
        "description",
        Value::from("ü".repeat(201)),
    );
    expect_e011(&env, long, "description must be 200 characters or less").await;
    let ok = with(
        public_room("a", "T", &[]),
        "description",
        Value::from("ü".repeat(200)),
    );
    let _open = create_public(&env, 0, ok).await;
}

#[tokio::test]
async fn more_than_5_tags_gets_e011() {
    let env = hub_env().await;
    expect_e011(
        &env,
        public_room("a", "T", &["a", "b", "c", "d", "e", "f"]),
        "maximum 5 tags allowed",
    )
    .await;
    let _open = create_public(&env, 0, public_room("a", "T", &["a", "b", "c", "d", "e"])).await;
}

#[tokio::test]
async fn tag_length_is_1_to_20_bytes() {
    let env = hub_env().await;
    expect_e011(
        &env,
        public_room("a", "T", &[""]),
        "each tag must be 1-20 characters",
    )
    .await;
    expect_e011(
        &env,
        public_room("a", "T", &[&"x".repeat(21)]),
        "each tag must be 1-20 characters",
    )
    .await;
    let _open = create_public(&env, 0, public_room("a", "T", &[&"x".repeat(20)])).await;
}

#[tokio::test]
async fn tag_with_invalid_characters_gets_e011_naming_it() {
    let env = hub_env().await;
    for tag in ["a b", "under_score", "dot.ted", "ümlaut"] {
        expect_e011(
            &env,
            public_room("a", "T", &["fine", tag]),
            &format!("tag \"{tag}\" contains invalid characters (alphanumeric and hyphens only)"),
        )
        .await;
    }
    let _open = create_public(&env, 0, public_room("a", "T", &["Dev-Talk-2"])).await;
}

#[tokio::test]
async fn missing_key_gets_e011_after_validation() {
    let env = hub_env().await;
    let no_key = with(public_room("a", "T", &[]), "keyEncoded", Value::from(""));
    expect_e011(&env, no_key, "keyEncoded is required for public rooms").await;
    let absent = without(public_room("a", "T", &[]), "keyEncoded");
    expect_e011(&env, absent, "keyEncoded is required for public rooms").await;
    // Validation comes first.
    let both = with(public_room("a", "", &[]), "keyEncoded", Value::from(""));
    expect_e011(&env, both, "title is required").await;
}

#[tokio::test]
async fn title_and_description_are_sanitised() {
    let env = hub_env().await;
    let data = with(
        public_room("a", "  <b>Hello</b> Wo\u{7}rld  ", &[]),
        "description",
        Value::from("<i>line1</i>\nline2\tend\u{1}"),
    );
    let _open = create_public(&env, 0, data).await;
    let room = listing(&env, "").await["rooms"][0].clone();
    assert_eq!(room["title"], "Hello World");
    assert_eq!(room["description"], "line1\nline2\tend");
}

#[tokio::test]
async fn markup_does_not_count_toward_the_title_limit() {
    let env = hub_env().await;
    let _open = create_public(
        &env,
        0,
        public_room("a", &format!("<p>{}</p>", "x".repeat(50)), &[]),
    )
    .await;
    assert_eq!(
        listing(&env, "").await["rooms"][0]["title"],
        "x".repeat(50).as_str()
    );
}

#[tokio::test]
async fn full_hub_gets_e010_and_the_room_stays_private() {
    let env = Env::start_with(
        Opts::new()
            .flag("--max-public-rooms", 1)
            .flag("--hub-requests-per-minute", 10_000),
    )
    .await;
    let first = create_public(&env, 0, public_room("a", "First", &[])).await;
    let (mut b, _, _) = create_room_with(&env, 1, public_room("b", "Second", &[])).await;
    b.expect_error("E010", "hub is full, room created as private")
        .await;
    let list = listing(&env, "").await;
    assert_eq!(room_ids(&list), vec![first.room_id.clone()]);
    // The second room works.
    let (c, _) = join_room(&env, 2, &b.room_id, "c", "").await;
    expect_member_joined(&mut [&mut b], &c).await;
    // Once the first room empties, there is space again.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while listing(&env, "").await["total"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "empty room still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _open = create_public(&env, 0, public_room("d", "Third", &[])).await;
    assert_eq!(listing(&env, "").await["total"], 1);
}

#[tokio::test]
async fn tag_filter_is_case_insensitive_and_exact() {
    let env = hub_env().await;
    let rust = create_public(&env, 0, public_room("a", "R", &["rust", "dev"])).await;
    let _open = create_public(&env, 1, public_room("b", "G", &["go"])).await;
    assert_eq!(
        room_ids(&listing(&env, "?tag=RUST").await),
        vec![rust.room_id.clone()]
    );
    assert_eq!(
        room_ids(&listing(&env, "?tag=rus").await),
        Vec::<String>::new()
    );
    let list = listing(&env, "?tag=dev").await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn q_matches_title_or_description_case_insensitively() {
    let env = hub_env().await;
    let by_title = create_public(&env, 0, public_room("a", "Night Owls", &[])).await;
    let by_desc = create_public(
        &env,
        1,
        with(
            public_room("b", "Other", &[]),
            "description",
            Value::from("for OWLish people"),
        ),
    )
    .await;
    let _open = create_public(&env, 2, public_room("c", "Larks", &[])).await;
    let mut got = room_ids(&listing(&env, "?q=owl").await);
    got.sort();
    let mut want = vec![by_title.room_id.clone(), by_desc.room_id.clone()];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn default_and_people_sorts_put_the_fullest_room_first() {
    let env = hub_env().await;
    let small = create_public(&env, 0, public_room("a", "Small", &[])).await;
    let mut big = create_public(&env, 1, public_room("b", "Big", &[])).await;
    let (x, _) = join_room(&env, 2, &big.room_id, "x", "").await;
    expect_member_joined(&mut [&mut big], &x).await;
    for query in ["", "?sort=people", "?sort=whatever"] {
        assert_eq!(
            room_ids(&listing(&env, query).await),
            [big.room_id.clone(), small.room_id.clone()],
            "sort for {query:?}"
        );
    }
}

#[tokio::test]
async fn newest_sort_puts_the_latest_room_first() {
    let clock = TestClock::new();
    let env =
        Env::start_with(clock.opts(Opts::new().flag("--hub-requests-per-minute", 10_000))).await;
    let old = create_public(&env, 0, public_room("a", "Old", &[])).await;
    // createdAt has whole-second resolution: the second room is created once the processes'
    // clock has left the first room's second (on a slow machine it may have left it already).
    let rooms = listing(&env, "").await;
    let old_created_at = rooms["rooms"]
        .as_array()
        .and_then(|rooms| rooms.iter().find(|r| r["roomId"] == old.room_id.as_str()))
        .and_then(|r| r["createdAt"].as_i64())
        .unwrap_or_else(|| panic!("the first room's createdAt in {rooms}"));
    clock.reach_secs(old_created_at + 1);
    let new = create_public(&env, 1, public_room("b", "New", &[])).await;
    assert_eq!(
        room_ids(&listing(&env, "?sort=newest").await),
        [new.room_id.clone(), old.room_id.clone()]
    );
}

#[tokio::test]
async fn activity_counts_chat_messages_not_reactions_and_drives_the_active_sort() {
    let env = hub_env().await;
    let mut quiet = create_public(&env, 0, public_room("q", "Quiet", &[])).await;
    let (mut quiet_b, _) = join_room(&env, 1, &quiet.room_id, "qb", "").await;
    expect_member_joined(&mut [&mut quiet], &quiet_b).await;
    let mut busy = create_public(&env, 2, public_room("b", "Busy", &[])).await;
    let (mut busy_b, _) = join_room(&env, 0, &busy.room_id, "bb", "").await;
    expect_member_joined(&mut [&mut busy], &busy_b).await;
    say(&mut busy, &mut [&mut busy_b]).await;
    say(&mut busy_b, &mut [&mut busy]).await;
    for _ in 0..3 {
        quiet
            .send(t::SEND_REACTION, map! {"iv" => "i", "ciphertext" => "c"})
            .await;
        quiet_b.expect(t::RELAY_REACTION).await;
    }
    let list = listing(&env, "?sort=active").await;
    assert_eq!(
        room_ids(&list),
        [busy.room_id.clone(), quiet.room_id.clone()]
    );
    assert_eq!(list["rooms"][0]["messageCount5min"], 2);
    assert_eq!(list["rooms"][1]["messageCount5min"], 0);
}

#[tokio::test]
async fn paging_with_limit_and_offset() {
    let env = hub_env().await;
    let mut rooms = Vec::new();
    for i in 0..3 {
        rooms.push(create_public(&env, i, public_room("a", &format!("Room {i}"), &[])).await);
    }
    let page = listing(&env, "?limit=2").await;
    assert_eq!(page["rooms"].as_array().expect("rooms").len(), 2);
    assert_eq!(page["total"], 3);
    assert_eq!(page["limit"], 2);
    let rest = listing(&env, "?limit=2&offset=2").await;
    assert_eq!(rest["rooms"].as_array().expect("rooms").len(), 1);
    assert_eq!(rest["offset"], 2);
    let mut all = room_ids(&page);
    all.extend(room_ids(&rest));
    all.sort();
    let mut want: Vec<String> = rooms.iter().map(|r| r.room_id.clone()).collect();
    want.sort();
    assert_eq!(all, want, "pages cover every room once");
    let past = listing(&env, "?offset=10").await;
    assert_eq!(past["rooms"], serde_json::json!([]));
    assert_eq!(past["total"], 3);
    assert_eq!(listing(&env, "?limit=0").await["limit"], 50);
    assert_eq!(listing(&env, "?limit=100").await["limit"], 100);
}

#[tokio::test]
async fn bad_limit_and_offset_get_400() {
    let env = hub_env().await;
    for (query, error) in [
        ("?limit=-1", "invalid limit parameter"),
        ("?limit=abc", "invalid limit parameter"),
        ("?limit=101", "limit must not exceed 100"),
        ("?offset=-1", "invalid offset parameter"),
        ("?offset=x", "invalid offset parameter"),
    ] {
        let resp = hub(&env, query).await;
        assert_eq!(resp.status, 400, "{query}");
        assert_eq!(resp.json(), serde_json::json!({"error": error}), "{query}");
    }
}

#[tokio::test]
async fn daily_topic_filter_finds_no_daily_rooms() {
    let env = hub_env().await;
    let room = create_public(&env, 0, public_room("a", "Plain", &[])).await;
    assert_eq!(listing(&env, "?isDailyTopic=true").await["total"], 0);
    assert_eq!(
        room_ids(&listing(&env, "?isDailyTopic=false").await),
        vec![room.room_id.clone()]
    );
    assert_eq!(listing(&env, "?isDailyTopic=maybe").await["total"], 1);
}

#[tokio::test]
async fn other_methods_get_405() {
    let env = hub_env().await;
    for path in ["/api/hub", "/api/hub/stats"] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let resp = http::request(method, &format!("{}{path}", env.http_url(0)), &[]).await;
            assert_eq!(resp.status, 405, "{method} {path}");
            assert_eq!(
                resp.json(),
                serde_json::json!({"error": "method not allowed"})
            );
        }
    }
}

#[tokio::test]
async fn options_gets_204() {
    let env = hub_env().await;
    for path in ["/api/hub", "/api/hub/stats"] {
        let resp = http::request("OPTIONS", &format!("{}{path}", env.http_url(0)), &[]).await;
        assert_eq!(resp.status, 204, "OPTIONS {path}");
    }
}

#[tokio::test]
async fn cors_headers_echo_the_raw_origins_setting() {
    let raw = "https://a.example, https://b.example";
    let env = Env::start_with(Opts::new().flag("--allowed-origins", raw)).await;
    for (method, path) in [
        ("GET", "/api/hub"),
        ("GET", "/api/hub/stats"),
        ("OPTIONS", "/api/hub"),
    ] {
        let resp = http::request(
            method,
            &format!("{}{path}", env.http_url(0)),
            &[("Origin", "https://a.example")],
        )
        .await;
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some(raw),
            "{method} {path}"
        );
        assert_eq!(
            resp.header("access-control-allow-methods"),
            Some("GET, OPTIONS")
        );
        assert_eq!(
            resp.header("access-control-allow-headers"),
            Some("Content-Type")
        );
    }
}

#[tokio::test]
async fn no_cors_headers_without_an_origins_setting() {
    let env = Env::start().await;
    let resp = hub(&env, "").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn hub_rate_limit_gets_429_with_retry_after() {
    let env = Env::start_with(Opts::new().flag("--hub-requests-per-minute", 3)).await;
    for i in 0..3 {
        assert_eq!(hub(&env, "").await.status, 200, "request {i}");
    }
    let resp = hub(&env, "").await;
    assert_eq!(resp.status, 429);
    let retry: u64 = resp
        .header("retry-after")
        .expect("Retry-After header")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        resp.json(),
        serde_json::json!({"error": "rate limited, try again later"})
    );
    // OPTIONS is answered before the rate limit, and stats are not rate-limited.
    let options = http::request("OPTIONS", &format!("{}/api/hub", env.http_url(0)), &[]).await;
    assert_eq!(options.status, 204);
    let stats = http::get(&format!("{}/api/hub/stats", env.http_url(0))).await;
    assert_eq!(stats.status, 200);
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_trusted() {
    let env = Env::start_with(Opts::new().flag("--hub-requests-per-minute", 2)).await;
    let url = format!("{}/api/hub", env.http_url(0));
    for ip in ["10.0.0.1", "10.0.0.2"] {
        let resp = http::request("GET", &url, &[("X-Forwarded-For", ip)]).await;
        assert_eq!(resp.status, 200);
    }
    let resp = http::request("GET", &url, &[("X-Forwarded-For", "10.0.0.3")]).await;
    assert_eq!(
        resp.status, 429,
        "X-Forwarded-For must not split the limit when untrusted"
    );
}

/// Behind a trusted proxy that appends to X-Forwarded-For (the test client plays the proxy on
/// 127.0.0.1), the client is the rightmost entry: whatever a client forged to its left is
/// ignored, so forging cannot buy a fresh budget.
#[tokio::test]
async fn forged_forwarded_for_entries_are_ignored_behind_a_trusted_proxy() {
    let env = Env::start_with(
        Opts::new()
            .flag("--hub-requests-per-minute", 2)
            .flag("--trusted-proxies", "127.0.0.1/32"),
    )
    .await;
    let url = format!("{}/api/hub", env.http_url(0));
    for forged in ["10.9.9.1", "10.9.9.2"] {
        let chain = format!("{forged}, 10.0.0.1");
        let resp = http::request("GET", &url, &[("X-Forwarded-For", chain.as_str())]).await;
        assert_eq!(resp.status, 200);
    }
    let resp = http::request("GET", &url, &[("X-Forwarded-For", "10.9.9.3, 10.0.0.1")]).await;
    assert_eq!(resp.status, 429, "a new forged entry is no new client");
    let resp = http::request("GET", &url, &[("X-Forwarded-For", "10.0.0.2")]).await;
    assert_eq!(resp.status, 200, "another client IP has its own budget");
}

/// The deprecated `--trust-forwarded-for` trusts the TCP peer as exactly one proxy hop: the
/// rightmost entry is the client.
#[tokio::test]
async fn deprecated_trust_forwarded_for_trusts_one_hop() {
    let env = Env::start_with(
        Opts::new()
            .flag("--hub-requests-per-minute", 1)
            .switch("--trust-forwarded-for"),
    )
    .await;
    let url = format!("{}/api/hub", env.http_url(0));
    let resp = http::request("GET", &url, &[("X-Forwarded-For", "10.9.9.1, 10.0.0.1")]).await;
    assert_eq!(resp.status, 200);
    let resp = http::request("GET", &url, &[("X-Forwarded-For", "10.9.9.2, 10.0.0.1")]).await;
    assert_eq!(resp.status, 429);
}

#[tokio::test]
async fn expired_room_leaves_the_listing() {
    let clock = TestClock::new();
    let env = Env::start_with(
        clock.opts(
            Opts::new()
                .flag("--expiry-sweep-interval-ms", 50)
                .flag("--expiry-warning-lead-secs", 0)
                .flag("--hub-requests-per-minute", 10_000),
        ),
    )
    .await;
    let data = with(public_room("a", "Brief", &[]), "expiry", Value::from(60));
    let mut a = create_public(&env, 0, data).await;
    assert_eq!(listing(&env, "").await["total"], 1);
    clock.advance(Duration::from_secs(61));
    a.timeout = Duration::from_secs(6);
    a.expect(t::ROOM_CLOSED).await;
    // The listing is dropped right after RoomClosed goes out (§4 steps 2 and 4).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while listing(&env, "").await["total"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired room still listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn public_listing_errors_do_not_block_a_fresh_client() {
    // E011 is sent after RoomJoined; the creator is in the room and can chat.
    let env = hub_env().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    create_on(&mut c, public_room("a", "", &[])).await;
    c.expect_error("E011", "title is required").await;
    c.send(t::SEND_MESSAGE, map! {"iv" => "i", "ciphertext" => "c"})
        .await;
    c.sync().await;
}
