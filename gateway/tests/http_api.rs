//! The public HTTP surface over a real loopback server: every route, every
//! error, status and body.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use arthas_gateway::http::HttpConfig;
use arthas_gateway::{Authority, Gateway, GatewayConfig};
use bytes::Bytes;
use hyper::Method;
use protocol::reject::texts;
use serde_json::json;
use support::*;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

async fn public() -> Public {
    start_public(gateway(gateway_config()), HttpConfig::default()).await
}

async fn public_with(config: HttpConfig) -> Public {
    start_public(gateway(gateway_config()), config).await
}

/// Creates a public room through the API and returns its id.
async fn create_public(p: &Public, title: &str, tags: &[&str]) -> String {
    let a = post_json(
        &format!("{}/v1/rooms", p.server.base),
        json!({"public": true, "title": title, "tags": tags, "keyEncoded": "k3y", "ephemeral": 30}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert!(a.json().get("listingError").is_none(), "{}", a.text());
    a.json()["roomId"].as_str().unwrap().to_owned()
}

// ---- /ping, /healthz, /readyz ------------------------------------------------

#[tokio::test]
async fn ping_answers_pong_to_any_method() {
    let p = public().await;
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let a = call(
            method,
            &format!("{}/ping", p.server.base),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), Some("text/plain"));
        assert_eq!(a.text(), "pong");
    }
}

#[tokio::test]
async fn health_and_readiness_are_ok_while_the_store_answers() {
    let p = public().await;
    for path in ["/healthz", "/readyz"] {
        let a = get(&format!("{}{path}", p.server.base)).await;
        assert_eq!(a.status, 200, "{path}");
    }
}

#[tokio::test]
async fn readiness_fails_with_a_problem_when_the_store_is_down() {
    let down = Gateway::new(Arc::new(DownStore), gateway_config()).unwrap();
    let p = start_public(down, HttpConfig::default()).await;
    let a = get(&format!("{}/readyz", p.server.base)).await;
    a.problem(503);
    let hub = get(&format!("{}/api/hub", p.server.base)).await;
    assert_eq!(hub.status, 503);
    let room = get(&format!("{}/v1/rooms/V1StGXR8_Z5jdHi6B-myT", p.server.base)).await;
    assert_eq!(room.problem(503)["code"], "E005");
}

// ---- /api/hub -------------------------------------------------------------------

