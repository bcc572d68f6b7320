//! The internal API relays call, over a real loopback server, directly and
//! through `RemoteGateway`: the remote answers must be the in-process ones.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use arthas_gateway::remote::{RemoteConfig, RemoteGateway};
use arthas_gateway::{Authority, CreateRoomRequest, GatewayConfig, ListingRequest};
use bytes::Bytes;
use hyper::Method;
use protocol::reject::texts;
use serde_json::json;
use store::ManualClock;
use support::*;

fn ip() -> IpAddr {
    "203.0.113.7".parse().unwrap()
}

fn remote(server: &Running) -> RemoteGateway {
    RemoteGateway::new(RemoteConfig::new(server.base.clone(), SECRET)).unwrap()
}

fn limited(guesses_per_room_ip: u64) -> GatewayConfig {
    GatewayConfig {
        max_password_guesses_per_room_ip: guesses_per_room_ip,
        ..gateway_config()
    }
}

#[tokio::test]
async fn requests_without_the_secret_are_a_401_problem() {
    let server = start_internal(gateway(gateway_config())).await;
    let url = format!("{}/internal/v1/rooms", server.base);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic aW50ZXJuYWw="),
        Some("Bearer"),
        Some("bearer internal-test-secre"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let a = call(Method::POST, &url, &headers, "{}").await;
        a.problem(401);
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    }
    // the scheme is case-insensitive
    let a = call(
        Method::POST,
        &url,
        &[("authorization", "bearer internal-test-secret")],
        "{}",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
}

#[tokio::test]
async fn an_empty_secret_refuses_everyone() {
    use arthas_gateway::internal::{InternalApi, InternalConfig};
    let server = start(InternalApi::new(
        gateway(gateway_config()),
        InternalConfig::new(""),
    ))
    .await;
    let a = call(
        Method::POST,
        &format!("{}/internal/v1/rooms", server.base),
        &[("authorization", "Bearer ")],
        "{}",
    )
    .await;
    a.problem(401);
}

#[tokio::test]
async fn unknown_routes_methods_and_bad_bodies_are_problems() {
    let server = start_internal(gateway(gateway_config())).await;
    let auth = [("authorization", "Bearer internal-test-secret")];
    let a = call(
        Method::POST,
        &format!("{}/internal/v1/nope", server.base),
        &auth,
        "{}",
    )
    .await;
    a.problem(404);
    let a = call(
        Method::GET,
        &format!("{}/internal/v1/rooms", server.base),
        &auth,
        Bytes::new(),
    )
    .await;
    a.problem(405);
    let a = call(
        Method::POST,
        &format!("{}/internal/v1/rooms", server.base),
        &auth,
        "{",
    )
    .await;
    a.problem(400);
    let a = call(
        Method::POST,
        &format!("{}/internal/v1/rooms/x/password-check", server.base),
        &auth,
        json!({"password": "p"}).to_string(),
    )
    .await;
    a.problem(400);
    // serde alone reads a struct from an array of its fields; the schema
    // says the listing is an object (schemathesis found this one).
    let a = call(
        Method::POST,
        &format!("{}/internal/v1/rooms", server.base),
        &auth,
        json!({"listing": []}).to_string(),
    )
    .await;
    a.problem(400);
}

#[tokio::test]
async fn remote_creation_returns_the_stored_room() {
    let g = gateway(gateway_config());
    let server = start_internal(g.clone()).await;
    let created = remote(&server)
        .create_room(CreateRoomRequest {
            password: pw('a'),
            ephemeral: 9,
            expiry_secs: 120,
            listing: Some(ListingRequest {
                title: "Remote".into(),
                key_encoded: "k".into(),
                ..Default::default()
            }),
            client_ip: Some(ip()),
            owner_hash: String::new(),
        })
        .await
        .unwrap();
    assert!(created.listing_error.is_none());
    let stored = g.store().room(&created.room.id).await.unwrap().unwrap();
    assert_eq!(created.room, arthas_gateway::NewRoomSummary::from(&stored));
    assert!(created.room.has_password);
    assert!(created.room.listed);
    assert_eq!(created.room.ephemeral, 9);
    assert_eq!(created.room.expires_at - created.room.created_at, 120);
}

#[tokio::test]
async fn remote_listing_errors_arrive_as_the_same_refusal() {
    let server = start_internal(gateway(gateway_config())).await;
    let created = remote(&server)
        .create_room(CreateRoomRequest {
            listing: Some(ListingRequest {
                title: "x".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.listing_error, Some(texts::KEY_REQUIRED));
    assert!(!created.room.listed);
}

#[tokio::test]
async fn remote_password_checks_accept_refuse_and_limit_like_in_process() {
    let g = gateway(limited(2));
    let server = start_internal(g.clone()).await;
    let remote = remote(&server);
    let room = remote
        .create_room(CreateRoomRequest {
            password: pw('a'),
            ..Default::default()
        })
        .await
        .unwrap()
        .room;
    assert_eq!(
        remote.check_password(&room.id, &pw('a'), ip()).await,
        Ok(())
    );
    assert_eq!(
        remote.check_password(&room.id, &pw('b'), ip()).await,
        Err(texts::WRONG_PASSWORD)
    );
    assert_eq!(
        remote.check_password(&room.id, &pw('b'), ip()).await,
        Err(texts::WRONG_PASSWORD)
    );
    assert_eq!(
        remote.check_password(&room.id, &pw('a'), ip()).await,
        Err(texts::TOO_MANY_GUESSES)
    );
    assert_eq!(
        remote
            .check_password("V1StGXR8_Z5jdHi6B-myT", &pw('a'), ip())
            .await,
        Err(texts::ROOM_NOT_FOUND)
    );
}

#[tokio::test]
async fn the_client_ip_travels_to_the_per_ip_guess_limit() {
    let g = gateway(GatewayConfig {
        max_password_guesses_per_ip: 1,
        ..gateway_config()
    });
    let server = start_internal(g.clone()).await;
    let remote = remote(&server);
    let room = g
        .create_room(CreateRoomRequest {
            password: pw('a'),
            ..Default::default()
        })
        .await
        .unwrap()
        .room;
    assert_eq!(
        remote.check_password(&room.id, &pw('b'), ip()).await,
        Err(texts::WRONG_PASSWORD)
    );
    assert_eq!(
        remote.check_password(&room.id, &pw('a'), ip()).await,
        Err(texts::TOO_MANY_GUESSES)
    );
    let other: IpAddr = "2001:db8::5".parse().unwrap();
    assert_eq!(
        remote.check_password(&room.id, &pw('a'), other).await,
        Ok(())
    );
}

#[tokio::test]
async fn the_client_ip_travels_to_the_creation_budget() {
    let g = gateway(GatewayConfig {
        room_creations_per_minute: 1,
        ..gateway_config()
    });
    let server = start_internal(g.clone()).await;
    let remote = remote(&server);
    let from = |ip: IpAddr| CreateRoomRequest {
        client_ip: Some(ip),
        ..Default::default()
    };
    assert!(remote.create_room(from(ip())).await.is_ok());
    assert_eq!(
        remote.create_room(from(ip())).await.unwrap_err(),
        texts::RATE_LIMITED
    );
    let other: IpAddr = "2001:db8::5".parse().unwrap();
    assert!(remote.create_room(from(other)).await.is_ok());
}

#[tokio::test]
async fn a_ticket_redeems_once_through_the_remote() {
    let g = gateway(gateway_config());
    let server = start_internal(g.clone()).await;
    let remote = remote(&server);
    let room = g
        .create_room(CreateRoomRequest::default())
        .await
        .unwrap()
        .room;
    let ticket = g.issue_ticket(&room.id).await.unwrap().ticket;
    assert_eq!(
        remote.redeem_ticket("another-room-id-xxxxx", &ticket).await,
        Err(texts::INVALID_TICKET)
    );
    assert_eq!(remote.redeem_ticket(&room.id, &ticket).await, Ok(()));
    assert_eq!(
        remote.redeem_ticket(&room.id, &ticket).await,
        Err(texts::INVALID_TICKET)
    );
    assert_eq!(
        remote.redeem_ticket(&room.id, "garbage").await,
        Err(texts::INVALID_TICKET)
    );
    // a room id that cannot exist is refused the same way
    assert_eq!(
        remote.redeem_ticket("a/b c?d#e", &ticket).await,
        Err(texts::INVALID_TICKET)
    );
}

#[tokio::test]
async fn tickets_of_one_gateway_are_refused_by_another_secret() {
    let issuer = gateway(GatewayConfig {
        ticket_secret: b"issuer secret, 32 bytes long!!!!".to_vec(),
        ..gateway_config()
    });
    let verifier = gateway(GatewayConfig {
        ticket_secret: b"another secret, 32 bytes long!!!".to_vec(),
        ..gateway_config()
    });
    let room = issuer
        .create_room(CreateRoomRequest::default())
        .await
        .unwrap()
        .room;
    let ticket = issuer.issue_ticket(&room.id).await.unwrap().ticket;
    assert_eq!(
        verifier.redeem_ticket(&room.id, &ticket).await,
        Err(texts::INVALID_TICKET)
    );
}

#[tokio::test]
async fn an_expired_ticket_is_refused() {
    let clock = ManualClock::at_secs(store::unix_secs());
    let g = gateway(GatewayConfig {
        ticket_ttl: Duration::ZERO,
        clock: clock.clone(),
        ..gateway_config()
    });
    let room = g
        .create_room(CreateRoomRequest::default())
        .await
        .unwrap()
        .room;
    let kept = g.issue_ticket(&room.id).await.unwrap().ticket;
    let late = g.issue_ticket(&room.id).await.unwrap().ticket;
    // valid through its expiry second, refused after it
    clock.advance(Duration::from_millis(999));
    assert_eq!(g.redeem_ticket(&room.id, &kept).await, Ok(()));
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        g.redeem_ticket(&room.id, &late).await,
        Err(texts::INVALID_TICKET)
    );
}

#[tokio::test]
async fn a_wrong_secret_or_a_dead_gateway_is_unavailable() {
    let server = start_internal(gateway(gateway_config())).await;
    let wrong = RemoteGateway::new(RemoteConfig::new(server.base.clone(), "nope")).unwrap();
    assert_eq!(
        wrong.create_room(CreateRoomRequest::default()).await.err(),
        Some(texts::UNAVAILABLE)
    );
    let addr = server.addr;
    drop(server);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let dead = RemoteGateway::new(RemoteConfig {
        request_timeout: Duration::from_secs(2),
        ..RemoteConfig::new(format!("http://{addr}"), SECRET)
    })
    .unwrap();
    assert_eq!(
        dead.check_password("r", &pw('a'), ip()).await,
        Err(texts::UNAVAILABLE)
    );
}

#[tokio::test]
async fn a_slow_gateway_hits_the_request_deadline() {
    // a listener that accepts and never answers
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let remote = RemoteGateway::new(RemoteConfig {
        request_timeout: Duration::from_millis(300),
        ..RemoteConfig::new(format!("http://{addr}"), SECRET)
    })
    .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        remote.redeem_ticket("r", "t").await,
        Err(texts::UNAVAILABLE)
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn the_remote_reuses_pooled_connections() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // count accepted TCP connections in front of the real internal server
    let g = gateway(gateway_config());
    let server = start_internal(g).await;
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let target = server.addr;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = front.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let remote =
        RemoteGateway::new(RemoteConfig::new(format!("http://{front_addr}"), SECRET)).unwrap();
    for _ in 0..5 {
        assert_eq!(
            remote.redeem_ticket("r", "t").await,
            Err(texts::INVALID_TICKET)
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_owner_sets_a_password_and_hands_over_through_the_remote() {
    use arthas_gateway::rooms::owner_hash_of;
    use arthas_gateway::RoomSecretRequest;
    let g = gateway(gateway_config());
    let server = start_internal(g.clone()).await;
    let remote = remote(&server);
    let owner = pw('1');
    let room = remote
        .create_room(CreateRoomRequest {
            owner_hash: owner_hash_of(&owner),
            ..Default::default()
        })
        .await
        .unwrap()
        .room;
    assert!(!room.has_password);
    let set =
        |owner: &str, password: Option<String>, owner_hash: Option<String>| RoomSecretRequest {
            owner: owner.to_owned(),
            password,
            owner_hash,
        };
    assert_eq!(
        remote
            .set_room_secret(&room.id, set(&pw('2'), Some(pw('b')), None))
            .await,
        Err(texts::NOT_OWNER)
    );
    assert_eq!(
        remote
            .set_room_secret(&room.id, set(&owner, Some(pw('b')), None))
            .await,
        Ok(())
    );
    assert_eq!(
        remote.check_password(&room.id, &pw('b'), ip()).await,
        Ok(())
    );
    assert_eq!(
        remote.check_password(&room.id, &pw('c'), ip()).await,
        Err(texts::WRONG_PASSWORD)
    );
    let next = pw('3');
    assert_eq!(
        remote
            .set_room_secret(&room.id, set(&owner, None, Some(owner_hash_of(&next))))
            .await,
        Ok(())
    );
    assert_eq!(
        remote
            .set_room_secret(&room.id, set(&owner, Some(pw('d')), None))
            .await,
        Err(texts::NOT_OWNER)
    );
    assert_eq!(
        remote
            .set_room_secret(&room.id, set(&next, Some(pw('d')), None))
            .await,
        Ok(())
    );
    assert_eq!(
        remote
            .set_room_secret("V1StGXR8_Z5jdHi6B-myT", set(&next, None, None))
            .await,
        Err(texts::ROOM_NOT_FOUND)
    );
    assert_eq!(
        remote
            .set_room_secret(&room.id, set("short", None, None))
            .await,
        Err(texts::INVALID_OWNER)
    );
}
