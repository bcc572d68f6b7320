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

/// A collector that hands every export request to the test (and the
/// value of the `x-collector-token` header it came with).
struct Collector(
    mpsc::UnboundedSender<ExportTraceServiceRequest>,
    mpsc::UnboundedSender<String>,
);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let token = request
            .metadata()
            .get("x-collector-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let _ = self.1.send(token);
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
    let (addr, requests, _tokens) = start_collector_with(None).await;
    (addr, requests)
}

/// [`start_collector`], also handing over each request's token header.
async fn start_collector_with_tokens() -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    mpsc::UnboundedReceiver<String>,
) {
    start_collector_with(None).await
}

/// The collector, over TLS with `identity` (PEM certificate chain and key)
/// when given: its address, the requests and each request's token header.
async fn start_collector_with(
    identity: Option<(String, String)>,
) -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    mpsc::UnboundedReceiver<String>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let addr = listener.local_addr().expect("collector address");
    let (tx, rx) = mpsc::unbounded_channel();
    let (token_tx, token_rx) = mpsc::unbounded_channel();
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
            .add_service(TraceServiceServer::new(Collector(tx, token_tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (addr, rx, token_rx)
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

/// The spans of every request, with their resource's attributes.
fn spans_with_resource(received: &[ExportTraceServiceRequest]) -> Vec<(&Span, &[KeyValue])> {
    received
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| {
            let attrs = rs
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            rs.scope_spans
                .iter()
                .flat_map(|ss| &ss.spans)
                .map(move |s| (s, attrs))
        })
        .collect()
}

/// A cluster configured only by the standard OTEL_* variables: the relay's
/// `create_room` and the gateway's `POST /internal/v1/rooms` are one trace
/// (W3C trace context over the internal API), the exporter sends the
/// configured header, the resource carries OTEL_RESOURCE_ATTRIBUTES,
/// service.version and host.name (JSON log lines carrying the trace id:
/// tests/observability.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_and_the_gateway_share_one_trace_configured_by_otel_variables() {
    let (collector, mut requests, mut tokens) = start_collector_with_tokens().await;
    let endpoint = format!("http://{collector}");
    let opts = support::Opts::new()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-collector-token=otlp-test-token",
        )
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=otlp-test,k8s.namespace.name=chat",
        )
        .env("ARTHAS_LOG", "info");
    let mut env = support::Env::start_in(support::Topology::Redis, opts).await;
    let mut creator = Client::connect(&env.ws_url(0)).await;
    let (created, _) = create_on(
        &mut creator,
        map! {"name" => "alice", "password" => "", "ephemeral" => 0, "expiry" => 0},
    )
    .await;
    let room_id = created.str("roomId").to_string();
    drop(creator);
    for (label, status) in env.terminate_all().await {
        assert!(status.success(), "{label} exited with {status}");
    }
    let mut received = Vec::new();
    while let Ok(request) = requests.try_recv() {
        received.push(request);
    }
    let spans = spans_with_resource(&received);
    let create = spans
        .iter()
        .find(|(s, _)| s.name == "create_room")
        .unwrap_or_else(|| {
            panic!(
                "no create_room span among {:?}",
                spans.iter().map(|(s, _)| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        string_attr(&create.0.attributes, "room"),
        Some(room_id.as_str())
    );
    let internal = spans
        .iter()
        .find(|(s, _)| {
            s.name == "http_request"
                && string_attr(&s.attributes, "http.route") == Some("/internal/v1/rooms")
        })
        .expect("the gateway's span of POST /internal/v1/rooms");
    assert_eq!(
        internal.0.trace_id, create.0.trace_id,
        "the gateway's span continues the relay's trace"
    );
    assert_eq!(
        internal.0.parent_span_id, create.0.span_id,
        "child of create_room"
    );
    for (span, resource) in [create, internal] {
        assert_eq!(
            string_attr(resource, "deployment.environment"),
            Some("otlp-test"),
            "{}",
            span.name
        );
        assert_eq!(string_attr(resource, "k8s.namespace.name"), Some("chat"));
        assert_eq!(
            string_attr(resource, "service.version"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(string_attr(resource, "host.name").is_some_and(|h| !h.is_empty()));
    }
    assert_eq!(string_attr(create.1, "service.name"), Some("relay"));
    assert_eq!(string_attr(internal.1, "service.name"), Some("gateway"));
    let mut seen = Vec::new();
    while let Ok(token) = tokens.try_recv() {
        seen.push(token);
    }
    assert!(
        !seen.is_empty() && seen.iter().all(|t| t == "otlp-test-token"),
        "OTEL_EXPORTER_OTLP_HEADERS not sent: {seen:?}"
    );
}

/// OTEL_TRACES_SAMPLER=always_off: the exporter runs, nothing is sampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_variable_is_honoured() {
    let (collector, mut requests) = start_collector().await;
    let envs = vec![
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".to_string(),
            format!("http://{collector}"),
        ),
        ("OTEL_TRACES_SAMPLER".to_string(), "always_off".to_string()),
        ("ARTHAS_LOG".to_string(), "info".to_string()),
    ];
    let args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
    let mut server = Starting::spawn("arthas", ARTHAS_BIN, &args, &envs, &["listening"])
        .ready()
        .await
        .unwrap_or_else(|e| panic!("arthas did not start: {e}"));
    let mut creator = Client::connect(&format!("ws://{}/ws", server.addr())).await;
    create_on(
        &mut creator,
        map! {"name" => "alice", "password" => "", "ephemeral" => 0, "expiry" => 0},
    )
    .await;
    drop(creator);
    assert!(server.terminate().await.success());
    assert!(
        server.stderr().contains("exporting spans over OTLP/gRPC"),
        "export was not configured from the variable: {}",
        server.stderr()
    );
    let mut spans = 0;
    while let Ok(request) = requests.try_recv() {
        spans += spans_with_resource(&[request]).len();
    }
    assert_eq!(spans, 0, "always_off exported spans");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_collector_over_https() {
    let certs = support::tls::certificates();
    let issued = certs.ca.issue(&["127.0.0.1"], edge::testing::Usage::Server);
    let (collector, mut requests, _tokens) =
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
