//! Trace export: the real `arthas` binary with `--otlp-endpoint` sends its
//! spans to an in-process OTLP/gRPC collector. A password room is created
//! and joined over real WebSockets and a chat message goes through; after
//! SIGTERM (which flushes the exporter) the collector must hold the
//! `create_room` and `join_room` spans with the room id, and nothing it
//! received may contain the password hash, the ciphertext, the IV or a
//! member name.

mod support;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use support::msg::password_hash;
use support::room::{create_on, join_data, member_from};
use support::server::{Starting, ARTHAS_BIN};
use support::{t, Client, ValueExt};
use tokio::sync::mpsc;

/// A collector that hands every export request to the test.
struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Starts the collector on an ephemeral port: its address and the requests.
async fn start_collector() -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
) {
    start_collector_with(None).await
}

/// The same, over TLS with `identity` (PEM certificate chain and key) when given.
async fn start_collector_with(
    identity: Option<(String, String)>,
) -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let addr = listener.local_addr().expect("collector address");
    let (tx, rx) = mpsc::unbounded_channel();
    let mut server = tonic::transport::Server::builder();
    if let Some((cert, key)) = identity {
        server = server
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            )
            .expect("the collector's TLS configuration");
    }
    tokio::spawn(
        server
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, rx)
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(AnyValue::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_room_operations_are_exported_without_secrets() {
    let (collector, mut requests) = start_collector().await;
    let args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
        "--otlp-endpoint".to_string(),
        format!("http://{collector}"),
    ];
    let mut server = Starting::spawn("arthas", ARTHAS_BIN, &args, &[], &["listening"])
        .ready()
        .await
        .unwrap_or_else(|e| panic!("arthas did not start: {e}"));
    let ws_url = format!(
        "ws://{}/ws",
        server.addr_of("listening").expect("listening address")
    );

    let password = password_hash("otlp-test-password-7c1f");
    let iv = "aXYtb3RscC10ZXN0LTRkOWE";
    let ciphertext = "Y2lwaGVydGV4dC1vdGxwLXRlc3QtOGIyZQ";
    let (alice, bob) = ("alice-otlp-3e8d", "bob-otlp-5a0c");

    let mut creator = Client::connect(&ws_url).await;
    let (created, joined) = create_on(
        &mut creator,
        map! {"name" => alice, "password" => password.as_str(), "ephemeral" => 0, "expiry" => 0},
    )
    .await;
    let room_id = created.str("roomId").to_string();
    let mut creator = member_from(creator, &joined);

    let mut joiner = Client::connect(&ws_url).await;
    joiner
        .send(t::JOIN_ROOM, join_data(&room_id, bob, &password))
        .await;
    joiner.expect(t::ROOM_JOINED).await;
    creator.expect(t::MEMBER_JOINED).await;

    joiner
        .send(
            t::SEND_MESSAGE,
            map! {"iv" => iv, "ciphertext" => ciphertext},
        )
        .await;
    let relayed = creator.expect(t::RELAY_MESSAGE).await;
    assert_eq!(relayed.str("ciphertext"), ciphertext);

    // SIGTERM: the binary closes the sockets, then flushes its spans before
    // it exits, so every export request has arrived once it is gone.
    let status = server.terminate().await;
    assert!(status.success(), "arthas exited with {status}");
    let mut received = Vec::new();
    while let Ok(request) = requests.try_recv() {
        received.push(request);
    }
    assert!(
        !received.is_empty(),
        "the collector received nothing; arthas logged:\n{}",
        server.stderr()
    );

    let spans: Vec<&Span> = received
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for name in ["create_room", "join_room", "check_password"] {
        let span = spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span among {names:?}"));
        assert_eq!(
            string_attr(&span.attributes, "room"),
            Some(room_id.as_str()),
            "{name} span without the room id: {:?}",
            span.attributes
        );
    }
    let service = received
        .iter()
        .flat_map(|r| &r.resource_spans)
        .filter_map(|rs| rs.resource.as_ref())
        .find_map(|r| string_attr(&r.attributes, "service.name"));
    assert_eq!(service, Some("arthas"), "service.name");

    // Everything the collector got, attributes, events and resource alike.
    let everything = format!("{received:?}");
    for (what, secret) in [
        ("password hash", password.as_str()),
        ("ciphertext", ciphertext),
        ("IV", iv),
        ("member name", alice),
        ("member name", bob),
    ] {
        assert!(
            !everything.contains(secret),
            "the {what} was exported: {everything}"
        );
    }
    drop(creator);
    drop(joiner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_collector_over_https() {
    let certs = support::tls::certificates();
    let issued = certs.ca.issue(&["127.0.0.1"], edge::testing::Usage::Server);
    let (collector, mut requests) =
        start_collector_with(Some((issued.chain_pem, issued.key_pem))).await;
    let args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
        "--otlp-endpoint".to_string(),
        format!("https://{collector}"),
    ];
    // The collector's CA is trusted the way an operator adds a private CA.
    let envs = vec![(
        "SSL_CERT_FILE".to_string(),
        certs.ca_file.display().to_string(),
    )];
    let mut server = Starting::spawn("arthas", ARTHAS_BIN, &args, &envs, &["listening"])
        .ready()
        .await
        .unwrap_or_else(|e| panic!("arthas did not start: {e}"));
    let ws_url = format!("ws://{}/ws", server.addr());
    let mut creator = Client::connect(&ws_url).await;
    let (created, _) = create_on(
        &mut creator,
        map! {"name" => "a", "password" => "", "ephemeral" => 0, "expiry" => 0},
    )
    .await;
    let status = server.terminate().await;
    assert!(status.success(), "arthas exited with {status}");
    let mut received = Vec::new();
    while let Ok(request) = requests.try_recv() {
        received.push(request);
    }
    let created_span = received
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .find(|s| s.name == "create_room");
    assert!(
        created_span
            .is_some_and(|s| string_attr(&s.attributes, "room") == Some(created.str("roomId"))),
        "no create_room span arrived over TLS; arthas logged:\n{}",
        server.stderr()
    );
}

#[tokio::test]
async fn an_unusable_otlp_endpoint_stops_the_start() {
    let args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
        "--otlp-endpoint".to_string(),
        "not a url".to_string(),
    ];
    let started = Starting::spawn("arthas", ARTHAS_BIN, &args, &[], &["listening"])
        .ready()
        .await;
    let Err(why) = started else {
        panic!("arthas started with an unusable --otlp-endpoint");
    };
    assert!(why.contains("--otlp-endpoint \"not a url\""), "{why}");
}
