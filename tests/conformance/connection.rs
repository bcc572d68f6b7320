//! The connection layer: /ws path, origin check, WS and app pings, read timeout, graceful
//! shutdown, /ping (PROTOCOL.md §1, §9, §10 close codes 1001 and 4002).

use std::time::Duration;

use crate::map;
use crate::support::http;
use crate::support::msg::now_ms;
use crate::support::room::{create_data, create_on, create_room, join_data};
use crate::support::{
    assert_room_chats, open_room, t, Client, ConnectError, ConnectOpts, Env, Event, Member, Opts,
    ValueExt,
};

async fn connect_with_origin(env: &Env, origin: Option<&str>) -> Result<Client, ConnectError> {
    let opts = ConnectOpts {
        origin: origin.map(str::to_string),
        ..ConnectOpts::default()
    };
    Client::connect_opts(&env.ws_url(0), &opts).await
}

async fn assert_origin_allowed(env: &Env, origin: Option<&str>) {
    match connect_with_origin(env, origin).await {
        Ok(mut c) => {
            // And the socket really works.
            create_on(&mut c, create_data("o")).await;
        }
        Err(e) => panic!("Origin {origin:?} should be allowed, got {e:?}"),
    }
}

async fn assert_origin_rejected(env: &Env, origin: Option<&str>) {
    match connect_with_origin(env, origin).await {
        Ok(_) => panic!("Origin {origin:?} should be rejected, but the upgrade succeeded"),
        Err(ConnectError::Status(code)) => assert_eq!(code, 403, "Origin {origin:?}"),
        Err(e) => panic!("Origin {origin:?}: expected HTTP 403, got {e:?}"),
    }
}

#[tokio::test]
async fn ping_endpoint_answers_pong_to_any_method() {
    let env = Env::start().await;
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
        let resp = http::request(method, &format!("{}/ping", env.http_url(0)), &[]).await;
        assert_eq!(resp.status, 200, "{method} /ping");
        let ct = resp.header("content-type").unwrap_or_default();
        assert!(
            ct.starts_with("text/plain"),
            "{method} /ping content-type {ct:?}"
        );
        assert_eq!(resp.text(), "pong", "{method} /ping body");
    }
}

#[tokio::test]
async fn websocket_endpoint_path_is_exact() {
    let env = Env::start().await;
    let base = env.ws_url(0);
    for path in ["/ws/", "/wsx", "/ws/room", "/WS", "/"] {
        let url = base.replace("/ws", path);
        match Client::connect_opts(&url, &ConnectOpts::default()).await {
            Ok(_) => panic!("{path} must not upgrade to a WebSocket"),
            Err(ConnectError::Status(code)) => assert_ne!(code, 101, "{path}"),
            Err(ConnectError::Other(_)) => {}
        }
    }
    // A query string does not change the path.
    let mut c = Client::connect(&format!("{base}?v=1")).await;
    create_on(&mut c, create_data("q")).await;
}

#[tokio::test]
async fn without_allowed_origins_every_origin_is_allowed() {
    let env = Env::start().await;
    for origin in [
        None,
        Some("https://evil.example"),
        Some("arthas-cli"),
        Some("null"),
    ] {
        assert_origin_allowed(&env, origin).await;
    }
}

#[tokio::test]
async fn allowed_origins_must_match_exactly() {
    let env =
        Env::start_with(Opts::new().flag("--allowed-origins", "https://chat.example, arthas-cli"))
            .await;
    assert_origin_allowed(&env, Some("https://chat.example")).await;
    assert_origin_allowed(&env, Some("arthas-cli")).await;
    for origin in [
        "http://chat.example",
        "https://Chat.example",
        "https://chat.example/",
        "https://chat.example:443",
        "https://evil.chat.example",
        "https://chat.example, arthas-cli",
    ] {
        assert_origin_rejected(&env, Some(origin)).await;
    }
}

#[tokio::test]
async fn missing_origin_is_rejected_when_a_list_is_set() {
    let env = Env::start_with(Opts::new().flag("--allowed-origins", "https://chat.example")).await;
    assert_origin_rejected(&env, None).await;
}

#[tokio::test]
async fn star_is_a_literal_origin_not_a_wildcard() {
    let env = Env::start_with(Opts::new().flag("--allowed-origins", "*")).await;
    assert_origin_allowed(&env, Some("*")).await;
    assert_origin_rejected(&env, Some("https://chat.example")).await;
    assert_origin_rejected(&env, None).await;
}

#[tokio::test]
async fn list_without_usable_entries_allows_everything() {
    let env = Env::start_with(Opts::new().flag("--allowed-origins", " , ,")).await;
    assert_origin_allowed(&env, None).await;
    assert_origin_allowed(&env, Some("https://any.example")).await;
}

