//! `rediss://`: the engine's commands and its bus over TLS to a real
//! `redis-server` with a TLS port, the server certificate checked against a
//! CA the test makes (handed over as `SSL_CERT_FILE`, as an operator would).
//! Its own test binary: it sets a process-wide environment variable.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use arthas_store::redis::{RedisConfig, RedisEngine, RedisMode};
use arthas_store::testing::{RecordingSink, RedisServer};
use arthas_store::{Bus, BusMessage, RoomStore, Target};
use bytes::Bytes;

const WAIT: Duration = Duration::from_secs(10);

/// A CA, and a server certificate it signed for 127.0.0.1, made with openssl.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=arthas test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_the_bus_work_over_tls_with_a_trusted_ca_only() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let (server, tls_port) = RedisServer::start_tls(certs.path())
        .await
        .expect("redis-server with TLS starts");
    // rustls-native-certs reads the trusted roots from SSL_CERT_FILE (one
    // test in this binary, so nothing else races on the variable).
    // A server certificate from a CA we do not trust is refused...
    let other = tempfile::tempdir().expect("tempdir");
    make_certs(other.path());
    std::env::set_var("SSL_CERT_FILE", other.path().join("ca.crt"));
    let refused = RedisEngine::connect(
        RedisMode::Standalone {
            url: format!("rediss://127.0.0.1:{tls_port}"),
        },
        RedisConfig::default(),
    )
    .await;
    match refused {
        Ok(_) => panic!("connected to a server whose CA is not trusted"),
        Err(e) => assert!(
            e.to_string().to_lowercase().contains("certificate"),
            "refused, but not for the certificate: {e}"
        ),
    }
    // ... and accepted with the right CA.
    std::env::set_var("SSL_CERT_FILE", certs.path().join("ca.crt"));

    let engine = RedisEngine::connect(
        RedisMode::Standalone {
            url: format!("rediss://127.0.0.1:{tls_port}"),
        },
        RedisConfig::default(),
    )
    .await
    .expect("the engine connects over TLS");
    let sink = RecordingSink::new();
    engine.attach(sink.clone());

    // Commands: a room is created and joined.
    engine
        .create_room(common::new_room("tls-room", 10, ""))
        .await
        .expect("create");
    let joined = engine
        .join(
            "tls-room",
            common::member(7, "n1"),
            false,
            arthas_store::unix_secs(),
        )
        .await
        .expect("join");
    assert_eq!(joined.members.len(), 1);

    // The bus: a message published comes back through the subscription.
    engine.subscribe("tls-room").await.expect("subscribe");
    let message = BusMessage {
        target: Target::Room { except: None },
        frame: Bytes::from_static(b"over tls"),
    };
    engine
        .publish("tls-room", message.clone())
        .await
        .expect("publish");
    let got = sink.wait_for("tls-room", 1, WAIT).await.expect("delivered");
    assert_eq!(got, vec![message]);

    // Every connection of the engine is on the TLS port.
    let clients = match server.command(&["CLIENT", "LIST"]).await {
        Ok(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(redis::Value::VerbatimString { text, .. }) => text,
        other => panic!("CLIENT LIST: {other:?}"),
    };
    let on_tls = clients
        .lines()
        .filter(|l| l.contains(&format!("laddr=127.0.0.1:{tls_port} ")))
        .count();
    assert!(
        on_tls >= 2,
        "no command and bus connections on the TLS port:\n{clients}"
    );
}
