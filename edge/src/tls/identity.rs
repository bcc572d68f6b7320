//! A certificate chain and its private key, read from PEM files and re-read
//! while the process runs.
//!
//! cert-manager (and most tooling) rotates a certificate by replacing the
//! files of a Secret volume: kubelet swaps a `..data` symlink, so the paths
//! stay the same while what they point at changes, and inotify on the paths
//! themselves sees nothing. So the files are simply read again every few
//! seconds and compared by digest with what was loaded last: cheap (two
//! small reads), independent of how the files are replaced, and it also
//! works for files edited in place. A new pair is used only once it parses,
//! the key matches the certificate and the certificate is within its
//! validity period; until then the previous one is served and the problem
//! is logged once per distinct content (a rotation caught between its two
//! file writes heals on the next check).
//!
//! The identity is the certificate resolver of the server and client
//! configurations, so swapping it needs no new configuration: the next
//! handshake picks the new certificate, and open connections are untouched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{IntGauge, Opts};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use sha2::{Digest, Sha256};

use super::{pem, TlsError};

/// The gauge of a certificate's end of validity, in unix seconds; its
/// `certificate` label says which one (`server`, `client`).
pub const EXPIRY_METRIC: &str = "arthas_tls_certificate_expiry_timestamp_seconds";

/// A loaded pair, with what identifies its files' contents.
struct Loaded {
    /// What handshakes present.
    key: Arc<CertifiedKey>,
    /// The leaf certificate's notAfter, unix seconds.
    not_after: i64,
}

/// A certificate and key that can be swapped while connections use them.
pub struct Identity {
    /// The PEM certificate chain (leaf first).
    cert_path: PathBuf,
    /// The PEM private key.
    key_path: PathBuf,
    /// Loads the private key.
    provider: Arc<CryptoProvider>,
    /// The pair handed to new handshakes.
    current: RwLock<Arc<CertifiedKey>>,
    /// SHA-256 of the certificate and key files as last read, loaded or
    /// not: an unchanged pair is neither parsed nor reported again.
    seen: Mutex<[u8; 32]>,
    /// The current certificate's notAfter (unix seconds).
    expiry: IntGauge,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("not_after", &self.expiry.get())
            .finish_non_exhaustive()
    }
}

/// What a check of the files found.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The files are as last read.
    Unchanged,
    /// A new certificate is served from now on; its notAfter (unix seconds).
    Reloaded { not_after: i64 },
    /// The files changed but cannot be used; the previous pair stays.
    Refused(TlsError),
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The contents of a certificate file and a key file, as read together.
struct PairFiles {
    /// SHA-256 over both (what tells a change).
    digest: [u8; 32],
    /// The certificate chain, PEM.
    cert_pem: Vec<u8>,
    /// The private key, PEM.
    key_pem: Vec<u8>,
}

/// Reads both files.
fn read_pair(cert: &Path, key: &Path) -> Result<PairFiles, TlsError> {
    let cert_pem = pem::read(cert)?;
    let key_pem = pem::read(key)?;
    let mut digest = Sha256::new();
    digest.update((cert_pem.len() as u64).to_be_bytes());
    digest.update(&cert_pem);
    digest.update(&key_pem);
    Ok(PairFiles {
        digest: digest.finalize().into(),
        cert_pem,
        key_pem,
    })
}

/// Parses and checks a pair: the key matches the leaf, and the leaf is
/// valid now.
fn parse_pair(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Loaded, TlsError> {
    let chain = pem::certificates(cert, cert_pem)?;
    let private_key = pem::private_key(key, key_pem)?;
    let (not_before, not_after) = validity(cert, &chain[0])?;
    let now = now_secs();
    if now > not_after {
        return Err(TlsError::Expired {
            path: cert.to_owned(),
            not_after,
        });
    }
    if now < not_before {
        return Err(TlsError::NotYetValid {
            path: cert.to_owned(),
            not_before,
        });
    }
    let certified = CertifiedKey::from_der(chain, private_key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        },
        other => TlsError::BadKey {
            path: key.to_owned(),
            detail: other.to_string(),
        },
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
    })
}

