//! Sentinel mode: where the current master is.
//!
//! A [`MasterLocator`] asks the sentinels (redis-rs `SentinelClient`, which
//! queries them concurrently, skips masters they flag down and checks with
//! `ROLE` that the address it picks really is a master) and hands back a
//! client for that master. The command pool asks it for every connection it
//! opens; the bus supervisor asks it after a loss and every
//! [`RedisConfig::sentinel_check_interval`](super::RedisConfig) to notice a
//! failover, then rebuilds its connection against the new master.
//!
//! The user, password and database of the first sentinel address also apply
//! to the master (and to every sentinel given without its own).

use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{IntoConnectionInfo, ProtocolVersion};
use tokio::sync::Mutex;

use crate::room::StoreError;

/// Finds the master a group of sentinels names.
pub(crate) struct MasterLocator {
    /// Asks the sentinels; `&mut` on every lookup, hence the lock.
    client: Mutex<SentinelClient>,
    /// Longest one lookup may take (sentinels, then `ROLE` on the master).
    timeout: Duration,
}

impl MasterLocator {
    /// A locator for `master_name`; connections to the master speak
    /// `protocol`.
    pub(crate) fn new(
        sentinels: &[String],
        master_name: &str,
        protocol: ProtocolVersion,
        timeout: Duration,
    ) -> Result<MasterLocator, StoreError> {
        let first = sentinels
            .first()
            .ok_or_else(|| StoreError("redis sentinel: no sentinel address".into()))?;
        let info = first
            .as_str()
            .into_connection_info()
            .map_err(|e| StoreError(format!("redis sentinel url: {e}")))?;
        let settings = info
            .redis_settings()
            .clone()
            .set_skip_set_lib_name()
            .set_protocol(protocol);
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(settings);
        let client = SentinelClient::build(
            sentinels.to_vec(),
            master_name,
            Some(node),
            SentinelServerType::Master,
        )
        .map_err(|e| StoreError(format!("redis sentinel: {e}")))?;
        Ok(MasterLocator {
            client: Mutex::new(client),
            timeout,
        })
    }

    /// A client for the current master, or why there is none now.
    pub(crate) async fn master(&self) -> Result<redis::Client, redis::RedisError> {
        // Boxed: the lookup's future is deep enough to overflow the layout
        // recursion limit of every future that awaits a pool checkout.
        let lookup = Box::pin(async { self.client.lock().await.async_get_client().await });
        match tokio::time::timeout(self.timeout, lookup).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "sentinel: no master found in time",
            ))),
        }
    }
}

/// `host:port` of a client's server (to tell masters apart).
pub(crate) fn address(client: &redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}
