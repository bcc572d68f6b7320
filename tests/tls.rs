//! TLS served in-process, end to end with the real binaries and a CA made in the test
//! (`support::tls`): WSS and HTTPS on the all-in-one server, the gateway's APIs and metrics
//! over HTTPS, the internal API over mutual TLS, what an untrusted, missing or expired
//! certificate does (refused, with a log line saying why), and a certificate rotated on disk
//! the way cert-manager rotates a Secret volume, while connections stay up.
//!
//! The conformance suite also runs over TLS (`ARTHAS_TEST_TLS=1`, see test.sh); these tests are
//! the TLS-specific behaviour.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use edge::testing::{TestCa, Usage};
use rustls::pki_types::CertificateDer;
use store::testing::RedisServer;
use support::client::t;
use support::room::create_data;
use support::server::{Server, Starting, GATEWAY_BIN, RELAY_BIN};
use support::{http, open_room, say, tls, Client, ConnectOpts, Env, Opts, Topology};

/// How long a condition may take to hold (a reload, a log line).
const WAIT: Duration = Duration::from_secs(15);

/// The leaf certificate `addr` serves, trusting `config`; `Err` with rustls' reason.
async fn served_leaf(
    addr: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<CertificateDer<'static>, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let stream = tls::connect(tcp, addr, config)
        .await
        .map_err(|e| e.to_string())?;
    let (_, session) = stream.get_ref();
    Ok(session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("no certificate")?
        .clone()
        .into_owned())
}

fn leaf_of(chain_pem: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("valid PEM")
}

