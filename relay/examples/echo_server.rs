//! The relay's echo endpoint for the Autobahn TestSuite's fuzzingclient:
//! the production HTTP front, connection task, frame reader and outbox,
//! with an application that echoes every message.
//!
//! `cargo run -p arthas-relay --features testing --example echo_server [ADDR]`
//! (default 127.0.0.1:9001) prints `listening on ws://ADDR/ws`; see
//! docs/autobahn/README.md.

use std::time::Duration;

use arthas_relay::testing::start_echo;
use arthas_relay::RelayConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on ws://{}/ws", listener.local_addr()?);
    let config = RelayConfig {
        // Section 9 sends messages of up to 16 MiB.
        max_message_bytes: 64 << 20,
        ping_interval: Duration::from_secs(3600),
        read_timeout: Duration::from_secs(3600),
        message_timeout: Duration::from_secs(120),
        ..RelayConfig::default()
    };
    let _relay = start_echo(listener, config);
    std::future::pending::<()>().await;
    Ok(())
}
