//! Prometheus metrics of the gateway. Labels carry route templates, status
//! codes and protocol error codes, never room ids, passwords or tickets.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use protocol::Reject;

/// Which HTTP surface answered (`api` label).
#[derive(Debug, Clone, Copy)]
pub enum Api {
    /// The public API, the directory and the web client.
    Public,
    /// The relays' internal API.
    Internal,
    /// The admin port (health, metrics).
    Admin,
}

impl Api {
    fn as_str(self) -> &'static str {
        match self {
            Api::Public => "public",
            Api::Internal => "internal",
            Api::Admin => "admin",
        }
    }
}

/// A gateway operation whose outcome is counted (`operation` label).
#[derive(Debug, Clone, Copy)]
pub enum Operation {
    CreateRoom,
    CheckPassword,
    IssueTicket,
    RedeemTicket,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::CreateRoom => "create_room",
            Operation::CheckPassword => "check_password",
            Operation::IssueTicket => "issue_ticket",
            Operation::RedeemTicket => "redeem_ticket",
        }
    }
}

/// Route templates of the public API (`route` label), pre-created.
const PUBLIC_ROUTES: [&str; 11] = [
    "/api/hub",
    "/api/hub/stats",
    "/openapi.json",
    "/v1/rooms",
    "/v1/rooms/{roomId}",
    "/v1/rooms/{roomId}/tickets",
    "/v1/*",
    "/ping",
    "/healthz",
    "/readyz",
    "web",
];
/// Route templates of the internal API.
const INTERNAL_ROUTES: [&str; 4] = [
    "/internal/v1/rooms",
    "/internal/v1/rooms/{roomId}/password-check",
    "/internal/v1/rooms/{roomId}/ticket-redemptions",
    "/internal/*",
];
/// Statuses pre-created per route (others appear once answered).
const STATUSES: [&str; 13] = [
    "200", "201", "204", "400", "401", "403", "404", "405", "409", "410", "413", "429", "503",
];
/// Operation outcomes pre-created: `ok` and every code an operation can end with.
const OUTCOMES: [&str; 8] = ["ok", "E001", "E002", "E004", "E005", "E006", "E007", "E010"];
const OPERATIONS: [Operation; 4] = [
    Operation::CreateRoom,
    Operation::CheckPassword,
    Operation::IssueTicket,
    Operation::RedeemTicket,
];

/// An argon2 job's kind (`job` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Job {
    /// Hashing a new room's password.
    Hash,
    /// Checking a join password against the room's hash.
    Verify,
}

/// argon2 buckets, seconds: a hash takes tens of milliseconds; waits grow
/// with the queue.
const ARGON2_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The password pool's metrics (`arthas_gateway_argon2_*`).
#[derive(Clone)]
pub struct Argon2Metrics {
    /// Time a job waited for a free slot, by job ([`Argon2Job`] order).
    wait_seconds: [Histogram; 2],
    /// Time a job ran, by job.
    run_seconds: [Histogram; 2],
    /// Jobs waiting for a slot now.
    pub waiting: IntGauge,
    /// Jobs running now.
    pub running: IntGauge,
    /// Jobs refused because `--argon2-max-pending` were waiting.
    pub refused: IntCounter,
    /// The configured `--argon2-max-pending`.
    pub max_pending: IntGauge,
    /// The configured `--argon2-max-concurrent`.
    pub max_concurrent: IntGauge,
    /// The two families behind `wait_seconds` and `run_seconds`.
    histograms: (HistogramVec, HistogramVec),
}

impl Argon2Metrics {
    /// Metrics registered in `registry`.
    fn registered(registry: &Registry) -> Argon2Metrics {
        let m = Argon2Metrics::unregistered();
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(m.waiting.clone()),
            Box::new(m.running.clone()),
            Box::new(m.refused.clone()),
            Box::new(m.max_pending.clone()),
            Box::new(m.max_concurrent.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("metrics register once");
        }
        m
    }

    /// Metrics in no registry (unit tests of the pool).
    pub fn unregistered() -> Argon2Metrics {
        let histogram = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(ARGON2_BUCKETS.to_vec()),
                &["job"],
            )
            .expect("valid histogram")
        };
        let wait = histogram(
            "arthas_gateway_argon2_wait_seconds",
            "Time an argon2 job waited for a free slot, by job (hash, verify)",
        );
        let run = histogram(
            "arthas_gateway_argon2_run_seconds",
            "Time an argon2 job ran, by job (hash, verify)",
        );
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid name");
        Argon2Metrics {
            wait_seconds: [
                wait.with_label_values(&["hash"]),
                wait.with_label_values(&["verify"]),
            ],
            run_seconds: [
                run.with_label_values(&["hash"]),
                run.with_label_values(&["verify"]),
            ],
            waiting: gauge(
                "arthas_gateway_argon2_waiting",
                "argon2 jobs waiting for a slot",
            ),
            running: gauge("arthas_gateway_argon2_running", "argon2 jobs running"),
            refused: IntCounter::new(
                "arthas_gateway_argon2_refused_total",
                "argon2 jobs refused because the queue was full",
            )
            .expect("valid name"),
            max_pending: gauge(
                "arthas_gateway_argon2_max_pending",
                "The configured limit of waiting argon2 jobs",
            ),
            max_concurrent: gauge(
                "arthas_gateway_argon2_max_concurrent",
                "The configured argon2 jobs running at once",
            ),
            histograms: (wait, run),
        }
    }

    /// How long a job of `job` waited.
    pub fn waited(&self, job: Argon2Job, took: Duration) {
        self.wait_seconds[job as usize].observe(took.as_secs_f64());
    }

    /// How long a job of `job` ran.
    pub fn ran(&self, job: Argon2Job, took: Duration) {
        self.run_seconds[job as usize].observe(took.as_secs_f64());
    }
}

