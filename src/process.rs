//! Process plumbing shared by the binaries: the runtime, logging, and the
//! termination signal.

use std::future::Future;
use std::process::ExitCode;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::cli::{LogFormat, ProcessArgs};

/// The log filter when `ARTHAS_LOG` is not set. The redis client is held at
/// `error`: while a cluster is unreachable it warns in a tight loop.
pub const DEFAULT_LOG_FILTER: &str = "info,redis=error";

/// The OTLP trace pipeline, when `--otlp-endpoint` is set. [`run`] shuts it
/// down (flushing queued spans) after `main` returns.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes queued spans and stops the exporter (at most a few seconds).
    /// Blocks: call it on a blocking thread while the runtime still runs,
    /// since the gRPC channel lives on that runtime.
    fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(OTLP_SHUTDOWN_TIMEOUT) {
                eprintln!("tracing export: shutdown: {e}");
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

/// Sets up logging on stderr (`ARTHAS_LOG` filter, default
/// [`DEFAULT_LOG_FILTER`]) and, when `--otlp-endpoint` is set, batch export
/// of spans over OTLP/gRPC (service name `--otlp-service-name`, else
/// `name`). Must run inside a Tokio runtime context (the gRPC channel is
/// created on it); the export itself runs on its own thread, and a full
/// queue drops spans rather than waiting. An `https://` endpoint is
/// reached over TLS (rustls, ring) checked against the system's roots
/// (`SSL_CERT_FILE` honoured). An endpoint the exporter cannot use is an
/// error: the process must not run on without the traces it was asked for.
pub fn init_logging(args: &ProcessArgs, name: &str) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_env("ARTHAS_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match args.log_format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let mut telemetry = Telemetry::default();
    let otel = if args.otlp_endpoint.trim().is_empty() {
        None
    } else {
        let service = if args.otlp_service_name.is_empty() {
            name.to_owned()
        } else {
            args.otlp_service_name.clone()
        };
        let endpoint = args.otlp_endpoint.trim();
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint);
        if endpoint.starts_with("https://") {
            builder = builder.with_tls_config(ClientTlsConfig::new().with_native_roots());
        }
        match builder.build() {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder()
                    .with_resource(Resource::builder().with_service_name(service).build())
                    .with_batch_exporter(exporter)
                    .build();
                let tracer = provider.tracer(name.to_owned());
                telemetry.provider = Some(provider);
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_tracked_inactivity(false)
                        .with_threads(false)
                        .with_filter(filter_fn(exported)),
                )
            }
            Err(e) => return Err(format!("--otlp-endpoint {endpoint:?}: {e}")),
        }
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .init();
    if telemetry.provider.is_some() {
        tracing::info!(endpoint = %args.otlp_endpoint.trim(), "exporting spans over OTLP/gRPC");
    }
    Ok(telemetry)
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
/// ([`init_logging`]), runs `main`, flushes the exported spans, and maps
/// `main`'s result to an exit code.
pub fn run<F, E>(name: &str, args: &ProcessArgs, main: F) -> ExitCode
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
            eprintln!("{name}: {e}");
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
