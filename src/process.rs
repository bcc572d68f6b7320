//! Process plumbing shared by the binaries: the runtime, logging, trace
//! export, the start-up line, and the termination signal.
//!
//! Logs go to stderr as text or, with `--log-format json`, as one JSON
//! object per line and nothing else on stdout or stderr (the address lines
//! tests read are printed in text mode only), so a log collector never
//! meets a line it cannot parse. JSON lines inside a traced operation carry
//! its OpenTelemetry ids (`openTelemetry.traceId`, `.spanId`).
//!
//! Trace export follows the OpenTelemetry SDK's environment variables
//! (`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `_HEADERS`, `_TIMEOUT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_SDK_DISABLED`); `--otlp-endpoint` and `--otlp-service-name` win
//! over them when set. W3C trace context (`traceparent`) is propagated on
//! the relays' calls to the gateway's internal API.

use std::future::Future;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::cli::{LogFormat, ProcessArgs};

/// The workspace version the binaries were built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binaries were built from (`build.rs`; "unknown" without git).
pub const COMMIT: &str = env!("ARTHAS_COMMIT");

/// The log filter when `ARTHAS_LOG` is not set. The redis client is held at
/// `error`: while a cluster is unreachable it warns in a tight loop.
pub const DEFAULT_LOG_FILTER: &str = "info,redis=error";

/// The log format in force (set once by [`init_logging`]).
static LOG_FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The OTLP trace pipeline, when export is configured. [`run`] shuts it
/// down (flushing queued spans) after `main` returns.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Where spans go (logged by [`run`] after the start-up line).
    endpoint: Option<String>,
}

impl Telemetry {
    /// Flushes queued spans and stops the exporter (at most a few seconds).
    /// Blocks: call it on a blocking thread while the runtime still runs,
    /// since the gRPC channel lives on that runtime.
    fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(OTLP_SHUTDOWN_TIMEOUT) {
                tracing::warn!(error = %e, "tracing export: shutdown failed");
            }
        }
    }
}

