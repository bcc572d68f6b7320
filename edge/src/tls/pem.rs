//! Reading PEM files: certificate chains, private keys and CA bundles.
//!
//! Errors name the file and say what is wrong with it; a key's bytes are
//! never part of a message.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::{provider, TlsError};

/// The bytes of a file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM text, in order (leaf first for a chain).
pub(crate) fn certificates(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM text.
pub(crate) fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::BadKey {
        path: path.to_owned(),
        // The parser's message names the PEM section, never key material.
        detail: e.to_string(),
    })
}

/// The CA certificates of a PEM bundle, as trust anchors.
pub fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = read(path)?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path, &pem)? {
        roots
            .add(certificate)
            .map_err(|e| TlsError::BadCertificate {
                path: path.to_owned(),
                detail: e.to_string(),
            })?;
    }
    Ok(roots)
}

/// Requires every client to present a certificate signed by a CA in the
/// PEM bundle at `ca` (mutual TLS).
pub fn client_verifier(ca: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = read_roots(ca)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))
}