/// Polls `check` until it holds or [`WAIT`] passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `args` as owned strings.
fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn the_all_in_one_server_speaks_wss_and_https_only() {
    let env = Env::start_tls_in(Topology::Single, Opts::new(), true).await;
    assert!(env.ws_url(0).starts_with("wss://"));
    let [mut a, mut b] = open_room::<2>(&env).await;
    say(&mut a, &mut [&mut b]).await;
    let pong = http::get(&format!("{}/ping", env.http_url(0))).await;
    assert_eq!((pong.status, pong.text().as_str()), (200, "pong"));
    // Plain HTTP on the TLS port gets no HTTP answer.
    let addr = env.http_url(0).trim_start_matches("https://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap();
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_cluster_serves_https_apis_and_exposes_certificate_expiry() {
    let mut env = Env::start_tls_in(Topology::Redis, Opts::new(), true).await;
    let hub = http::get(&format!("{}/api/hub", env.http_url(0))).await;
    assert_eq!(hub.status, 200, "{}", hub.text());
    // Room creation and password checks go through the internal API (mutual TLS here).
    let hash = support::msg::password_hash("s3cret");
    let data = map! {"name" => "m0", "password" => hash.as_str(), "ephemeral" => 0, "expiry" => 0};
    let [mut a, mut b] = support::open_room_with::<2>(&env, data, &hash).await;
    say(&mut a, &mut [&mut b]).await;

    let metric = "arthas_tls_certificate_expiry_timestamp_seconds";
    let relay_metrics = http::get(&format!("{}/metrics", env.admin_url(0).unwrap()))
        .await
        .text();
    for certificate in ["server", "client"] {
        assert!(
            relay_metrics.contains(&format!("{metric}{{certificate=\"{certificate}\"}}")),
            "relay metrics lack the {certificate} certificate's expiry:\n{relay_metrics}"
        );
    }
    let admin = env.gateway().unwrap().addr_of("admin").unwrap().to_string();
    let gateway_metrics = http::get(&format!("https://{admin}/metrics")).await.text();
    let line = gateway_metrics
        .lines()
        .find(|l| l.starts_with(&format!("{metric}{{certificate=\"server\"}}")))
        .unwrap_or_else(|| panic!("no expiry gauge:\n{gateway_metrics}"));
    let not_after: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        not_after > now + 6.0 * 86_400.0,
        "the test certificate is valid for a week: {line}"
    );
}

/// A Redis, a gateway and one relay started with these extra arguments (TLS is the caller's).
struct Cluster {
    _redis: RedisServer,
    gateway: Server,
    relay: Server,
}

impl Cluster {
    async fn start(gateway_extra: Vec<String>, relay_extra: Vec<String>) -> Cluster {
        let redis = RedisServer::start().await.expect("redis-server starts");
        Cluster::start_on(redis, gateway_extra, relay_extra).await
    }

    async fn start_on(
        redis: RedisServer,
        gateway_extra: Vec<String>,
        relay_extra: Vec<String>,
    ) -> Cluster {
        let certs = tls::certificates();
        let mut gateway_args = args(&[
            "--listen",
            "127.0.0.1:0",
            "--internal-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--store",
            "redis",
            "--redis-url",
            &redis.url(),
            "--tls-cert",
            &path(&certs.server_cert),
            "--tls-key",
            &path(&certs.server_key),
        ]);
        gateway_args.extend(gateway_extra);
        let envs = vec![("ARTHAS_LOG".to_string(), "info".to_string())];
        let gateway = Starting::spawn(
            "gateway",
            GATEWAY_BIN,
            &gateway_args,
            &envs,
            &["listening", "internal", "admin"],
        )
        .ready()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let internal = gateway.addr_of("internal").unwrap().to_string();
        let mut relay_args = args(&[
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--redis-url",
            &redis.url(),
            "--gateway-url",
            &format!("https://{internal}"),
            "--tls-cert",
            &path(&certs.server_cert),
            "--tls-key",
            &path(&certs.server_key),
        ]);
        relay_args.extend(relay_extra);
        let relay = Starting::spawn(
            "relay",
            RELAY_BIN,
            &relay_args,
            &envs,
            &["listening", "admin"],
        )
        .ready()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        Cluster {
            _redis: redis,
            gateway,
            relay,
        }
    }

    fn ws_url(&self) -> String {
        format!("wss://{}/ws", self.relay.addr())
    }

    /// CreateRoom on the relay: the gateway's answer (RoomCreated), or the error frame's data.
    async fn create_room(&self) -> (u8, rmpv::Value) {
        let mut client = Client::connect(&self.ws_url()).await;
        client.send(t::CREATE_ROOM, create_data("m0")).await;
        client.recv().await
    }
}

#[tokio::test]
async fn relays_authenticated_by_client_certificate_alone_create_and_join_password_rooms() {
    let certs = tls::certificates();
    // No --internal-secret on either side: the client certificate is the credential.
    let cluster = Cluster::start(
        args(&["--internal-tls-client-ca", &path(&certs.ca_file)]),
        args(&[
            "--gateway-tls-ca",
            &path(&certs.ca_file),
            "--gateway-tls-cert",
            &path(&certs.client_cert),
            "--gateway-tls-key",
            &path(&certs.client_key),
        ]),
    )
    .await;
    let hash = support::msg::password_hash("right");
    let mut owner = Client::connect(&cluster.ws_url()).await;
    owner
        .send(
            t::CREATE_ROOM,
            map! {"name" => "owner", "password" => hash.as_str(), "ephemeral" => 0, "expiry" => 0},
        )
        .await;
    let created = owner.expect(t::ROOM_CREATED).await;
    owner.expect(t::ROOM_JOINED).await;
    let room_id = support::ValueExt::str(&created, "roomId").to_string();
    let mut wrong = Client::connect(&cluster.ws_url()).await;
    wrong
        .send(
            t::JOIN_ROOM,
            support::room::join_data(&room_id, "x", &support::msg::password_hash("nope")),
        )
        .await;
    wrong.expect_error("E006", "wrong password").await;
    let mut guest = Client::connect(&cluster.ws_url()).await;
    guest
        .send(
            t::JOIN_ROOM,
            support::room::join_data(&room_id, "guest", &hash),
        )
        .await;
    guest.expect(t::ROOM_JOINED).await;
    owner.expect(t::MEMBER_JOINED).await;
}

#[tokio::test]
async fn a_relay_without_a_client_certificate_is_refused_and_the_gateway_logs_why() {
    let certs = tls::certificates();
    let cluster = Cluster::start(
        args(&[
            "--internal-tls-client-ca",
            &path(&certs.ca_file),
            "--internal-secret",
            "s",
        ]),
        args(&[
            "--gateway-tls-ca",
            &path(&certs.ca_file),
            "--internal-secret",
            "s",
        ]),
    )
    .await;
    let (ty, data) = cluster.create_room().await;
    assert_eq!(ty, t::ERROR, "created without a client certificate: {data}");
    assert_eq!(
        support::ValueExt::str(&data, "msg"),
        "service temporarily unavailable, retry"
    );
    let gateway = &cluster.gateway;
    eventually("the gateway logs the refused handshake", || async {
        let logs = gateway.stderr();
        logs.lines().any(|l| {
            l.contains("TLS handshake failed")
                && l.contains("listener=\"internal\"")
                && l.contains("peer sent no certificates")
        })
    })
    .await;
    // The relay answers the client before its log line reaches the pipe.
    let relay = &cluster.relay;
    eventually("the relay logs the failed gateway call", || async {
        relay.stderr().contains("gateway call failed")
    })
    .await;
}

#[tokio::test]
async fn a_gateway_certificate_from_an_untrusted_ca_is_refused_with_a_clear_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let stranger = TestCa::new("a CA the relay trusts instead").write(dir.path(), "other");
    let cluster = Cluster::start(
        args(&["--internal-secret", "s"]),
        args(&[
            "--gateway-tls-ca",
            &path(&stranger),
            "--internal-secret",
            "s",
        ]),
    )
    .await;
    let (ty, data) = cluster.create_room().await;
    assert_eq!(ty, t::ERROR, "created through an untrusted gateway: {data}");
    let relay = &cluster.relay;
    // The relay's stderr is collected by a reader thread: the line may land a moment after
    // the error frame.
    eventually("a log line about the failed call", || async {
        relay.stderr().contains("gateway call failed")
    })
    .await;
    let logs = relay.stderr();
    let line = logs
        .lines()
        .find(|l| l.contains("gateway call failed"))
        .unwrap_or_else(|| panic!("no log line about the failed call:\n{logs}"));
    assert!(
        line.contains("invalid peer certificate") && line.contains("UnknownIssuer"),
        "the log line does not say why: {line}"
    );
}