#[tokio::test]
async fn allowed_origins_can_be_set_by_environment_variable() {
    let env =
        Env::start_with(Opts::new().env("ARTHAS_ALLOWED_ORIGINS", "https://chat.example")).await;
    assert_origin_allowed(&env, Some("https://chat.example")).await;
    assert_origin_rejected(&env, Some("https://other.example")).await;
}

#[tokio::test]
async fn origin_list_only_guards_the_websocket() {
    let env = Env::start_with(Opts::new().flag("--allowed-origins", "https://chat.example")).await;
    let resp = http::request(
        "GET",
        &format!("{}/ping", env.http_url(0)),
        &[("Origin", "https://evil.example")],
    )
    .await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn rejected_origin_is_logged_once() {
    let mut env = Env::start_with(
        Opts::new()
            .flag("--allowed-origins", "https://chat.example")
            .env("ARTHAS_LOG", "info"),
    )
    .await;
    assert_origin_rejected(&env, Some("https://evil.example")).await;
    // In a cluster the upgrade reached one relay: exactly one line over all processes.
    for (label, status) in env.terminate_all().await {
        assert!(status.success(), "{label}: {status:?}");
    }
    let logs: String = env
        .processes()
        .iter()
        .map(|p| format!("--- {}\n{}", p.label(), p.stderr()))
        .collect();
    assert_eq!(
        logs.matches("rejected origin").count(),
        1,
        "exactly one log line containing \"rejected origin\"; logs:\n{logs}"
    );
}

#[tokio::test]
async fn server_sends_ws_ping_then_app_ping_periodically() {
    let env = Env::start_with(Opts::new().flag("--ping-interval-ms", 200)).await;
    let opts = ConnectOpts {
        auto_pong: false,
        ..ConnectOpts::default()
    };
    let mut c = Client::connect_opts(&env.ws_url(0), &opts)
        .await
        .expect("connect");
    for round in 0..3 {
        match c.event("a WS ping").await {
            Event::Ping(payload) => assert!(payload.is_empty(), "WS ping payload must be empty"),
            other => panic!("round {round}: expected a WS ping first, got {other:?}"),
        }
        let before = now_ms();
        match c.event("app Ping 0x18").await {
            Event::Msg(ty, data) => {
                assert_eq!(
                    ty,
                    t::PING,
                    "round {round}: app ping after the WS ping, got {data}"
                );
                crate::support::msg::assert_keys(&data, &["t"]);
                let at = data.int("t");
                assert!(
                    (before - 2000..=now_ms() + 100).contains(&at),
                    "t {at} is not server unix ms"
                );
            }
            other => panic!("round {round}: expected app Ping 0x18, got {other:?}"),
        }
        c.send_ws_pong(vec![]).await;
    }
}

/// Reads `m` for `period`, accepting only app pings (auto-pong answers the WS pings).
async fn keep_reading(mut m: Member, period: Duration) -> Member {
    let until = tokio::time::Instant::now() + period;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return m;
        }
        match m.next_event(left).await {
            None => return m,
            Some(Event::Msg(ty, _)) if ty == t::PING => continue,
            Some(other) => panic!("{}: unexpected {other:?}", m.name),
        }
    }
}

#[tokio::test]
async fn client_answering_ws_pings_outlives_the_read_timeout() {
    let env = Env::start_with(
        Opts::new()
            .flag("--ping-interval-ms", 200)
            .flag("--read-timeout-ms", 1000),
    )
    .await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    a.skip_app_pings = true;
    b.skip_app_pings = true;
    // Both stay connected for 2.5 read timeouts, reading concurrently.
    let period = Duration::from_millis(2500);
    let ta = tokio::spawn(keep_reading(a, period));
    let tb = tokio::spawn(keep_reading(b, period));
    let mut a = ta.await.expect("reader a");
    let mut b = tb.await.expect("reader b");
    assert_room_chats(&mut [&mut a, &mut b]).await;
}

#[tokio::test]
async fn client_not_answering_ws_pings_is_closed_with_4002() {
    let env = Env::start_with(
        Opts::new()
            .flag("--ping-interval-ms", 200)
            .flag("--read-timeout-ms", 1000),
    )
    .await;
    let mut a = create_room(&env, 0, "a").await;
    a.skip_app_pings = true;
    let opts = ConnectOpts {
        auto_pong: false,
        ..ConnectOpts::default()
    };
    let mut mute = Client::connect_opts(&env.ws_url(1), &opts)
        .await
        .expect("connect");
    mute.skip_app_pings = true;
    let started = tokio::time::Instant::now();
    mute.send(t::JOIN_ROOM, join_data(&a.room_id, "mute", ""))
        .await;
    let joined = mute.expect(t::ROOM_JOINED).await;
    let mute_id = joined
        .array("members")
        .last()
        .expect("joiner")
        .str("id")
        .to_string();
    // a keeps reading (and so answering WS pings) while the mute member times out.
    let watcher = tokio::spawn(async move {
        a.timeout = Duration::from_secs(6);
        let joined = a.expect(t::MEMBER_JOINED).await.str("id").to_string();
        let left = a.expect(t::MEMBER_LEFT).await.str("id").to_string();
        (joined, left)
    });
    mute.expect_close_within(4002, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the 1 s read timeout",
        started.elapsed()
    );
    let (joined, left) = watcher.await.expect("watcher");
    assert_eq!(joined, mute_id);
    assert_eq!(left, mute_id);
}