/// How long the final span flush may take on exit.
const OTLP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Only spans of our own crates go to the exporter, never events (log
/// lines): spans exist only for rare operations and carry ids, while log
/// lines may carry anything. The HTTP/gRPC stack's own spans are excluded,
/// which also keeps the exporter from tracing itself.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    const CRATES: [&str; 3] = ["arthas_relay", "arthas_gateway", "arthas"];
    meta.is_span()
        && CRATES.iter().any(|c| {
            meta.target()
                .strip_prefix(c)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// A non-empty environment variable.
fn env_set(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Where spans go: `--otlp-endpoint`, else the standard variables (read by
/// the exporter itself). `None`: export off (nothing configured, or
/// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Export {
    /// The flag's endpoint.
    Flag(String),
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`.
    Environment(String),
}

fn export_target(args: &ProcessArgs) -> Option<Export> {
    if env_set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env_set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    let flag = args.otlp_endpoint.trim();
    if !flag.is_empty() {
        return Some(Export::Flag(flag.to_owned()));
    }
    env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| env_set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .map(Export::Environment)
}

/// This host's name (the pod name in Kubernetes).
pub fn host_name() -> String {
    env_set("HOSTNAME")
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The spans' resource: the SDK's detectors (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`), then service.name (`--otlp-service-name`,
/// else the variables, else the binary's `name`), service.version, the
/// commit and host.name.
fn resource(args: &ProcessArgs, name: &str) -> Resource {
    let mut builder = Resource::builder();
    let named_by_env = env_set("OTEL_SERVICE_NAME").is_some()
        || env_set("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
            attrs
                .split(',')
                .any(|kv| kv.trim().starts_with("service.name="))
        });
    if !args.otlp_service_name.is_empty() {
        builder = builder.with_service_name(args.otlp_service_name.clone());
    } else if !named_by_env {
        builder = builder.with_service_name(name.to_owned());
    }
    builder
        .with_attributes([
            KeyValue::new("service.version", VERSION),
            KeyValue::new("vcs.ref.head.revision", COMMIT),
            KeyValue::new("host.name", host_name()),
        ])
        .build()
}

/// Sets up logging on stderr (`ARTHAS_LOG` filter, default
/// [`DEFAULT_LOG_FILTER`]) and, when configured, batch export of spans over
/// OTLP/gRPC with W3C trace context propagation. Must run inside a Tokio
/// runtime context (the gRPC channel is created on it); the export itself
/// runs on its own thread, and a full queue drops spans rather than waiting.
/// An `https://` endpoint is reached over TLS (rustls, ring) checked against
/// the system's roots (`SSL_CERT_FILE` honoured). An endpoint the exporter
/// cannot use is an error: the process must not run on without the traces
/// it was asked for.
pub fn init_logging(args: &ProcessArgs, name: &str) -> Result<Telemetry, String> {
    let _ = LOG_FORMAT.set(args.log_format);
    let filter = EnvFilter::try_from_env("ARTHAS_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let fmt = match args.log_format {
        LogFormat::Json => json_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .with_span_list(false)
            .with_opentelemetry_ids(true)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    let mut telemetry = Telemetry::default();
    let target = export_target(args);
    let otel = match &target {
        None => None,
        Some(target) => {
            let builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            let (builder, endpoint, source) = match target {
                Export::Flag(endpoint) => (
                    builder.with_endpoint(endpoint.clone()),
                    endpoint,
                    "--otlp-endpoint",
                ),
                Export::Environment(endpoint) => (builder, endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            };
            let builder = if endpoint.trim().starts_with("https://") {
                builder.with_tls_config(ClientTlsConfig::new().with_native_roots())
            } else {
                builder
            };
            match builder.build() {
                Ok(exporter) => {
                    let provider = SdkTracerProvider::builder()
                        .with_resource(resource(args, name))
                        .with_batch_exporter(exporter)
                        .build();
                    let tracer = provider.tracer(name.to_owned());
                    telemetry.provider = Some(provider);
                    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
                    Some(
                        tracing_opentelemetry::layer()
                            .with_tracer(tracer)
                            .with_tracked_inactivity(false)
                            .with_threads(false)
                            .with_filter(filter_fn(exported)),
                    )
                }
                Err(e) => return Err(format!("{source} {endpoint:?}: {e}")),
            }
        }
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .init();
    if let Some(target) = target.filter(|_| telemetry.provider.is_some()) {
        let (Export::Flag(endpoint) | Export::Environment(endpoint)) = target;
        telemetry.endpoint = Some(endpoint);
    }
    Ok(telemetry)
}

/// Prints `WORD on http://ADDR` on stdout in text mode (tests and scripts
/// read the addresses there); in JSON mode stdout stays empty and the
/// addresses are in the start-up log line.
pub fn announce(word: &str, scheme: &str, addr: impl std::fmt::Display) {
    if LOG_FORMAT.get() != Some(&LogFormat::Json) {
        println!("{word} on {scheme}://{addr}");
    }
}

/// The effective settings as `--flag=value` pairs for the start-up log
/// line: every flag the command knows, from the command line, the
/// environment or its default. Secrets (flags whose environment value clap
/// hides) read `<redacted>`, and passwords in URLs `<redacted>` too.
pub fn config_summary(command: &clap::Command, matches: &clap::ArgMatches) -> String {
    let mut parts = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else {
            continue;
        };
        if matches!(id, "help" | "version") {
            continue;
        }
        let Ok(Some(values)) = matches.try_get_raw(id) else {
            continue;
        };
        let value = values
            .map(|v| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(",");
        let value = if arg.is_hide_env_values_set() {
            "<redacted>".to_owned()
        } else {
            redact_url_passwords(&value)
        };
        parts.push(format!("--{long}={value}"));
    }
    parts.join(" ")
}

/// `scheme://user:password@host` -> `scheme://user:<redacted>@host`, for
/// each comma-separated URL in `value`.
fn redact_url_passwords(value: &str) -> String {
    value
        .split(',')
        .map(|url| {
            let Some((scheme, rest)) = url.split_once("://") else {
                return url.to_owned();
            };
            let Some((userinfo, host)) = rest.rsplit_once('@') else {
                return url.to_owned();
            };
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
                None => url.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Raises the soft open-files limit to the hard one: every WebSocket is a
/// descriptor, and container runtimes often start processes at a soft 1024.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(open_files = limit, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}

/// Starts the configured runtime, sets up logging and tracing export
/// ([`init_logging`]), logs the version and `config` (a
/// [`config_summary`]), runs `main`, flushes the exported spans, and maps
/// `main`'s result to an exit code.
pub fn run<F, E>(name: &str, args: &ProcessArgs, config: &str, main: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let runtime = match args.worker_threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = {
        let _context = runtime.enter();
        init_logging(args, name)
    };
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        version = VERSION,
        commit = COMMIT,
        config,
        "{name} starting"
    );
    if let Some(endpoint) = &telemetry.endpoint {
        tracing::info!(%endpoint, "exporting spans over OTLP/gRPC");
    }
    raise_open_files_limit();
    let result = runtime.block_on(async {
        let result = main.await;
        // The flush blocks, and the exporter's channel needs this runtime
        // running meanwhile (it may be single-threaded).
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} stopped");
            if LOG_FORMAT.get() != Some(&LogFormat::Json) {
                eprintln!("{name}: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn termination() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_url_passwords("redis://:s3cret@redis:6379,redis://user:pw@r2:6379/0"),
            "redis://:<redacted>@redis:6379,redis://user:<redacted>@r2:6379/0"
        );
        assert_eq!(
            redact_url_passwords("redis://redis:6379"),
            "redis://redis:6379"
        );
        assert_eq!(redact_url_passwords("127.0.0.1:8080"), "127.0.0.1:8080");
    }
}
