//! Process plumbing shared by the binaries: the runtime, logging, and the
//! termination signal.

use std::future::Future;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, ProcessArgs};

/// The log filter when `ARTHAS_LOG` is not set. The redis client is held at
/// `error`: while a cluster is unreachable it warns in a tight loop.
pub const DEFAULT_LOG_FILTER: &str = "info,redis=error";

/// Sets up logging on stderr (`ARTHAS_LOG` filter, default
/// [`DEFAULT_LOG_FILTER`]).
pub fn init_logging(args: &ProcessArgs) {
    let filter = EnvFilter::try_from_env("ARTHAS_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Raises the soft open-files limit to the hard one: every WebSocket is a
/// descriptor, and container runtimes often start processes at a soft 1024.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(open_files = limit, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}

/// Runs `main` on the configured runtime and maps its result to an exit code.
pub fn run<F, E>(name: &str, args: &ProcessArgs, main: F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    raise_open_files_limit();
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
    match runtime.block_on(main) {
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
