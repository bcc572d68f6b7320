//! The client side of the cluster's internal calls (a relay calling the
//! gateway's internal API): the server's certificate is checked against a
//! CA bundle given by file (a private CA, as cert-manager issues) or the
//! system's roots, and a client certificate is presented when one is
//! configured (mutual TLS). The client [`Identity`] is reloaded like a
//! server's, so rotating it needs no restart either.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

use super::{provider, read_roots, Identity, TlsError, ALPN_HTTP1, PROTOCOL_VERSIONS};

/// A client configuration trusting the CAs in `ca` (else the system's
/// roots, honouring `SSL_CERT_FILE`), presenting `identity` when given.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<Arc<Identity>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match ca {
        Some(path) => read_roots(path)?,
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(identity) => builder.with_client_cert_resolver(identity),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// The platform's trusted roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::Config(format!(
            "no trusted root certificates found on this system ({} errors); give a CA file",
            found.errors.len()
        )));
    }
    Ok(roots)
}
