//! The TLS building blocks against real handshakes on loopback sockets,
//! with certificates made by a CA of the test's own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arthas_edge::testing::{TestCa, Usage};
use arthas_edge::tls::{
    client_config, client_verifier, provider, HandshakeLog, Identity, ReloadOutcome, TlsAcceptor,
    TlsError,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn load(cert: &Path, key: &Path) -> Result<Arc<Identity>, TlsError> {
    Identity::load(provider(), cert, key, "server")
}

/// A listener answering each connection's first byte with "ok" over TLS.
async fn serve(acceptor: TlsAcceptor) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Some(mut tls) = acceptor.accept(tcp, peer).await {
                    let mut byte = [0u8; 1];
                    while tls.read_exact(&mut byte).await.is_ok() {
                        if tls.write_all(b"ok").await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Connects, trusting `ca_dir/ca.crt`; presents `client` when given.
async fn connect(
    addr: SocketAddr,
    ca: &Path,
    client: Option<Arc<Identity>>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = client_config(Some(ca), client).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await?;
    // TLS 1.3: a refused client certificate shows on the first exchange.
    tls.write_all(b"?").await?;
    let mut answer = [0u8; 2];
    tls.read_exact(&mut answer).await?;
    assert_eq!(&answer, b"ok");
    Ok(tls)
}

fn served_leaf(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn leaf_of(pem: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
}

#[test]
fn a_chain_loads_and_its_expiry_is_the_gauge() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (cert, key) = ca
        .issue(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "tls");
    let identity = load(&cert, &key).unwrap();
    assert_eq!(identity.current().cert.len(), 2, "leaf and CA");
    let in_a_week = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 7 * 86_400;
    assert!((identity.not_after() - in_a_week).abs() < 120);
    let gauge = identity.expiry_gauge();
    assert_eq!(gauge.get(), identity.not_after());
    let registry = prometheus::Registry::new();
    registry.register(Box::new(gauge)).unwrap();
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(&format!(
            "arthas_tls_certificate_expiry_timestamp_seconds{{certificate=\"server\"}} {}",
            identity.not_after()
        )),
        "{text}"
    );
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (cert, _) = ca
        .issue(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "a");
    let (_, other_key) = ca
        .issue(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "b");
    match load(&cert, &other_key) {
        Err(TlsError::KeyMismatch { .. }) => {}
        other => panic!("expected a key mismatch, got {other:?}"),
    }
}

#[test]
fn an_expired_certificate_is_refused_saying_when_it_expired() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (cert, key) = ca
        .issue_expired(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "tls");
    let err = load(&cert, &key).unwrap_err();
    assert!(matches!(err, TlsError::Expired { .. }), "{err:?}");
    assert!(err.to_string().contains("expired at"), "{err}");
}

#[test]
fn files_that_are_not_pem_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let err = load(&cert, &key).unwrap_err();
    assert!(err.to_string().contains("tls.crt"), "{err}");
    let missing = load(&dir.path().join("absent.crt"), &key).unwrap_err();
    assert!(matches!(missing, TlsError::Read { .. }), "{missing:?}");
}

#[tokio::test]
async fn a_rotated_certificate_reaches_new_connections_while_open_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let first = ca.issue(&["127.0.0.1"], Usage::Server);
    let (cert, key) = first.write(dir.path(), "tls");
    let identity = load(&cert, &key).unwrap();
    let acceptor =
        TlsAcceptor::new(identity.clone(), None, "test", HandshakeLog::Internal).unwrap();
    let addr = serve(acceptor).await;

    let mut open = connect(addr, &ca_file, None).await.unwrap();
    assert_eq!(served_leaf(&open), leaf_of(&first.chain_pem));
    assert!(matches!(identity.reload(), ReloadOutcome::Unchanged));

    let second = ca.issue(&["127.0.0.1"], Usage::Server);
    second.write(dir.path(), "tls");
    assert!(matches!(identity.reload(), ReloadOutcome::Reloaded { .. }));
    let fresh = connect(addr, &ca_file, None).await.unwrap();
    assert_eq!(served_leaf(&fresh), leaf_of(&second.chain_pem));
    // The connection made before the rotation still works.
    open.write_all(b"?").await.unwrap();
    let mut answer = [0u8; 2];
    open.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"ok");
}