#[tokio::test]
async fn app_pongs_and_messages_do_not_renew_the_read_deadline() {
    let env = Env::start_with(
        Opts::new()
            .flag("--ping-interval-ms", 200)
            .flag("--read-timeout-ms", 1000),
    )
    .await;
    let opts = ConnectOpts {
        auto_pong: false,
        ..ConnectOpts::default()
    };
    let mut c = Client::connect_opts(&env.ws_url(0), &opts)
        .await
        .expect("connect");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_event(left).await {
            None => panic!("not closed although no WS pong was ever sent"),
            Some(Event::Msg(ty, data)) if ty == t::PING => {
                // Answer like an app would, and keep sending application messages.
                let _ = c.try_send(t::PONG, map! {"t" => data.int("t")}).await;
                let _ = c.try_send(t::LEAVE_ROOM, map! {}).await;
            }
            Some(Event::Msg(_, _)) | Some(Event::Ping(_)) | Some(Event::Pong) => {}
            Some(Event::Close(code, _)) => {
                assert_eq!(code, Some(4002));
                break;
            }
            Some(Event::Gone(e)) => panic!("connection ended without close 4002: {e}"),
        }
    }
}

/// SIGTERM to the process behind node 0: every socket it holds is closed with 1001 and it
/// exits 0. In a cluster that is one relay: the members on the other relays stay connected,
/// see the drained member leave, and keep chatting.
#[tokio::test]
async fn graceful_shutdown_closes_every_socket_with_1001_and_exits_0() {
    let mut env = Env::start().await;
    let [a, mut b, mut c] = open_room::<3>(&env).await;
    let mut on_node0 = vec![a.client];
    let mut others = Vec::new();
    // Idle connections (in no room) on node 3 (node 0's process in a cluster of 3) and 5.
    for node in [3, 5] {
        let client = Client::connect(&env.ws_url(node)).await;
        if env.same_process(node, 0) {
            on_node0.push(client);
        } else {
            others.push(client);
        }
    }
    let waiters: Vec<_> = on_node0
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                c.expect_close_within(1001, Duration::from_secs(10)).await;
            })
        })
        .collect();
    let status = env.server(0).terminate().await;
    for w in waiters {
        w.await.expect("client saw close 1001");
    }
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
    if env.same_process(1, 0) {
        return;
    }
    // The survivors (nodes 1 and 2) see node 0's member leave, then still chat.
    for m in [&mut b, &mut c] {
        let left = m.expect(t::MEMBER_LEFT).await;
        assert_eq!(
            left.str("id"),
            a.id,
            "{}: MemberLeft of the wrong member",
            m.name
        );
    }
    assert_room_chats(&mut [&mut b, &mut c]).await;
    for mut other in others {
        other.sync().await;
    }
}

#[tokio::test]
async fn stats_count_connected_websockets() {
    // In a cluster the gateway sums the relays' heartbeats: beat often.
    let env = Env::start_with(Opts::new().flag("--heartbeat-interval-ms", 200)).await;
    let url = format!("{}/api/hub/stats", env.http_url(0));
    let stats = http::get(&url).await;
    assert_eq!(stats.status, 200);
    let json = stats.json();
    assert_eq!(json["online"], 0, "{json}");
    assert_eq!(json["matchEnabled"], false, "{json}");
    assert_eq!(json["matchQueueSize"], 0, "{json}");
    let mut a = Client::connect(&env.ws_url(0)).await;
    // A round trip proves the server has registered the connection.
    a.sync().await;
    let _room = open_room::<2>(&env).await;
    wait_online(&url, 3).await;
    drop(a);
    wait_online(&url, 2).await;
}

/// Polls `/api/hub/stats` until `online` is `n`: one process counts at once,
/// a cluster's gateway learns the relays' counts from their heartbeats.
async fn wait_online(url: &str, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let online = http::get(url).await.json()["online"].clone();
        if online == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "online stayed {online}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn server_answers_a_ws_ping_with_a_pong() {
    let env = Env::start().await;
    let mut c = Client::connect(&env.ws_url(0)).await;
    c.try_send_frame(fastwebsockets::OpCode::Ping, b"are-you-there".to_vec())
        .await
        .expect("send ping");
    match c.event("a WS pong").await {
        Event::Pong => {}
        other => panic!("expected a WS pong, got {other:?}"),
    }
    create_on(&mut c, create_data("still-here")).await;
}
