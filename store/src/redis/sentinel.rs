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
//! The user and password of the first sentinel address apply to every
//! sentinel and to the master, its database to the master. With `rediss://`
//! sentinel addresses every connection (sentinels and master) is TLS, with
//! the configured CA and client certificate ([`RedisTls`]).

use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, ProtocolVersion, RedisConnectionInfo, TlsMode};
use tokio::sync::Mutex;

use super::RedisTls;
use crate::room::StoreError;

/// Finds the master a group of sentinels names.
pub(crate) struct MasterLocator {
    /// Asks the sentinels; `&mut` on every lookup, hence the lock.
    client: Mutex<SentinelClient>,
    /// Longest one lookup may take (sentinels, then `ROLE` on the master).
    timeout: Duration,
    /// How our connections to the master handshake (credentials, database,
    /// protocol, no `CLIENT SETINFO`).
    settings: RedisConnectionInfo,
}

impl MasterLocator {
    /// A locator for `master_name`; connections to the master speak
    /// `protocol`.
    pub(crate) fn new(
        sentinels: &[String],
        master_name: &str,
        protocol: ProtocolVersion,
        timeout: Duration,
        tls: &RedisTls,
    ) -> Result<MasterLocator, StoreError> {
        let fail = |e: redis::RedisError| StoreError(format!("redis sentinel: {e}"));
        let infos = sentinels
            .iter()
            .map(|url| url.as_str().into_connection_info())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError(format!("redis sentinel url: {e}")))?;
        let first = infos
            .first()
            .ok_or_else(|| StoreError("redis sentinel: no sentinel address".into()))?;
        let over_tls = matches!(first.addr(), ConnectionAddr::TcpTls { .. });
        if infos
            .iter()
            .any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }) != over_tls)
        {
            return Err(StoreError(
                "redis sentinel: mix of redis:// and rediss:// addresses".into(),
            ));
        }
        let certificates = tls.certificates();
        if certificates.is_some() && !over_tls {
            return Err(StoreError(
                "redis: TLS certificates are configured but the URLs are not rediss://".into(),
            ));
        }
        let first_settings = first.redis_settings().clone();
        let mut builder = SentinelClientBuilder::new(
            infos.iter().map(|i| i.addr().clone()),
            master_name,
            SentinelServerType::Master,
        )
        .map_err(fail)?
        .set_client_to_redis_protocol(protocol)
        .set_client_to_redis_db(first_settings.db());
        if let Some(user) = first_settings.username() {
            builder = builder
                .set_client_to_redis_username(user)
                .set_client_to_sentinel_username(user);
        }
        if let Some(password) = first_settings.password() {
            builder = builder
                .set_client_to_redis_password(password)
                .set_client_to_sentinel_password(password);
        }
        if over_tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(certificates) = certificates {
                builder = builder
                    .set_client_to_redis_certificates(certificates.clone())
                    .set_client_to_sentinel_certificates(certificates);
            }
        }
        let client = builder.build().map_err(fail)?;
        Ok(MasterLocator {
            client: Mutex::new(client),
            timeout,
            settings: first_settings
                .set_skip_set_lib_name()
                .set_protocol(protocol),
        })
    }

    /// A client for the current master, or why there is none now.
    pub(crate) async fn master(&self) -> Result<redis::Client, redis::RedisError> {
        // Boxed: the lookup's future is deep enough to overflow the layout
        // recursion limit of every future that awaits a pool checkout.
        let lookup = Box::pin(async { self.client.lock().await.async_get_client().await });
        match tokio::time::timeout(self.timeout, lookup).await {
            // The master's address and TLS parameters, with our handshake
            // settings.
            Ok(result) => redis::Client::open(
                result?
                    .get_connection_info()
                    .clone()
                    .set_redis_settings(self.settings.clone()),
            ),
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
