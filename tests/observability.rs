//! What an operator reads: the metrics of every binary against the table in
//! docs/OPERATIONS.md ("Metrics reference": names, types and help texts,
//! word for word), the metrics a chat moves, and JSON logs that are the
//! only output of a JSON-configured process, starting with the version and
//! the settings but never a secret.

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use store::testing::RedisServer;
use support::http;
use support::room::create_on;
use support::server::{GATEWAY_BIN, RELAY_BIN};
use support::{open_room, say, Client, Env, Opts, Topology};

/// `(name, type, help)` of every family in a text exposition.
fn families(exposition: &str) -> BTreeSet<(String, String, String)> {
    let mut help = std::collections::HashMap::new();
    let mut out = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name.to_string(), text.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line with a type");
            let text = help.get(name).cloned().unwrap_or_default();
            out.insert((name.to_string(), kind.to_string(), text));
        }
    }
    out
}

/// The rows of the documented table exported by `binary`.
fn documented(binary: &str) -> BTreeSet<(String, String, String)> {
    let ops = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md"))
        .expect("docs/OPERATIONS.md");
    let table = ops
        .split("### Metrics reference")
        .nth(1)
        .expect("a Metrics reference section");
    let mut rows = BTreeSet::new();
    for line in table
        .lines()
        .skip_while(|l| !l.starts_with("| metric"))
        .skip(2)
    {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        assert_eq!(cells.len(), 5, "a metric row has five cells: {line}");
        if cells[2].split(", ").any(|b| b == binary) {
            rows.insert((
                cells[0].trim_matches('`').to_string(),
                cells[1].to_string(),
                cells[4].to_string(),
            ));
        }
    }
    assert!(!rows.is_empty(), "no documented metric for {binary}");
    rows
}

fn assert_matches_the_table(binary: &str, exposition: &str) {
    let exported = families(exposition);
    let documented = documented(binary);
    let missing: Vec<_> = documented.difference(&exported).collect();
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    assert!(
        missing.is_empty() && undocumented.is_empty(),
        "{binary}: documented but not exported (or different type/help): {missing:#?}\n\
         exported but not documented as such: {undocumented:#?}"
    );
}

async fn scrape(admin: &str) -> String {
    let response = http::get(&format!("{admin}/metrics")).await;
    assert_eq!(response.status, 200);
    response.text()
}