/// The leaf's (notBefore, notAfter) in unix seconds.
fn validity(
    path: &Path,
    leaf: &rustls::pki_types::CertificateDer<'_>,
) -> Result<(i64, i64), TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| {
        TlsError::BadCertificate {
            path: path.to_owned(),
            detail: e.to_string(),
        }
    })?;
    let validity = parsed.validity();
    Ok((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

impl Identity {
    /// Loads the pair at `cert` and `key`; `certificate` names it in the
    /// expiry gauge (`server`, `client`). Fails when a file cannot be read
    /// or parsed, the key is not the certificate's, or the certificate is
    /// expired or not yet valid: a process must not start with a
    /// certificate nobody will accept.
    pub fn load(
        provider: Arc<CryptoProvider>,
        cert: &Path,
        key: &Path,
        certificate: &str,
    ) -> Result<Arc<Identity>, TlsError> {
        let files = read_pair(cert, key)?;
        let loaded = parse_pair(&provider, cert, key, &files.cert_pem, &files.key_pem)?;
        let expiry = IntGauge::with_opts(
            Opts::new(
                EXPIRY_METRIC,
                "When the TLS certificate in use stops being valid (notAfter), unix seconds",
            )
            .const_label("certificate", certificate),
        )
        .map_err(|e| TlsError::Config(format!("expiry gauge: {e}")))?;
        expiry.set(loaded.not_after);
        Ok(Arc::new(Identity {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            provider,
            current: RwLock::new(loaded.key),
            seen: Mutex::new(files.digest),
            expiry,
        }))
    }

    /// The expiry gauge, to register in the process's metrics registry.
    pub fn expiry_gauge(&self) -> IntGauge {
        self.expiry.clone()
    }

    /// The current certificate's notAfter, unix seconds.
    pub fn not_after(&self) -> i64 {
        self.expiry.get()
    }

    /// What new handshakes present.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again and swaps in a changed, usable pair. Blocking
    /// (file reads): call it off the runtime's workers.
    pub fn reload(&self) -> ReloadOutcome {
        let files = match read_pair(&self.cert_path, &self.key_path) {
            Ok(read) => read,
            // A file missing for a moment during a swap: report it, keep
            // serving, try again next time.
            Err(e) => return ReloadOutcome::Refused(e),
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == files.digest {
                return ReloadOutcome::Unchanged;
            }
            *seen = files.digest;
        }
        match parse_pair(
            &self.provider,
            &self.cert_path,
            &self.key_path,
            &files.cert_pem,
            &files.key_pem,
        ) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded.key;
                self.expiry.set(loaded.not_after);
                ReloadOutcome::Reloaded {
                    not_after: loaded.not_after,
                }
            }
            Err(e) => ReloadOutcome::Refused(e),
        }
    }

    /// Checks the files every `interval` on a background task until the
    /// runtime stops, logging every change: `info` for a new certificate,
    /// `error` for a change that cannot be used (the previous one stays).
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let identity = self.clone();
        let mut last_read_error: Option<String> = None;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate: loaded already
            loop {
                tick.tick().await;
                let checked = identity.clone();
                let Ok(outcome) = tokio::task::spawn_blocking(move || checked.reload()).await
                else {
                    continue;
                };
                let cert = identity.cert_path.display();
                match outcome {
                    ReloadOutcome::Unchanged => last_read_error = None,
                    ReloadOutcome::Reloaded { not_after } => {
                        last_read_error = None;
                        tracing::info!(%cert, not_after, "TLS certificate reloaded");
                    }
                    ReloadOutcome::Refused(e @ TlsError::Read { .. }) => {
                        let text = e.to_string();
                        if last_read_error.as_deref() != Some(text.as_str()) {
                            tracing::error!(error = %text, "TLS certificate not reloaded: still serving the previous one");
                            last_read_error = Some(text);
                        }
                    }
                    ReloadOutcome::Refused(e) => {
                        tracing::error!(error = %e, "TLS certificate not reloaded: still serving the previous one");
                    }
                }
            }
        })
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