#[tokio::test]
async fn hub_lists_public_rooms_in_the_reference_shape() {
    let p = public().await;
    p.online.store(7, Ordering::Relaxed);
    let id = create_public(&p, "<b>Rust</b> talk", &["rust"]).await;
    // a private room is not listed
    let private = post_json(&format!("{}/v1/rooms", p.server.base), json!({})).await;
    assert_eq!(private.status, 201);

    let a = get(&format!("{}/api/hub", p.server.base)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(
        a.header("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );
    assert!(a.text().ends_with('\n'));
    assert!(a.header("access-control-allow-origin").is_none());
    let page = a.json();
    assert_eq!(page["total"], 1);
    assert_eq!(page["limit"], 50);
    assert_eq!(page["offset"], 0);
    assert_eq!(page["totalOnline"], 7);
    let room = &page["rooms"][0];
    assert_eq!(room["roomId"], id.as_str());
    assert_eq!(room["title"], "Rust talk");
    assert_eq!(room["description"], "");
    assert_eq!(room["tags"], json!(["rust"]));
    assert_eq!(room["memberCount"], 0);
    assert_eq!(room["hasPassword"], false);
    assert_eq!(room["expiresAt"], 0);
    assert_eq!(room["messageCount5min"], 0);
    assert!(room["createdAt"].as_i64().unwrap() > 0);
    assert!(room.get("isDailyTopic").is_none());
    assert_eq!(room["shareCode"], format!("{id}:k3y:30:0"));
}

#[tokio::test]
async fn hub_filters_by_tag_and_text_and_pages() {
    let p = public().await;
    create_public(&p, "Rust", &["rust"]).await;
    create_public(&p, "Go", &["golang"]).await;
    create_public(&p, "Untagged", &[]).await;
    let base = &p.server.base;
    let a = get(&format!("{base}/api/hub?tag=RUST")).await.json();
    assert_eq!(a["total"], 1);
    assert_eq!(a["rooms"][0]["title"], "Rust");
    let a = get(&format!("{base}/api/hub?q=unt")).await.json();
    assert_eq!(a["rooms"][0]["title"], "Untagged");
    assert!(a["rooms"][0]["tags"].is_null());
    let a = get(&format!("{base}/api/hub?limit=1&offset=1&sort=newest"))
        .await
        .json();
    assert_eq!(a["total"], 3);
    assert_eq!(a["limit"], 1);
    assert_eq!(a["offset"], 1);
    assert_eq!(a["rooms"].as_array().unwrap().len(), 1);
    let a = get(&format!("{base}/api/hub?offset=10")).await.json();
    assert_eq!(a["rooms"], json!([]));
    assert_eq!(a["total"], 3);
}

#[tokio::test]
async fn hub_refuses_bad_parameters_with_the_reference_texts() {
    let p = public().await;
    for (query, text) in [
        ("limit=-1", "invalid limit parameter"),
        ("limit=abc", "invalid limit parameter"),
        ("limit=101", "limit must not exceed 100"),
        ("offset=-5", "invalid offset parameter"),
        ("offset=x", "invalid offset parameter"),
    ] {
        let a = get(&format!("{}/api/hub?{query}", p.server.base)).await;
        assert_eq!(a.status, 400, "{query}");
        assert_eq!(a.text(), format!("{{\"error\":\"{text}\"}}\n"), "{query}");
        assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    }
}

#[tokio::test]
async fn hub_cors_echoes_the_raw_origin_list_and_options_is_204() {
    let p = public_with(HttpConfig {
        allowed_origins: "https://a.example, https://b.example".into(),
        hub_requests_per_minute: 1,
        ..HttpConfig::default()
    })
    .await;
    for path in ["/api/hub", "/api/hub/stats"] {
        let url = format!("{}{path}", p.server.base);
        // OPTIONS is answered before the rate limit: many in a row are fine
        for _ in 0..3 {
            let a = call(Method::OPTIONS, &url, &[], Bytes::new()).await;
            assert_eq!(a.status, 204, "{path}");
            assert_eq!(
                a.header("access-control-allow-origin"),
                Some("https://a.example, https://b.example")
            );
            assert_eq!(
                a.header("access-control-allow-methods"),
                Some("GET, OPTIONS")
            );
            assert_eq!(
                a.header("access-control-allow-headers"),
                Some("Content-Type")
            );
        }
        let a = get(&url).await;
        assert_eq!(a.status, 200, "{path}");
        assert!(a.header("access-control-allow-origin").is_some());
    }
}

#[tokio::test]
async fn hub_other_methods_get_405_with_the_reference_body() {
    let p = public_with(HttpConfig {
        allowed_origins: "https://a.example".into(),
        ..HttpConfig::default()
    })
    .await;
    for path in ["/api/hub", "/api/hub/stats"] {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
            let a = call(
                method.clone(),
                &format!("{}{path}", p.server.base),
                &[],
                Bytes::new(),
            )
            .await;
            assert_eq!(a.status, 405, "{method} {path}");
            if method != Method::HEAD {
                assert_eq!(a.text(), "{\"error\":\"method not allowed\"}\n");
            }
            assert_eq!(
                a.header("access-control-allow-origin"),
                Some("https://a.example")
            );
        }
    }
}

#[tokio::test]
async fn hub_rate_limits_each_client_ip_per_minute() {
    let p = public_with(HttpConfig {
        hub_requests_per_minute: 2,
        ..HttpConfig::default()
    })
    .await;
    let url = format!("{}/api/hub", p.server.base);
    assert_eq!(get(&url).await.status, 200);
    // a 400 still counts as a request
    assert_eq!(get(&format!("{url}?limit=x")).await.status, 400);
    let a = get(&url).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("retry-after"), Some("60"));
    assert_eq!(a.text(), "{\"error\":\"rate limited, try again later\"}\n");
    // stats are not rate limited
    assert_eq!(get(&format!("{url}/stats")).await.status, 200);
}

#[tokio::test]
async fn forwarded_for_is_the_client_only_when_trusted() {
    let url_of = |p: &Public| format!("{}/api/hub", p.server.base);
    let untrusted = public_with(HttpConfig {
        hub_requests_per_minute: 1,
        ..HttpConfig::default()
    })
    .await;
    let a = call(
        Method::GET,
        &url_of(&untrusted),
        &[("x-forwarded-for", "1.1.1.1")],
        Bytes::new(),
    )
    .await;
    assert_eq!(a.status, 200);
    let b = call(
        Method::GET,
        &url_of(&untrusted),
        &[("x-forwarded-for", "2.2.2.2")],
        Bytes::new(),
    )
    .await;
    assert_eq!(b.status, 429, "without trust both are the loopback peer");

    // Behind a trusted proxy that appends, the rightmost entry is the client.
    let trusted = public_with(HttpConfig {
        hub_requests_per_minute: 1,
        trusted_proxies: "127.0.0.1".parse().expect("a trusted range"),
        ..HttpConfig::default()
    })
    .await;
    let url = url_of(&trusted);
    for ip in ["1.1.1.1", "2.2.2.2"] {
        let a = call(Method::GET, &url, &[("x-forwarded-for", ip)], Bytes::new()).await;
        assert_eq!(a.status, 200, "{ip} has its own budget");
    }
    let a = call(
        Method::GET,
        &url,
        &[("x-forwarded-for", "9.9.9.9, 1.1.1.1")],
        Bytes::new(),
    )
    .await;
    assert_eq!(
        a.status, 429,
        "a forged entry left of the proxy's is ignored"
    );
    let a = call(
        Method::GET,
        &url,
        &[("x-forwarded-for", "junk"), ("x-real-ip", "3.3.3.3")],
        Bytes::new(),
    )
    .await;
    assert_eq!(a.status, 200, "junk: the proxy itself is the client");
    let a = call(
        Method::GET,
        &url,
        &[("x-forwarded-for", "junk"), ("x-real-ip", "4.4.4.4")],
        Bytes::new(),
    )
    .await;
    assert_eq!(a.status, 429, "X-Real-IP is never read");
}

#[tokio::test]
async fn hub_stats_report_online_and_no_match_module() {
    let p = public().await;
    p.online.store(42, Ordering::Relaxed);
    let a = get(&format!("{}/api/hub/stats", p.server.base)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(
        a.json(),
        json!({"online": 42, "matchEnabled": false, "matchQueueSize": 0})
    );
}

// ---- POST /v1/rooms ----------------------------------------------------------

#[tokio::test]
async fn creating_a_room_returns_201_with_its_id_and_location() {
    let p = public().await;
    let a = post_json(
        &format!("{}/v1/rooms", p.server.base),
        json!({"password": pw('a'), "expiry": 10_000_000, "ephemeral": 5}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let body = a.json();
    let id = body["roomId"].as_str().unwrap();
    assert_eq!(id.len(), 21);
    assert_eq!(
        a.header("location"),
        Some(format!("/v1/rooms/{id}").as_str())
    );
    assert_eq!(body["hasPassword"], true);
    let record = p.gateway.store().room(id).await.unwrap().unwrap();
    assert_eq!(body["expiresAt"], record.expires_at);
    assert_eq!(
        record.expires_at - record.created_at,
        604_800,
        "expiry is clamped"
    );
    assert_eq!(record.ephemeral, 5);
    assert!(record.password_hash.starts_with("$argon2id$"));
}

#[tokio::test]
async fn an_empty_body_creates_a_plain_room() {
    let p = public().await;
    let a = call(
        Method::POST,
        &format!("{}/v1/rooms", p.server.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.json()["hasPassword"], false);
    assert_eq!(a.json()["expiresAt"], 0);
}

#[tokio::test]
async fn a_bad_listing_still_creates_the_room_and_says_why() {
    let p = public().await;
    let a = post_json(
        &format!("{}/v1/rooms", p.server.base),
        json!({"public": true, "title": "ok", "tags": ["no spaces"], "keyEncoded": "k"}),
    )
    .await;
    assert_eq!(a.status, 201);
    assert_eq!(
        a.json()["listingError"],
        json!({"code": "E011", "msg": "tag \"no spaces\" contains invalid characters (alphanumeric and hyphens only)"})
    );
    let a = post_json(
        &format!("{}/v1/rooms", p.server.base),
        json!({"public": true, "title": "ok"}),
    )
    .await;
    assert_eq!(
        a.json()["listingError"],
        json!({"code": "E011", "msg": "keyEncoded is required for public rooms"})
    );
    // The key is stored in the share code: it is bounded before that.
    let a = post_json(
        &format!("{}/v1/rooms", p.server.base),
        json!({"public": true, "title": "ok", "keyEncoded": "k".repeat(129)}),
    )
    .await;
    assert_eq!(
        a.json()["listingError"],
        json!({"code": "E011", "msg": "keyEncoded is too long"})
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let p = public().await;
    let url = format!("{}/v1/rooms", p.server.base);
    // Whitespace alone is not JSON (only a body of no bytes reads as {}).
    for body in ["{", "[1,2]", "{\"expiry\": \"soon\"}", "\u{0}", "\t\r", " "] {
        let a = call(Method::POST, &url, &[], body.to_owned()).await;
        let problem = a.problem(400);
        assert!(
            problem["detail"].as_str().unwrap().contains("JSON"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_oversized_body_is_a_413_problem() {
    let p = public_with(HttpConfig {
        max_body_bytes: 64,
        ..HttpConfig::default()
    })
    .await;
    let body = json!({"title": "x".repeat(100)}).to_string();
    let a = call(
        Method::POST,
        &format!("{}/v1/rooms", p.server.base),
        &[],
        body,
    )
    .await;
    a.problem(413);
}

#[tokio::test]
async fn a_password_that_is_not_a_sha256_hex_is_refused_with_e005() {
    let p = public().await;
    let a = post_json(
        &format!("{}/v1/rooms", p.server.base),
        json!({"password": "short"}),
    )
    .await;
    let problem = a.problem(400);
    assert_eq!(problem["code"], "E005");
    assert_eq!(problem["detail"], "invalid password format");
}

#[tokio::test]
async fn room_creation_is_rate_limited_per_ip() {
    let p = start_public(
        gateway(GatewayConfig {
            room_creations_per_minute: 1,
            ..gateway_config()
        }),
        HttpConfig::default(),
    )
    .await;
    let url = format!("{}/v1/rooms", p.server.base);
    assert_eq!(post_json(&url, json!({})).await.status, 201);
    let a = post_json(&url, json!({})).await;
    let problem = a.problem(429);
    assert_eq!(problem["code"], "E004");
    assert_eq!(a.header("retry-after"), Some("60"));
}

#[tokio::test]
async fn the_room_collection_only_takes_post() {
    let p = public().await;
    let a = get(&format!("{}/v1/rooms", p.server.base)).await;
    a.problem(405);
    assert_eq!(a.header("allow"), Some("POST"));
}

// ---- slow clients ----------------------------------------------------------------

/// A client that sends its headers and then trickles its body gets 408 once the body read
/// timeout passes, and holds nothing longer.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = public_with(HttpConfig {
        body_read_timeout: std::time::Duration::from_millis(300),
        ..HttpConfig::default()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(p.server.addr).await.unwrap();
    tcp.write_all(
        b"POST /v1/rooms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut answer),
    )
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection past the timeout"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

// ---- GET /v1/rooms/{id} ----------------------------------------------------------

#[tokio::test]
async fn room_lookups_are_rate_limited_per_ip() {
    let p = public_with(HttpConfig {
        room_lookups_per_minute: 3,
        ..HttpConfig::default()
    })
    .await;
    let url = format!("{}/v1/rooms/AAAAAAAAAAAAAAAAAAAAA", p.server.base);
    let answers = futures_util::future::join_all((0..10).map(|_| get(&url))).await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [404, 404, 404, 429, 429, 429, 429, 429, 429, 429]);
    let limited = answers.iter().find(|a| a.status == 429).unwrap();
    assert_eq!(limited.problem(429)["code"], "E004");
    assert_eq!(limited.header("retry-after"), Some("60"));
}

#[tokio::test]
async fn a_room_can_be_looked_up_by_id() {
    let p = public().await;
    let created = post_json(
        &format!("{}/v1/rooms", p.server.base),
        json!({"password": pw('a'), "expiry": 60}),
    )
    .await
    .json();
    let id = created["roomId"].as_str().unwrap();
    let a = get(&format!("{}/v1/rooms/{id}", p.server.base)).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        json!({"roomId": id, "hasPassword": true, "expiresAt": created["expiresAt"]})
    );
    // a listed room shows its member count
    let listed = create_public(&p, "Listed", &[]).await;
    let a = get(&format!("{}/v1/rooms/{listed}", p.server.base)).await;
    assert_eq!(a.json()["memberCount"], 0);
}

#[tokio::test]
async fn an_unknown_room_is_a_404_problem_with_e001() {
    let p = public().await;
    let a = get(&format!("{}/v1/rooms/V1StGXR8_Z5jdHi6B-myT", p.server.base)).await;
    let problem = a.problem(404);
    assert_eq!(problem["code"], "E001");
    assert_eq!(problem["detail"], "room not found");
    // not even a room id
    get(&format!("{}/v1/rooms/bad%20id", p.server.base))
        .await
        .problem(404);
    get(&format!("{}/v1/nothing/here", p.server.base))
        .await
        .problem(404);
    let a = call(
        Method::DELETE,
        &format!("{}/v1/rooms/abc", p.server.base),
        &[],
        Bytes::new(),
    )
    .await;
    a.problem(405);
}

// ---- POST /v1/rooms/{id}/tickets ------------------------------------------------------

async fn password_room(p: &Public) -> String {
    post_json(
        &format!("{}/v1/rooms", p.server.base),
        json!({"password": pw('a')}),
    )
    .await
    .json()["roomId"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_right_password_gets_a_ticket_that_joins_once() {
    let p = public().await;
    let id = password_room(&p).await;
    let a = post_json(
        &format!("{}/v1/rooms/{id}/tickets", p.server.base),
        json!({"password": pw('a')}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let body = a.json();
    let ticket = body["ticket"].as_str().unwrap();
    let now = store::unix_secs();
    let expires_at = body["expiresAt"].as_i64().unwrap();
    assert!(expires_at > now && expires_at <= now + 61);
    // the relay redeems it through the Authority, once
    let authority: &dyn Authority = &p.gateway;
    assert_eq!(authority.redeem_ticket(&id, ticket).await, Ok(()));
    assert_eq!(
        authority.redeem_ticket(&id, ticket).await,
        Err(texts::INVALID_TICKET)
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_403_problem_with_e006() {
    let p = public().await;
    let id = password_room(&p).await;
    let a = post_json(
        &format!("{}/v1/rooms/{id}/tickets", p.server.base),
        json!({"password": pw('b')}),
    )
    .await;
    let problem = a.problem(403);
    assert_eq!(problem["code"], "E006");
    assert_eq!(problem["detail"], "wrong password");
}

#[tokio::test]
async fn too_many_wrong_guesses_are_a_429_problem_with_e004() {
    let g = gateway(GatewayConfig {
        max_password_guesses_per_room_ip: 2,
        ..gateway_config()
    });
    let p = start_public(g, HttpConfig::default()).await;
    let id = password_room(&p).await;
    let url = format!("{}/v1/rooms/{id}/tickets", p.server.base);
    for _ in 0..2 {
        post_json(&url, json!({"password": pw('b')}))
            .await
            .problem(403);
    }
    let a = post_json(&url, json!({"password": pw('a')})).await;
    let problem = a.problem(429);
    assert_eq!(problem["code"], "E004");
    assert_eq!(
        problem["detail"],
        "too many wrong passwords, try again later"
    );
    assert_eq!(a.header("retry-after"), Some("300"));
}

#[tokio::test]
async fn a_ticket_for_an_unknown_room_is_a_404_problem() {
    let p = public().await;
    let a = post_json(
        &format!("{}/v1/rooms/V1StGXR8_Z5jdHi6B-myT/tickets", p.server.base),
        json!({"password": pw('a')}),
    )
    .await;
    assert_eq!(a.problem(404)["code"], "E001");
}

#[tokio::test]
async fn a_room_without_password_gives_tickets_freely() {
    let p = public().await;
    let id = post_json(&format!("{}/v1/rooms", p.server.base), json!({}))
        .await
        .json()["roomId"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = call(
        Method::POST,
        &format!("{}/v1/rooms/{id}/tickets", p.server.base),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let tickets = call(
        Method::GET,
        &format!("{}/v1/rooms/{id}/tickets", p.server.base),
        &[],
        Bytes::new(),
    )
    .await;
    tickets.problem(405);
}

// ---- /openapi.json ---------------------------------------------------------------

#[tokio::test]
async fn the_openapi_document_describes_the_room_api() {
    let p = public().await;
    let a = get(&format!("{}/openapi.json", p.server.base)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let doc = a.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/rooms"]["post"].is_object());
    assert!(doc["paths"]["/v1/rooms/{roomId}"]["get"].is_object());
    assert!(doc["paths"]["/v1/rooms/{roomId}/tickets"]["post"].is_object());
}

// ---- the web client -------------------------------------------------------------

#[tokio::test]
async fn the_root_serves_the_web_client_with_a_strict_csp() {
    let p = public().await;
    let a = get(&format!("{}/", p.server.base)).await;
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(a.header("cache-control"), Some("no-cache"));
    assert_eq!(a.header("content-security-policy"), Some(CSP));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(a.header("referrer-policy"), Some("no-referrer"));
    assert!(a.text().to_lowercase().contains("<html"));
}

#[tokio::test]
async fn the_page_may_connect_to_exactly_the_configured_origins() {
    let csp = arthas_gateway::web::ContentSecurityPolicy::new(&["wss://relays.example.com".into()])
        .unwrap();
    let p = public_with(HttpConfig {
        content_security_policy: csp,
        ..HttpConfig::default()
    })
    .await;
    let a = get(&format!("{}/", p.server.base)).await;
    let policy = a.header("content-security-policy").unwrap();
    let connect = policy
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("connect-src"))
        .unwrap();
    assert_eq!(connect, "connect-src 'self' wss://relays.example.com");
}

#[tokio::test]
async fn unknown_paths_fall_back_to_the_index() {
    let p = public().await;
    let index = get(&format!("{}/", p.server.base)).await;
    let a = get(&format!("{}/room/some-client-route", p.server.base)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("cache-control"), Some("no-cache"));
    assert_eq!(a.header("content-security-policy"), Some(CSP));
    assert_eq!(a.body, index.body);
}

#[tokio::test]
async fn tooling_files_of_web_are_not_served() {
    let p = public().await;
    let index = get(&format!("{}/", p.server.base)).await;
    for path in ["/package.json", "/package-lock.json", "/node_modules/x"] {
        let a = get(&format!("{}{path}", p.server.base)).await;
        assert_eq!(a.body, index.body, "{path} falls back to the index");
    }
}

#[tokio::test]
async fn existing_files_are_served_with_their_type() {
    let p = public().await;
    let a = get(&format!("{}/favicon.svg", p.server.base)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("image/svg+xml"));
    assert!(
        a.header("content-security-policy").is_none(),
        "CSP is for HTML"
    );
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert!(a.text().contains("<svg"));
    let a = get(&format!("{}/js/app.js", p.server.base)).await;
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").unwrap().contains("javascript"));
    let a = call(
        Method::POST,
        &format!("{}/", p.server.base),
        &[],
        Bytes::new(),
    )
    .await;
    a.problem(405);
}