/// The value of one exact series line (`name{labels}`), if exported.
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_relay_and_the_gateway_is_documented_with_its_type_and_help() {
    let mut env = Env::start_in(Topology::Redis, Opts::new()).await;
    let relay = scrape(&env.admin_url(0).expect("relay admin")).await;
    assert_matches_the_table("relay", &relay);
    let gateway_admin = env
        .gateway()
        .and_then(|g| g.addr_of("admin").map(|a| format!("http://{a}")))
        .expect("gateway admin");
    assert_matches_the_table("gateway", &scrape(&gateway_admin).await);
    // Labelled series are there before their first event.
    for series in [
        "arthas_relay_frames_in_total{type=\"send_message\"}",
        "arthas_relay_errors_out_total{code=\"E005\"}",
        "arthas_relay_closes_total{code=\"4001\"}",
    ] {
        assert_eq!(sample(&relay, series), Some(0.0), "{series}");
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        relay.contains("arthas_build_info{commit=\"")
            && relay.contains(&format!("version=\"{version}\"}} 1")),
        "build info: {relay}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_moves_delivery_publish_byte_and_frame_metrics() {
    let env = Env::start_in(Topology::Redis, Opts::new()).await;
    let [mut a, mut b] = open_room::<2>(&env).await;
    say(&mut a, &mut [&mut b]).await;
    let admin = env.admin_url(1).expect("relay 1 admin");
    // The receiver's relay delivered the message; the sender's published it.
    let receiver = scrape(&admin).await;
    let sender = scrape(&env.admin_url(0).expect("relay 0 admin")).await;
    assert!(sample(&sender, "arthas_relay_publishes_total").unwrap_or(0.0) >= 1.0);
    assert!(sample(&sender, "arthas_relay_publish_duration_seconds_count").unwrap_or(0.0) >= 1.0);
    assert!(
        sample(&receiver, "arthas_relay_delivery_duration_seconds_count").unwrap_or(0.0) >= 1.0
    );
    assert!(
        sample(
            &receiver,
            "arthas_relay_frames_out_total{type=\"relay_message\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(sample(&receiver, "arthas_relay_sent_bytes_total").unwrap_or(0.0) > 0.0);
    assert!(sample(&sender, "arthas_relay_received_bytes_total").unwrap_or(0.0) > 0.0);
    assert!(
        sample(
            &sender,
            "arthas_relay_frames_in_total{type=\"send_message\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    // Every relay counts the three live relays from Redis (after a heartbeat).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = scrape(&admin).await;
        if sample(&text, "arthas_relay_live_relays") == Some(3.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "live relays never reached 3: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A child process that is killed when dropped, so a failing assertion
/// leaks no process.
struct Guarded(std::process::Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `url` answers 200.
async fn wait_ready(url: &str, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("exited early with {status}");
        }
        if tokio::net::TcpStream::connect(
            url.trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default(),
        )
        .await
        .is_ok()
            && http::get(url).await.status == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every line `text` holds is one JSON object.
fn assert_all_json(what: &str, text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{what}: a line that is not JSON ({e}): {line:?}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_the_only_output_and_start_with_version_and_settings_without_secrets() {
    let redis = RedisServer::start().await.expect("redis-server");
    let secret = "observability-internal-secret-5d1e";
    let ticket_secret = "observability-ticket-secret-9a0b";
    let (public, internal, gw_admin) = (free_port(), free_port(), free_port());
    let (ws, relay_admin) = (free_port(), free_port());
    // Export on (to a port nobody listens on): spans get ids, and JSON
    // lines inside them carry those ids.
    let common = [
        ("ARTHAS_LOG_FORMAT", "json"),
        ("ARTHAS_LOG", "info"),
        ("ARTHAS_INTERNAL_SECRET", secret),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
    ];
    let spawn = |bin: &str, args: Vec<String>, extra: &[(&str, &str)]| {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in
            std::env::vars().filter(|(k, _)| k.starts_with("ARTHAS_") || k.starts_with("OTEL_"))
        {
            cmd.env_remove(k);
        }
        for (k, v) in common.iter().chain(extra) {
            cmd.env(k, v);
        }
        Guarded(cmd.spawn().expect("start the binary"))
    };
    let mut gateway = spawn(
        GATEWAY_BIN,
        vec![
            format!("--listen=127.0.0.1:{public}"),
            format!("--internal-listen=127.0.0.1:{internal}"),
            format!("--admin-listen=127.0.0.1:{gw_admin}"),
            format!("--redis-url={}", redis.url()),
        ],
        &[("ARTHAS_TICKET_SECRET", ticket_secret)],
    );
    let mut relay = spawn(
        RELAY_BIN,
        vec![
            format!("--listen=127.0.0.1:{ws}"),
            format!("--admin-listen=127.0.0.1:{relay_admin}"),
            format!("--gateway-url=http://127.0.0.1:{internal}"),
            format!("--redis-url={}", redis.url()),
        ],
        &[],
    );
    wait_ready(
        &format!("http://127.0.0.1:{gw_admin}/readyz"),
        &mut gateway.0,
    )
    .await;
    wait_ready(
        &format!("http://127.0.0.1:{relay_admin}/readyz"),
        &mut relay.0,
    )
    .await;
    let mut client = Client::connect(&format!("ws://127.0.0.1:{ws}/ws")).await;
    create_on(
        &mut client,
        map! {"name" => "alice", "password" => "", "ephemeral" => 0, "expiry" => 0},
    )
    .await;
    drop(client);
    for (name, mut guarded) in [("gateway", gateway), ("relay", relay)] {
        let child = &mut guarded.0;
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut stdout)
            .expect("stdout");
        child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut stderr)
            .expect("stderr");
        assert_eq!(stdout, "", "{name} wrote to stdout in JSON mode");
        let lines = assert_all_json(name, &stderr);
        let first = lines
            .first()
            .unwrap_or_else(|| panic!("{name} logged nothing"));
        let fields = &first["fields"];
        assert_eq!(fields["message"], format!("{name} starting"), "{first}");
        assert_eq!(fields["version"], env!("CARGO_PKG_VERSION"));
        assert!(fields["commit"].as_str().is_some_and(|c| !c.is_empty()));
        let config = fields["config"].as_str().unwrap_or_default();
        assert!(config.contains("--internal-secret=<redacted>"), "{config}");
        assert!(
            config.contains(&format!("--redis-url={}", redis.url())),
            "{config}"
        );
        for leaked in [secret, ticket_secret] {
            assert!(!stderr.contains(leaked), "{name} logged a secret: {stderr}");
        }
        if name == "relay" {
            let created = lines
                .iter()
                .find(|l| l["fields"]["message"] == "room created")
                .unwrap_or_else(|| panic!("no 'room created' line: {stderr}"));
            let trace_id = created["openTelemetry"]["traceId"]
                .as_str()
                .unwrap_or_default();
            assert!(
                trace_id.len() == 32 && trace_id.chars().all(|c| c.is_ascii_hexdigit()),
                "the line inside create_room carries no trace id: {created}"
            );
        }
        assert!(
            lines.iter().any(|l| l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("stop")
                    || m.contains("drain")
                    || m.contains("shutting"))),
            "{name}: no shutdown line: {stderr}"
        );
    }
}
