//! Which processes stand behind a test's `Env` ([`Topology`], from `ARTHAS_TEST_TOPOLOGY`).

use super::*;

/// What a test's `Env` is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One all-in-one process, memory engine.
    Single,
    /// Standalone Redis, a gateway, three relays.
    Redis,
    /// A 3-master Redis Cluster, a gateway, three relays.
    RedisCluster,
}

impl Topology {
    /// The topology named by `ARTHAS_TEST_TOPOLOGY` (`single`, `redis`, `redis-cluster`;
    /// unset or empty: `single`).
    pub fn from_env() -> Topology {
        match std::env::var(TOPOLOGY_VAR).as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("single") => Topology::Single,
            Ok("redis") => Topology::Redis,
            Ok("redis-cluster") => Topology::RedisCluster,
            Ok(other) => {
                panic!("{TOPOLOGY_VAR}={other:?}: expected single, redis or redis-cluster")
            }
        }
    }

    /// True for the topologies with several relays.
    pub fn is_cluster(self) -> bool {
        self != Topology::Single
    }

    /// The name used in `ARTHAS_TEST_TOPOLOGY`.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Redis => "redis",
            Topology::RedisCluster => "redis-cluster",
        }
    }
}

/// Runs each `async fn $name(topology: Topology)` as `$name::redis` and `$name::redis_cluster`,
/// under the test attribute given first: `both_modes!(#[tokio::test] first, second)`. The
/// calling file has `Topology` in scope.
#[macro_export]
macro_rules! both_modes {
    (#[$test:meta] $($name:ident),+ $(,)?) => {$(
        mod $name {
            #[$test]
            async fn redis() {
                super::$name(super::Topology::Redis).await;
            }
            #[$test]
            async fn redis_cluster() {
                super::$name(super::Topology::RedisCluster).await;
            }
        }
    )+};
}
