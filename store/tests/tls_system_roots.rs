//! `rediss://` without a configured CA: the server's certificate is checked
//! against the system's roots, where `SSL_CERT_FILE` (as an operator would
//! set it) adds a private CA. Its own test binary: it sets a process-wide
//! environment variable.

mod common;

use arthas_store::redis::{RedisConfig, RedisEngine, RedisMode};
use arthas_store::testing::{RedisServer, ServerTls};
use arthas_store::RoomStore;
use edge::testing::{TestCa, Usage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_file_supplies_the_trusted_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("redis test CA");
    let (cert, key) = ca
        .issue(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "server");
    let (client_cert, client_key) = ca
        .issue(&["harness"], Usage::Client)
        .write(dir.path(), "harness");
    let tls = ServerTls {
        cert,
        key,
        ca: ca.write(dir.path(), "ca"),
        auth_clients: false,
        client_cert,
        client_key,
    };
    let server = RedisServer::start_tls(&tls)
        .await
        .expect("redis-server with TLS starts");
    let mode = || RedisMode::Standalone { url: server.url() };
    // One test in this binary, so nothing else races on the variable.
    std::env::set_var(
        "SSL_CERT_FILE",
        TestCa::new("another CA").write(dir.path(), "other"),
    );
    let refused = RedisEngine::connect(mode(), RedisConfig::default()).await;
    match refused {
        Ok(_) => panic!("connected to a server whose CA is not trusted"),
        Err(e) => assert!(
            e.to_string().to_lowercase().contains("certificate"),
            "refused, but not for the certificate: {e}"
        ),
    }
    std::env::set_var("SSL_CERT_FILE", &tls.ca);
    let engine = RedisEngine::connect(mode(), RedisConfig::default())
        .await
        .expect("the engine connects over TLS");
    assert!(engine
        .create_room(common::new_room("system-roots", 10, ""))
        .await
        .expect("create"));
}
