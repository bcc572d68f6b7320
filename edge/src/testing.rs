//! Test certificates, made inside the tests (feature `test-support`): a CA
//! of the test's own, and server and client certificates it signs, as PEM
//! text or files. Nothing here is used by a binary.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate authority that exists only in a test.
pub struct TestCa {
    /// Signs the certificates this CA issues.
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A server (TLS server authentication).
    Server,
    /// A client presenting itself to a server (mutual TLS).
    Client,
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, then the issuing CA's (a chain, as cert-manager writes `tls.crt`).
    pub chain_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl Issued {
    /// Writes `NAME.crt` and `NAME.key` in `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.chain_pem).expect("the test directory is writable");
        std::fs::write(&key, &self.key_pem).expect("the test directory is writable");
        (cert, key)
    }
}

impl TestCa {
    /// A new CA named `name`, valid from yesterday for ten years.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to parse");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time_now();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let key = KeyPair::generate().expect("ring makes a key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("a CA certificate is made");
        TestCa { issuer }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/NAME.crt`; returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.crt"));
        std::fs::write(&path, self.pem()).expect("the test directory is writable");
        path
    }

    /// A certificate for `names` (DNS names or IP addresses), valid from
    /// yesterday for a week.
    pub fn issue(&self, names: &[&str], usage: Usage) -> Issued {
        let now = time_now();
        self.issue_valid(
            names,
            usage,
            now - time::Duration::days(1),
            now + time::Duration::days(7),
        )
    }

    /// A certificate that expired yesterday.
    pub fn issue_expired(&self, names: &[&str], usage: Usage) -> Issued {
        let now = time_now();
        self.issue_valid(
            names,
            usage,
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
    }

    /// A certificate valid between `not_before` and `not_after`.
    pub fn issue_valid(
        &self,
        names: &[&str],
        usage: Usage,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("test names are valid");
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().expect("ring makes a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("the CA signs the certificate");
        Issued {
            chain_pem: format!("{}{}", cert.pem(), self.pem()),
            key_pem: key.serialize_pem(),
        }
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
