//! The server side of a TLS listener.
//!
//! The handshake runs in the connection's own task (never in the accept
//! loop, where one slow client would hold up every other), under a
//! deadline, so a client that opens TCP and never says hello costs a
//! socket for [`HANDSHAKE_TIMEOUT`] at most. A failed handshake is logged
//! with rustls' reason (an unknown CA, an expired certificate, no client
//! certificate, a protocol version nobody shares): at `debug` on a public
//! listener, where scanners fail handshakes all day, and at `warn` on the
//! internal and admin ports, where a failure is a misconfiguration someone
//! must see.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::danger::ClientCertVerifier;
use rustls::ServerConfig;
use tokio::net::TcpStream;

use super::{provider, Identity, TlsError, ALPN_HTTP1, PROTOCOL_VERSIONS};

/// A TLS connection over TCP, after its handshake.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Longest time from TCP accept to the end of the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How loudly a failed handshake is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeLog {
    /// `debug`: a port open to the internet.
    Public,
    /// `warn`: a port only our own processes and operators use.
    Internal,
}

/// Accepts TLS connections with an [`Identity`]. Cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor {
    /// rustls' acceptor over the shared configuration.
    inner: tokio_rustls::TlsAcceptor,
    /// The listener's name in log lines (`public`, `internal`, `admin`).
    listener: &'static str,
    /// The level of handshake failures.
    log: HandshakeLog,
    /// Deadline of a handshake.
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("listener", &self.listener)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// An acceptor presenting `identity`, TLS 1.3 and 1.2, ALPN `http/1.1`;
    /// with `client_auth`, every client must present a certificate it
    /// accepts.
    pub fn new(
        identity: Arc<Identity>,
        client_auth: Option<Arc<dyn ClientCertVerifier>>,
        listener: &'static str,
        log: HandshakeLog,
    ) -> Result<TlsAcceptor, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match client_auth {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(identity);
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            listener,
            log,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// Runs the handshake on an accepted connection; `None` (logged) when it
    /// fails or takes longer than [`HANDSHAKE_TIMEOUT`].
    pub async fn accept(&self, stream: TcpStream, peer: SocketAddr) -> Option<TlsStream> {
        let failure =
            match tokio::time::timeout(self.handshake_timeout, self.inner.accept(stream)).await {
                Ok(Ok(tls)) => return Some(tls),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no handshake within {:?}", self.handshake_timeout),
            };
        match self.log {
            HandshakeLog::Public => {
                tracing::debug!(listener = self.listener, %peer, error = %failure, "TLS handshake failed");
            }
            HandshakeLog::Internal => {
                tracing::warn!(listener = self.listener, %peer, error = %failure, "TLS handshake failed");
            }
        }
        None
    }
}
