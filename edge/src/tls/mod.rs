//! TLS with rustls and the ring provider, for every listener and for the
//! relays' calls to the gateway.
//!
//! - [`Identity`]: a certificate chain and its key, read from PEM files and
//!   re-read while the process runs ([`Identity::spawn_reloader`]), so a
//!   certificate rotated on disk (cert-manager replacing a Secret volume's
//!   files) is served to new connections without a restart; connections
//!   already open keep the session they negotiated. Its expiry time is a
//!   gauge ([`EXPIRY_METRIC`]).
//! - [`TlsAcceptor`]: the server side of a listener: TLS 1.3 and 1.2, ALPN
//!   `http/1.1`, optionally requiring client certificates from a CA
//!   ([`client_verifier`]); a handshake has a deadline and a failure is
//!   logged with its reason.
//! - [`client_config`]: the client side of the internal API: the server's
//!   certificate checked against a CA file (or the system roots), and
//!   optionally a client certificate (an [`Identity`], reloaded the same way).
//!
//! The provider is always passed explicitly ([`provider`]): nothing here
//! depends on a process-wide default, and aws-lc-rs is never built.
//!
//! Nothing here is on a message's path: a plain listener never touches
//! this module after start-up, and a TLS connection's records are handled
//! by rustls itself (see the relay's `transport`).

mod acceptor;
mod client;
mod identity;
mod pem;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::SupportedProtocolVersion;

pub use acceptor::{HandshakeLog, TlsAcceptor, TlsStream, HANDSHAKE_TIMEOUT};
pub use client::client_config;
pub use identity::{Identity, ReloadOutcome, EXPIRY_METRIC};
pub use pem::{client_verifier, read_roots};

/// The protocol versions every listener and client offers, best first.
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The only application protocol spoken over TLS (ALPN): HTTP/1.1, which
/// carries the WebSocket upgrade.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The crypto provider of every TLS configuration made here: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate, a key or a CA could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM certificate chain: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{path}: no usable PEM private key in it: {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("{key} is not the key of the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: the certificate expired at {not_after} (unix seconds)")]
    Expired { path: PathBuf, not_after: i64 },
    #[error("{path}: the certificate is not valid before {not_before} (unix seconds)")]
    NotYetValid { path: PathBuf, not_before: i64 },
    #[error("TLS configuration: {0}")]
    Config(String),
}
