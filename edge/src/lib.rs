//! What every listener at the network edge shares, whichever binary opens
//! it (the all-in-one server, a relay, the gateway; public, internal and
//! admin ports alike).
//!
//! - [`tls`]: TLS termination with rustls (ring), certificates re-read
//!   from disk while the process runs, and the TLS client configuration of
//!   the cluster's internal calls.

pub mod tls;

#[cfg(feature = "test-support")]
pub mod testing;
