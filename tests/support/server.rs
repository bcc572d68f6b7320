//! Starting the real `arthas` binary for a test, and the `Env` the tests are written against.
//!
//! Every test starts its own server process on an ephemeral port, so tests run in parallel
//! without sharing state. The process is killed when the `Env` is dropped, so a failing test
//! never leaks a server. Tests address nodes by index (`env.ws_url(node)`): the single-node env
//! maps every index to the same process, a cluster env (later) maps them to different relays,
//! and the same tests then prove cross-node behaviour.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a server may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags and environment variables for one server process.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// Extra command-line arguments, appended after `--listen 127.0.0.1:0`.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub envs: Vec<(String, String)>,
}

impl Opts {
    /// Default settings: only `--listen 127.0.0.1:0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `--flag value` pair.
    pub fn flag(mut self, flag: &str, value: impl ToString) -> Self {
        self.args.push(flag.to_string());
        self.args.push(value.to_string());
        self
    }

    /// Adds a bare `--flag` (a boolean switch).
    pub fn switch(mut self, flag: &str) -> Self {
        self.args.push(flag.to_string());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }
}

/// One running `arthas` process. Plain `std::process` with reader threads, so the harness
/// needs no extra tokio features; the process is killed on drop.
pub struct Server {
    /// The child process.
    child: Child,
    /// `127.0.0.1:PORT` parsed from the `listening on` line.
    addr: String,
    /// Everything the server wrote to stderr so far (its logs).
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The thread copying stderr into `stderr`; ends when the process closes stderr.
    stderr_thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts the all-in-one `arthas` binary with `opts` and waits for its
    /// `listening on http://...` line.
    pub async fn start(opts: &Opts) -> Server {
        Self::start_bin(env!("CARGO_BIN_EXE_arthas"), opts).await
    }

    /// Starts any of our binaries that follow the same contract (`--listen`, the
    /// `listening on http://...` stdout line, logs on stderr, SIGTERM to stop).
    pub async fn start_bin(bin: &str, opts: &Opts) -> Server {
        let mut cmd = Command::new(bin);
        cmd.arg("--listen").arg("127.0.0.1:0");
        cmd.args(&opts.args);
        // A test never inherits the developer's ARTHAS_* settings.
        for (key, _) in std::env::vars() {
            if key.starts_with("ARTHAS_") {
                cmd.env_remove(&key);
            }
        }
        if !opts.envs.iter().any(|(k, _)| k == "ARTHAS_LOG") {
            cmd.env("ARTHAS_LOG", "warn");
        }
        for (key, value) in &opts.envs {
            cmd.env(key, value);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match err_pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .expect("stderr lock")
                        .extend_from_slice(&buf[..n]),
                }
            }
        });

        // stdout: the first `listening on` line is sent back, the rest is drained.
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.trim().strip_prefix("listening on http://") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.trim_end_matches('/').to_string());
                    }
                }
            }
        });
        let addr = match tokio::time::timeout(STARTUP_TIMEOUT, rx).await {
            Ok(Ok(addr)) => addr,
            _ => String::new(),
        };
        let mut server = Server {
            child,
            addr,
            stderr,
            stderr_thread: Some(stderr_thread),
        };
        if server.addr.is_empty() {
            server.kill();
            panic!(
                "server with {:?} {:?} did not print `listening on http://...` on stdout; stderr:\n{}",
                opts.args,
                opts.envs,
                server.stderr()
            );
        }
        server
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status. All of
    /// stderr has been collected when this returns.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        let deadline = tokio::time::Instant::now() + SHUTDOWN_TIMEOUT;
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("wait for server") {
                break exit;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.join_stderr();
        exit
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The server's stderr (logs) so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).to_string()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_stderr();
    }

    fn join_stderr(&mut self) {
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill();
        }
    }
}

/// What a test talks to: one or more nodes. Node indexes wrap around, so a test may spread its
/// members over nodes 0, 1, 2 whatever the number of processes.
pub struct Env {
    /// The server processes.
    nodes: Vec<Server>,
}

impl Env {
    /// One all-in-one server with default settings.
    pub async fn single() -> Env {
        Env::single_with(Opts::new()).await
    }

    /// One all-in-one server started with `opts`.
    pub async fn single_with(opts: Opts) -> Env {
        Env {
            nodes: vec![Server::start(&opts).await],
        }
    }

    /// An env over already started processes (a cluster suite starts its relays itself);
    /// node index i maps to `nodes[i % nodes.len()]`.
    pub fn from_nodes(nodes: Vec<Server>) -> Env {
        assert!(!nodes.is_empty(), "an env needs at least one node");
        Env { nodes }
    }

    /// The number of distinct server processes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The server behind node index `node`.
    pub fn server(&mut self, node: usize) -> &mut Server {
        let n = self.nodes.len();
        &mut self.nodes[node % n]
    }

    /// `ws://127.0.0.1:PORT/ws` of node `node`.
    pub fn ws_url(&self, node: usize) -> String {
        format!("ws://{}/ws", self.nodes[node % self.nodes.len()].addr())
    }

    /// `http://127.0.0.1:PORT` of node `node` (no trailing slash).
    pub fn http_url(&self, node: usize) -> String {
        format!("http://{}", self.nodes[node % self.nodes.len()].addr())
    }
}