#[tokio::test]
async fn an_expired_certificate_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("test CA");
    let (cert, key) = ca
        .issue_expired(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "tls");
    let started = Starting::spawn(
        "arthas",
        support::server::ARTHAS_BIN,
        &args(&[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &path(&cert),
            "--tls-key",
            &path(&key),
        ]),
        &[],
        &["listening"],
    )
    .ready()
    .await;
    let Err(why) = started else {
        panic!("the server started with an expired certificate");
    };
    assert!(
        why.contains("--tls-cert/--tls-key") && why.contains("expired at"),
        "{why}"
    );
}

/// cert-manager's Secret volume: `tls.crt` and `tls.key` are symlinks into `..data`, itself a
/// symlink to a timestamped directory that kubelet replaces atomically on rotation.
struct SecretVolume {
    dir: tempfile::TempDir,
    generation: u32,
}

impl SecretVolume {
    fn new(first: &edge::testing::Issued) -> SecretVolume {
        let mut volume = SecretVolume {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        volume.rotate(first);
        let root = volume.dir.path();
        std::os::unix::fs::symlink("..data/tls.crt", root.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", root.join("tls.key")).unwrap();
        volume
    }

    /// Writes the new pair into a fresh directory and swaps `..data` to it in one rename.
    fn rotate(&mut self, issued: &edge::testing::Issued) {
        self.generation += 1;
        let root = self.dir.path();
        let data = format!("..2026_{:02}", self.generation);
        std::fs::create_dir(root.join(&data)).unwrap();
        std::fs::write(root.join(&data).join("tls.crt"), &issued.chain_pem).unwrap();
        std::fs::write(root.join(&data).join("tls.key"), &issued.key_pem).unwrap();
        std::os::unix::fs::symlink(&data, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    }

    fn cert(&self) -> String {
        path(&self.dir.path().join("tls.crt"))
    }

    fn key(&self) -> String {
        path(&self.dir.path().join("tls.key"))
    }
}

#[tokio::test]
async fn a_certificate_rotated_on_disk_reaches_new_connections_while_open_ones_stay() {
    let certs = tls::certificates();
    let first = certs.ca.issue(&["127.0.0.1"], Usage::Server);
    let mut volume = SecretVolume::new(&first);
    let mut server = Server::start(
        &Opts::new()
            .flag("--tls-cert", volume.cert())
            .flag("--tls-key", volume.key())
            .flag("--tls-reload-interval-ms", 50)
            .env("ARTHAS_LOG", "info"),
    )
    .await;
    let addr = server.addr().to_string();
    let ws = format!("wss://{addr}/ws");
    assert_eq!(
        served_leaf(&addr, tls::client_config()).await.unwrap(),
        leaf_of(&first.chain_pem)
    );
    let mut before = Client::connect(&ws).await;
    let (_, joined) = support::room::create_on(&mut before, create_data("before")).await;
    let room_id = support::ValueExt::str(&joined, "roomId").to_string();

    let second = certs.ca.issue(&["127.0.0.1"], Usage::Server);
    volume.rotate(&second);
    let wanted = leaf_of(&second.chain_pem);
    eventually("new connections get the rotated certificate", || {
        let addr = addr.clone();
        let wanted = wanted.clone();
        async move { served_leaf(&addr, tls::client_config()).await.ok() == Some(wanted) }
    })
    .await;
    // A connection made with the new certificate chats with the one made before.
    let mut after = Client::connect_opts(&ws, &ConnectOpts::default())
        .await
        .expect("connect after the rotation");
    after
        .send(
            t::JOIN_ROOM,
            support::room::join_data(&room_id, "after", ""),
        )
        .await;
    after.expect(t::ROOM_JOINED).await;
    before.expect(t::MEMBER_JOINED).await;
    let chat = map! {"iv" => "aXY=", "ciphertext" => "b2xk"};
    before.send(t::SEND_MESSAGE, chat).await;
    after.expect(t::RELAY_MESSAGE).await;
    let chat = map! {"iv" => "aXY=", "ciphertext" => "bmV3"};
    after.send(t::SEND_MESSAGE, chat).await;
    before.expect(t::RELAY_MESSAGE).await;

    // An expired replacement is refused with a log line; the second certificate stays.
    volume.rotate(&certs.ca.issue_expired(&["127.0.0.1"], Usage::Server));
    eventually("the refused rotation is logged", || async {
        server
            .stderr()
            .lines()
            .any(|l| l.contains("TLS certificate not reloaded") && l.contains("expired at"))
    })
    .await;
    assert_eq!(
        served_leaf(&addr, tls::client_config()).await.unwrap(),
        wanted
    );
    assert!(server.is_running());
}

#[tokio::test]
async fn relays_and_the_gateway_use_redis_over_tls_with_client_certificates() {
    let certs = tls::certificates();
    let dir = tempfile::tempdir().unwrap();
    let (redis_cert, redis_key) = certs
        .ca
        .issue(&["127.0.0.1"], Usage::Server)
        .write(dir.path(), "redis");
    let (harness_cert, harness_key) = certs
        .ca
        .issue(&["harness"], Usage::Client)
        .write(dir.path(), "harness");
    let redis = RedisServer::start_tls(&store::testing::ServerTls {
        cert: redis_cert,
        key: redis_key,
        ca: certs.ca_file.clone(),
        auth_clients: true,
        client_cert: harness_cert,
        client_key: harness_key,
    })
    .await
    .expect("redis-server on TLS starts");
    let redis_tls = args(&[
        "--redis-tls-ca",
        &path(&certs.ca_file),
        "--redis-tls-cert",
        &path(&certs.client_cert),
        "--redis-tls-key",
        &path(&certs.client_key),
        "--internal-secret",
        "s",
    ]);
    let mut relay_args = redis_tls.clone();
    relay_args.extend(args(&["--gateway-tls-ca", &path(&certs.ca_file)]));
    let cluster = Cluster::start_on(redis, redis_tls, relay_args).await;
    let (ty, data) = cluster.create_room().await;
    assert_eq!(ty, t::ROOM_CREATED, "{data}");
}
