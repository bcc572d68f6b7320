//! The harness's own connections: connect (plainly or over TLS), one
//! command, PING, and reading replies.

use super::*;

pub(super) fn as_int(v: &Value) -> Result<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(fail(format!("expected an integer, got {other:?}"))),
    }
}

pub(super) async fn connect(port: u16) -> Result<redis::aio::MultiplexedConnection> {
    let tls = tls_ports().get(&port).cloned();
    let client = match tls {
        None => redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(fail)?,
        Some(tls) => {
            // rustls needs a process-wide provider for redis-rs' TLS.
            let _ = rustls::crypto::ring::default_provider().install_default();
            redis::Client::build_with_tls(format!("rediss://127.0.0.1:{port}"), tls.certificates()?)
                .map_err(fail)?
        }
    };
    tokio::time::timeout(START_DEADLINE, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| fail(format!("no connection to port {port}")))?
        .map_err(fail)
}

pub(super) async fn command_at(port: u16, args: &[&str]) -> Result<Value> {
    let mut conn = connect(port).await?;
    let mut cmd = redis::Cmd::new();
    for a in args {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn)
        .await
        .map_err(|e| fail(format!("{args:?} on port {port}: {e}")))
}

/// Whether a server answers PING on `port` (raw RESP, no client library;
/// over TLS through redis-rs).
pub(super) async fn ping(port: u16) -> bool {
    if tls_ports().contains_key(&port) {
        let attempt = async {
            let mut conn = connect(port).await.ok()?;
            let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
            Some(pong == "PONG")
        };
        return matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Some(true))
        );
    }
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

pub(super) fn text(v: Value) -> Result<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).map_err(fail),
        Value::SimpleString(s) => Ok(s),
        Value::VerbatimString { text, .. } => Ok(text),
        other => Err(fail(format!("expected text, got {other:?}"))),
    }
}
