//! The daily topic over a real `redis-server` (and a real 3-master Redis Cluster): two gateway
//! replicas, each with its own Redis connections, fire their attempts for the day at once and
//! make one daily topic between them, not two; the losers' candidate rooms are gone.

mod support;

use std::collections::HashSet;

use arthas_gateway::daily::{DailyTopics, Outcome};
use arthas_gateway::Gateway;
use store::redis::{RedisConfig, RedisEngine, RedisMode};
use store::testing::{RedisCluster, RedisServer};

/// Attempts each replica fires at once.
const ATTEMPTS_PER_GATEWAY: usize = 4;

async fn gateway_on(mode: RedisMode) -> Gateway {
    let engine = RedisEngine::connect(mode, RedisConfig::default())
        .await
        .expect("the engine connects");
    Gateway::new(engine, support::gateway_config()).expect("valid config")
}

/// Two replicas race; returns the created room and every outcome.
async fn race(mode: RedisMode) -> (String, Vec<Outcome>) {
    let replicas = [gateway_on(mode.clone()).await, gateway_on(mode).await];
    let mut tasks = Vec::new();
    for gateway in &replicas {
        let daily = DailyTopics::builtin(gateway.clone(), store::clock::system()).expect("topics");
        for _ in 0..ATTEMPTS_PER_GATEWAY {
            let daily = daily.clone();
            tasks.push(tokio::spawn(async move { daily.ensure_today().await }));
        }
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("attempt"));
    }
    let created: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Created { room_id, .. } => Some(room_id),
            Outcome::Exists { .. } => None,
        })
        .collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one attempt creates: {outcomes:?}"
    );
    let days: HashSet<i64> = outcomes.iter().map(Outcome::day).collect();
    assert_eq!(days.len(), 1, "all attempts were for one day");
    let room_id = created[0].clone();

    for gateway in &replicas {
        let listed: Vec<String> = gateway
            .store()
            .listings(store::unix_millis())
            .await
            .expect("listings")
            .into_iter()
            .filter(|v| v.listing.is_daily_topic)
            .map(|v| v.listing.room_id)
            .collect();
        assert_eq!(
            listed,
            std::slice::from_ref(&room_id),
            "both replicas list the one topic"
        );
    }
    (room_id, outcomes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_make_one_daily_topic() {
    let server = RedisServer::start().await.expect("redis-server starts");
    let (room_id, _) = race(RedisMode::Standalone { url: server.url() }).await;
    // The seven losing candidates were destroyed: one room record is left.
    let rooms = server
        .command(&["KEYS", "arthas:{*}:room"])
        .await
        .expect("KEYS");
    let redis::Value::Array(rooms) = rooms else {
        panic!("KEYS answered {rooms:?}");
    };
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    assert_eq!(
        rooms[0],
        redis::Value::BulkString(format!("arthas:{{{room_id}}}:room").into_bytes())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_a_redis_cluster_make_one_daily_topic() {
    let cluster = RedisCluster::start().await.expect("redis cluster starts");
    race(RedisMode::Cluster {
        nodes: cluster.urls(),
    })
    .await;
}
