//! What every listener at the network edge shares.
//!
//! The relay's WebSocket listener and the gateway's public HTTP listener
//! both answer clients directly or through proxies, and both count per-IP
//! limits. They must agree on who the client is, or a limit counted on one
//! would be dodged on the other; so the rule lives here, once:
//!
//! - [`client_ip`]: the client's address from the TCP peer and, behind
//!   `--trusted-proxies`, the `X-Forwarded-For` chain (rightmost entry that
//!   is not a trusted proxy);
//! - [`ClientKey`]: the address a client's limits are counted under (an IPv4
//!   address, or the /64 of an IPv6 one, which one subscriber usually holds
//!   whole).

pub mod client_ip;

pub use client_ip::{client_ip, ClientKey, TrustedProxies, TrustedProxiesError};