/// The gateway's metrics, registered in one registry.
#[derive(Clone)]
pub struct GatewayMetrics {
    registry: Registry,
    /// HTTP requests answered, by API, route template and status code.
    requests: IntCounterVec,
    /// Time to answer an HTTP request, by API and route template.
    request_seconds: HistogramVec,
    /// Operations, by outcome: `ok` or the Arthas error code (E004 = guess
    /// limit or argon2 queue full, E005 = unavailable, E006 = wrong
    /// password or ticket).
    outcomes: IntCounterVec,
    /// Request handlers that panicked (answered 500), by API.
    panics: IntCounterVec,
    /// The password pool.
    pub argon2: Argon2Metrics,
    /// 1 while the store (Redis) answers; refreshed at every scrape.
    pub store_up: IntGauge,
    /// `arthas_build_info{version, commit}`.
    build_info: IntGaugeVec,
}

impl GatewayMetrics {
    /// A fresh registry with every gateway metric (and the process
    /// collector's `process_*` on Linux), every labelled series created.
    pub fn new() -> GatewayMetrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "arthas_gateway_http_requests_total",
                "HTTP requests answered, by API, route template and status",
            ),
            &["api", "route", "status"],
        )
        .expect("metric names are valid");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "arthas_gateway_http_request_duration_seconds",
                "Time to answer an HTTP request, by API and route template",
            )
            // Password checks run argon2id (tens of milliseconds).
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["api", "route"],
        )
        .expect("metric names are valid");
        let outcomes = IntCounterVec::new(
            Opts::new(
                "arthas_gateway_operations_total",
                "Room creations, password checks and tickets, by outcome (ok or error code)",
            ),
            &["operation", "outcome"],
        )
        .expect("metric names are valid");
        let panics = IntCounterVec::new(
            Opts::new(
                "arthas_gateway_panics_total",
                "Request handlers that panicked (answered 500), by API",
            ),
            &["api"],
        )
        .expect("metric names are valid");
        let store_up = IntGauge::new(
            "arthas_gateway_store_up",
            "1 while the store (Redis) answers, checked at each scrape",
        )
        .expect("metric names are valid");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "arthas_build_info",
                "The running build: 1 for its version and commit",
            ),
            &["version", "commit"],
        )
        .expect("metric names are valid");
        let argon2 = Argon2Metrics::registered(&registry);
        let mut collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(requests.clone()),
            Box::new(request_seconds.clone()),
            Box::new(outcomes.clone()),
            Box::new(panics.clone()),
            Box::new(store_up.clone()),
            Box::new(build_info.clone()),
            Box::new(argon2.histograms.0.clone()),
            Box::new(argon2.histograms.1.clone()),
        ];
        #[cfg(target_os = "linux")]
        collectors.push(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        for metric in collectors {
            registry.register(metric).expect("metrics register once");
        }
        for (api, routes) in [
            (Api::Public, &PUBLIC_ROUTES[..]),
            (Api::Internal, &INTERNAL_ROUTES[..]),
        ] {
            for route in routes {
                request_seconds.with_label_values(&[api.as_str(), route]);
                for status in STATUSES {
                    requests.with_label_values(&[api.as_str(), route, status]);
                }
            }
        }
        for operation in OPERATIONS {
            for outcome in OUTCOMES {
                outcomes.with_label_values(&[operation.as_str(), outcome]);
            }
        }
        for api in [Api::Public, Api::Internal, Api::Admin] {
            panics.with_label_values(&[api.as_str()]);
        }
        GatewayMetrics {
            registry,
            requests,
            request_seconds,
            outcomes,
            panics,
            argon2,
            store_up,
            build_info,
        }
    }

    /// Counts a request handler that panicked.
    pub fn panicked(&self, api: Api) {
        self.panics.with_label_values(&[api.as_str()]).inc();
    }

    /// Request handlers of `api` that panicked so far.
    pub fn panics(&self, api: Api) -> u64 {
        self.panics.with_label_values(&[api.as_str()]).get()
    }

    /// Sets `arthas_build_info{version, commit}` (the binaries know both).
    pub fn set_build_info(&self, version: &str, commit: &str) {
        self.build_info.reset();
        self.build_info.with_label_values(&[version, commit]).set(1);
    }

    /// Counts one answered request on `route` (a template, never a path).
    pub fn request(&self, api: Api, route: &'static str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[api.as_str(), route, &status.to_string()])
            .inc();
        self.request_seconds
            .with_label_values(&[api.as_str(), route])
            .observe(took.as_secs_f64());
    }

    /// Counts one operation's outcome and hands the result back.
    pub fn outcome<T>(&self, operation: Operation, result: Result<T, Reject>) -> Result<T, Reject> {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(reject) => reject.code.as_str(),
        };
        self.outcomes
            .with_label_values(&[operation.as_str(), outcome])
            .inc();
        result
    }

    /// Adds a metric kept elsewhere (the TLS certificate's expiry).
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics::new()
    }
}
