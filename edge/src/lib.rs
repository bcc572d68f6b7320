//! What every listener at the network edge shares, whichever binary opens
//! it (the all-in-one server, a relay, the gateway; public, internal and
//! admin ports alike).
//!
//! The relay's WebSocket listener and the gateway's public HTTP listener
//! both answer clients directly or through proxies, and both count per-IP
//! limits. They must agree on who the client is, or a limit counted on one
//! would be dodged on the other; so the rule lives here, once:
//!
//! - [`client_ip()`]: the client's address from the TCP peer and, behind
//!   `--trusted-proxies`, the `X-Forwarded-For` chain (rightmost entry that
//!   is not a trusted proxy);
//! - [`ClientKey`]: the address a client's limits are counted under (an IPv4
//!   address, or the /64 of an IPv6 one, which one subscriber usually holds
//!   whole);
//! - [`http`]: the HTTP transport (accept loop with back-off, serving a
//!   handler with limits and graceful shutdown, response builders, problem
//!   JSON, the admin endpoints);
//! - [`tls`]: TLS termination with rustls (ring), certificates re-read
//!   from disk while the process runs, and the TLS client configuration of
//!   the cluster's internal calls.

pub mod client_ip;
pub mod http;
pub mod tls;

#[cfg(feature = "test-support")]
pub mod testing;

pub use client_ip::{client_ip, ClientKey, TrustedProxies, TrustedProxiesError};
