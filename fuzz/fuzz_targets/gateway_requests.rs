//! The gateway's request parsing, whole: raw bytes as an HTTP/1.1
//! connection to the public API (directory, room API, web client) or the
//! internal API (with its secret), through hyper into the real handlers:
//! paths, query strings, headers (X-Forwarded-For and X-Real-IP are
//! trusted here, so they are parsed), JSON bodies. No handler may panic
//! (the handlers run unwrapped, so a panic reaches the fuzzer) and none may
//! answer 500.
#![no_main]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gateway::http::{HttpApi, HttpConfig};
use gateway::internal::{InternalApi, InternalConfig};
use gateway::password::PasswordConfig;
use gateway::{Gateway, GatewayConfig};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use store::memory::{MemoryEngine, MemoryLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The internal API's secret (seeds carry `Authorization: Bearer` with it).
const SECRET: &str = "fuzz-internal-secret";

struct Apis {
    runtime: tokio::runtime::Runtime,
    public: HttpApi,
    internal: InternalApi,
}

fn apis() -> &'static Apis {
    static APIS: OnceLock<Apis> = OnceLock::new();
    APIS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let _guard = runtime.enter();
        let config = GatewayConfig {
            // cheap argon2: the fuzzer is after parsing, not hashing
            password: PasswordConfig {
                memory_kib: 8,
                iterations: 1,
                ..PasswordConfig::default()
            },
            ..GatewayConfig::default()
        };
        let gateway =
            Gateway::new(MemoryEngine::new(MemoryLimits::default()), config).expect("gateway");
        let http = HttpConfig {
            // the fuzzer's peer is a trusted proxy, so X-Forwarded-For is parsed too
            trusted_proxies: edge::TrustedProxies::parse("192.0.2.0/24").expect("a network"),
            allowed_origins: "https://chat.example".into(),
            ..HttpConfig::default()
        };
        let public = HttpApi::new(gateway.clone(), http, Arc::new(|| 7));
        let internal = InternalApi::new(gateway, InternalConfig::new(SECRET));
        Apis {
            runtime,
            public,
            internal,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, request)) = data.split_first() else {
        return;
    };
    let apis = apis();
    let peer: SocketAddr = "192.0.2.7:40000".parse().expect("an address");
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let internal = which & 1 == 1;
    let service = service_fn(move |request| async move {
        let response = if internal {
            apis.internal.handle(request, peer).await
        } else {
            apis.public.handle(request, peer).await
        };
        assert!(
            response.status().as_u16() != 500,
            "a request was answered 500"
        );
        Ok::<_, Infallible>(response)
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(server), service);
    apis.runtime.block_on(async {
        let talk = async {
            let _ = client.write_all(request).await;
            let _ = client.shutdown().await;
            let mut response = Vec::new();
            let _ = client.read_to_end(&mut response).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            tokio::join!(connection, talk)
        })
        .await;
    });
});
