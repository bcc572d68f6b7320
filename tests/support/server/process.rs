//! Spawning one real binary ([`Starting`]) and the running process ([`Server`]): a clean
//! environment, free ports, address lines, captured stderr, kill on drop.

use super::*;

/// A test never inherits the developer's ARTHAS_* settings.
pub(super) fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("ARTHAS_") {
            cmd.env_remove(&key);
        }
    }
}

/// A string unique within the test process.
pub(super) fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port nobody listens on now (the caller's process binds it soon after).
pub(super) fn free_port() -> u16 {
    static HANDED_OUT: LazyLock<Mutex<HashSet<u16>>> = LazyLock::new(Default::default);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        if HANDED_OUT.lock().expect("ports").insert(port) {
            return port;
        }
    }
}

/// A process that was spawned and has not yet printed all its address lines.
pub struct Starting {
    pub(super) label: String,
    pub(super) child: Child,
    pub(super) stderr: Arc<Mutex<Vec<u8>>>,
    pub(super) stderr_thread: Option<JoinHandle<()>>,
    /// `(word, addr)` for every `WORD on http(s)://ADDR` line on stdout.
    pub(super) lines: mpsc::UnboundedReceiver<(String, String)>,
    /// The words to wait for.
    pub(super) want: Vec<&'static str>,
    /// The command line, for failure messages.
    pub(super) command: String,
}

impl Starting {
    /// Spawns `bin` with `args` and `envs` (`ARTHAS_LOG` from `ARTHAS_TEST_LOG`, else `warn`, unless given); `want` names the
    /// stdout lines (`listening`, `admin`, `internal`) that mean it is ready.
    pub fn spawn(
        label: &str,
        bin: &str,
        args: &[String],
        envs: &[(String, String)],
        want: &[&'static str],
    ) -> Starting {
        let mut cmd = Command::new(bin);
        cmd.args(args);
        clean_env(&mut cmd);
        if !envs.iter().any(|(k, _)| k == "ARTHAS_LOG") {
            // ARTHAS_TEST_LOG (say `info,arthas_store=debug`) turns up every process's logs
            // when chasing a failure.
            let level = std::env::var("ARTHAS_TEST_LOG").unwrap_or_else(|_| "warn".to_owned());
            cmd.env("ARTHAS_LOG", level);
        }
        // The daily topic would be one more room in every directory a test
        // reads; tests that want it set ARTHAS_DISABLE_DAILY_TOPIC=false.
        if !envs.iter().any(|(k, _)| k == "ARTHAS_DISABLE_DAILY_TOPIC") {
            cmd.env("ARTHAS_DISABLE_DAILY_TOPIC", "true");
        }
        for (key, value) in envs {
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

        // stdout: every `WORD on http(s)://ADDR` line is sent back, the rest is drained.
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                let line = line.trim();
                if let Some((word, addr)) = line
                    .split_once(" on http://")
                    .or_else(|| line.split_once(" on https://"))
                {
                    let _ = tx.send((word.to_string(), addr.trim_end_matches('/').to_string()));
                }
            }
        });
        Starting {
            label: label.to_string(),
            child,
            stderr,
            stderr_thread: Some(stderr_thread),
            lines,
            want: want.to_vec(),
            command: format!("{bin} {}", args.join(" ")),
        }
    }

    /// Waits for every wanted address line; `Err` carries what went wrong (the process is
    /// killed then).
    pub async fn ready(mut self) -> Result<Server, String> {
        let mut addrs = HashMap::new();
        let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
        let mut failure = None;
        while !self.want.iter().all(|w| addrs.contains_key(*w)) {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some((word, addr))) => {
                    addrs.insert(word, addr);
                }
                Ok(None) => {
                    failure = Some("closed stdout (exited?)".to_string());
                    break;
                }
                Err(_) => {
                    failure = Some(format!("printed nothing within {STARTUP_TIMEOUT:?}"));
                    break;
                }
            }
        }
        let mut server = Server {
            label: self.label,
            child: self.child,
            addrs,
            stderr: self.stderr,
            stderr_thread: self.stderr_thread.take(),
        };
        match failure {
            None => Ok(server),
            Some(why) => {
                server.kill();
                Err(format!(
                    "{} ({}) {why} before printing {:?} on stdout; stderr:\n{}",
                    server.label,
                    self.command,
                    self.want,
                    server.stderr()
                ))
            }
        }
    }
}

/// One running process of ours; it is killed on drop.
pub struct Server {
    /// `arthas`, `gateway`, `relay 0`, ...
    pub(super) label: String,
    /// The child process.
    pub(super) child: Child,
    /// Addresses from the `WORD on http://ADDR` lines (`listening`, `admin`, `internal`).
    pub(super) addrs: HashMap<String, String>,
    /// Everything the process wrote to stderr so far (its logs).
    pub(super) stderr: Arc<Mutex<Vec<u8>>>,
    /// The thread copying stderr into `stderr`; ends when the process closes stderr.
    pub(super) stderr_thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts the all-in-one `arthas` binary with `opts` on an ephemeral port and waits for its
    /// `listening on http://...` line.
    pub async fn start(opts: &Opts) -> Server {
        opts.check_routed(&[ARTHAS_BIN]);
        let mut args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        args.extend(opts.args_for(&flags_of(ARTHAS_BIN)));
        Starting::spawn("arthas", ARTHAS_BIN, &args, &opts.envs, &["listening"])
            .ready()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `arthas`, `gateway`, `relay 0`, ...
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `127.0.0.1:PORT` of the main listener (the `listening on` line).
    pub fn addr(&self) -> &str {
        self.addr_of("listening")
            .expect("every server prints `listening on`")
    }

    /// The address from the `WORD on http://ADDR` line, if the process printed one.
    pub fn addr_of(&self, word: &str) -> Option<&str> {
        self.addrs.get(word).map(String::as_str)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "TERM", "KILL", "STOP", "CONT") to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits for the process to exit (at most `within`); returns its status. All of stderr
    /// has been collected when this returns.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("wait for server") {
                break exit;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not exit within {within:?}",
                self.label
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.join_stderr();
        exit
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status. All of
    /// stderr has been collected when this returns.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(SHUTDOWN_TIMEOUT).await
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_stderr();
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's stderr (logs) so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr lock")).to_string()
    }

    pub(super) fn join_stderr(&mut self) {
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
