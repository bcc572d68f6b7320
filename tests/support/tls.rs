//! TLS for the black-box suites: one CA per test process, made here (rcgen), with a server
//! certificate for 127.0.0.1 and a relay client certificate, written to a temporary directory
//! that lives as long as the process; and the clients' TLS configuration trusting that CA.
//!
//! `ARTHAS_TEST_TLS=1` runs an `Env` over TLS: every listener of every process serves the
//! server certificate, tests reach them at `wss://` and `https://`, and in a cluster the relays
//! call the gateway's internal API over mutual TLS (the client certificate and the secret).

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use edge::testing::{TestCa, Usage};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// The environment variable that turns TLS on for an `Env`.
pub const TLS_VAR: &str = "ARTHAS_TEST_TLS";

/// Whether `ARTHAS_TEST_TLS` asks for TLS (`1` or `true`).
pub fn from_env() -> bool {
    matches!(
        std::env::var(TLS_VAR).as_deref().map(str::trim),
        Ok("1") | Ok("true")
    )
}

/// The test process's CA and the certificates it issued, as files.
pub struct Certificates {
    /// The CA that signed everything here.
    pub ca: TestCa,
    /// Where the files are (removed when the test process ends).
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM).
    pub ca_file: PathBuf,
    /// The server certificate chain for 127.0.0.1 and localhost.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// A relay client certificate chain (mutual TLS to the gateway).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

/// The process-wide certificates (made on first use).
pub fn certificates() -> &'static Certificates {
    static CERTS: LazyLock<Certificates> = LazyLock::new(|| {
        let dir = tempfile::Builder::new()
            .prefix("arthas-test-tls-")
            .tempdir()
            .expect("a temporary directory");
        let ca = TestCa::new("arthas test CA");
        let ca_file = ca.write(dir.path(), "ca");
        let (server_cert, server_key) = ca
            .issue(&["127.0.0.1", "localhost"], Usage::Server)
            .write(dir.path(), "server");
        let (client_cert, client_key) = ca
            .issue(&["relay"], Usage::Client)
            .write(dir.path(), "relay-client");
        Certificates {
            ca,
            dir,
            ca_file,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    });
    &CERTS
}

/// A client configuration trusting the test CA only.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
        edge::tls::client_config(Some(&certificates().ca_file), None)
            .expect("the test CA makes a client configuration")
    });
    CONFIG.clone()
}

/// A TLS handshake with `host` (an IP address or a name) over `tcp`, trusting `config`.
pub async fn connect(
    tcp: TcpStream,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h).to_string();
    let name = ServerName::try_from(name)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}