#[test]
fn a_broken_rotation_keeps_the_previous_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let first = ca.issue(&["127.0.0.1"], Usage::Server);
    let (cert, key) = first.write(dir.path(), "tls");
    let identity = load(&cert, &key).unwrap();
    let before = identity.current();
    // Only the certificate is replaced so far: its key is not in place yet.
    let second = ca.issue(&["127.0.0.1"], Usage::Server);
    std::fs::write(&cert, &second.chain_pem).unwrap();
    assert!(matches!(
        identity.reload(),
        ReloadOutcome::Refused(TlsError::KeyMismatch { .. })
    ));
    assert!(Arc::ptr_eq(&before, &identity.current()));
    // The key arrives: the next check takes the new pair.
    std::fs::write(&key, &second.key_pem).unwrap();
    assert!(matches!(identity.reload(), ReloadOutcome::Reloaded { .. }));
    assert_eq!(identity.current().cert[0], leaf_of(&second.chain_pem));
    // An expired replacement is refused too.
    ca.issue_expired(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "tls");
    assert!(matches!(
        identity.reload(),
        ReloadOutcome::Refused(TlsError::Expired { .. })
    ));
    assert_eq!(identity.current().cert[0], leaf_of(&second.chain_pem));
}

#[tokio::test]
async fn a_server_certificate_from_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let other = TestCa::new("another CA");
    let other_file = other.write(dir.path(), "other");
    let (cert, key) = ca
        .issue(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "tls");
    let acceptor = TlsAcceptor::new(
        load(&cert, &key).unwrap(),
        None,
        "test",
        HandshakeLog::Internal,
    )
    .unwrap();
    let addr = serve(acceptor).await;
    let err = connect(addr, &other_file, None).await.unwrap_err();
    assert!(
        err.to_string().contains("UnknownIssuer"),
        "refused, but not for its issuer: {err}"
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("server CA");
    let ca_file = ca.write(dir.path(), "ca");
    let clients = TestCa::new("client CA");
    let clients_file = clients.write(dir.path(), "clients");
    let strangers = TestCa::new("stranger CA");
    let (cert, key) = ca
        .issue(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "tls");
    let acceptor = TlsAcceptor::new(
        load(&cert, &key).unwrap(),
        Some(client_verifier(&clients_file).unwrap()),
        "internal",
        HandshakeLog::Internal,
    )
    .unwrap();
    let addr = serve(acceptor).await;
    let identity = |issuer: &TestCa, name: &str| {
        let (c, k) = issuer
            .issue(&["relay"], Usage::Client)
            .write(dir.path(), name);
        Identity::load(provider(), &c, &k, "client").unwrap()
    };

    connect(addr, &ca_file, Some(identity(&clients, "relay")))
        .await
        .expect("a client certificate from the client CA is accepted");
    assert!(
        connect(addr, &ca_file, None).await.is_err(),
        "no client certificate"
    );
    assert!(
        connect(addr, &ca_file, Some(identity(&strangers, "stranger")))
            .await
            .is_err(),
        "a client certificate from another CA"
    );
}

#[tokio::test]
async fn tls_1_3_and_1_2_are_spoken_and_alpn_settles_on_http_1_1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let (cert, key) = ca
        .issue(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "tls");
    let acceptor = TlsAcceptor::new(
        load(&cert, &key).unwrap(),
        None,
        "test",
        HandshakeLog::Public,
    )
    .unwrap();
    let addr = serve(acceptor).await;
    let roots = arthas_edge::tls::read_roots(&ca_file).unwrap();
    for (version, wanted) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        // A browser offers h2 first; the server only speaks HTTP/1.1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        let session = tls.get_ref().1;
        assert_eq!(session.protocol_version(), Some(wanted));
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
}
