//! TLS for test servers ([`ServerTls`]) and the registry of which ports
//! speak it.

use super::*;

/// TLS for test servers: they listen on TLS only (`--port 0 --tls-port P`),
/// replicate, gossip (cluster bus) and talk to each other (sentinels) over
/// TLS, with these PEM files; the harness's own connections use TLS too.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server certificate chain (for 127.0.0.1).
    pub cert: std::path::PathBuf,
    /// Its key.
    pub key: std::path::PathBuf,
    /// The CA that signed every certificate here.
    pub ca: std::path::PathBuf,
    /// `tls-auth-clients yes`: every client must present a certificate
    /// from `ca`.
    pub auth_clients: bool,
    /// A client certificate from `ca` (the harness's own connections; also
    /// what a server presents when it connects to another).
    pub client_cert: std::path::PathBuf,
    /// Its key.
    pub client_key: std::path::PathBuf,
}

impl ServerTls {
    /// The server arguments.
    pub(super) fn args(&self, port: u16, cluster: bool) -> Vec<String> {
        let file = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let mut args = vec![
            "--port".to_string(),
            "0".to_string(),
            "--tls-port".to_string(),
            port.to_string(),
            "--tls-cert-file".to_string(),
            file(&self.cert),
            "--tls-key-file".to_string(),
            file(&self.key),
            "--tls-client-cert-file".to_string(),
            file(&self.client_cert),
            "--tls-client-key-file".to_string(),
            file(&self.client_key),
            "--tls-ca-cert-file".to_string(),
            file(&self.ca),
            "--tls-auth-clients".to_string(),
            if self.auth_clients { "yes" } else { "no" }.to_string(),
            "--tls-replication".to_string(),
            "yes".to_string(),
        ];
        if cluster {
            args.extend(["--tls-cluster".to_string(), "yes".to_string()]);
        }
        args
    }

    /// What redis-rs takes for the harness's connections.
    pub(super) fn certificates(&self) -> Result<redis::TlsCertificates> {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(fail);
        Ok(redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: read(&self.client_cert)?,
                client_key: read(&self.client_key)?,
            }),
            root_cert: Some(read(&self.ca)?),
        })
    }
}

/// The TLS of every TLS port this process's servers listen on, so the
/// helpers that only know a port connect the right way.
pub(super) fn tls_ports() -> MutexGuard<'static, HashMap<u16, Arc<ServerTls>>> {
    static PORTS: LazyLock<Mutex<HashMap<u16, Arc<ServerTls>>>> = LazyLock::new(Default::default);
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}
