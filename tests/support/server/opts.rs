//! Flags and environment variables for a test's processes ([`Opts`]), and which flags each
//! binary takes.

use super::*;

/// Flags and environment variables for a test's processes.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// `--flag` with its value, or a bare switch.
    pub(super) flags: Vec<(String, Option<String>)>,
    /// Extra environment variables (every process gets them).
    pub(super) envs: Vec<(String, String)>,
    /// Gateways in a cluster env (0 means 1); relay i calls gateway i % n.
    pub(super) gateways: usize,
    /// Relay index -> the Redis URL it uses instead of the env's (a proxy in between).
    pub(super) relay_redis_urls: Vec<(usize, String)>,
    /// Relay index -> (network namespace it runs in, the address it listens on there).
    pub(super) relay_netns: Vec<(usize, String, String)>,
}

impl Opts {
    /// Default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `--flag value` pair.
    pub fn flag(mut self, flag: &str, value: impl ToString) -> Self {
        self.flags.push((flag.to_string(), Some(value.to_string())));
        self
    }

    /// Adds a bare `--flag` (a boolean switch).
    pub fn switch(mut self, flag: &str) -> Self {
        self.flags.push((flag.to_string(), None));
        self
    }

    /// Runs `n` gateway replicas over the same Redis in a cluster env; relay i calls gateway
    /// `i % n`, and `Env::gateway_url(g)` is gateway g's public API.
    pub fn gateways(mut self, n: usize) -> Self {
        self.gateways = n;
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    /// Relay `index` reaches Redis at `url` (say, through a proxy the test cuts) instead of
    /// the env's own Redis URL (standalone Redis only).
    pub fn relay_redis_url(mut self, index: usize, url: &str) -> Self {
        self.relay_redis_urls.push((index, url.to_string()));
        self
    }

    /// Relay `index` runs inside network namespace `netns` (`ip netns exec`) and listens (its
    /// WebSocket and admin ports) on `ip` there. Its gateway URL stays the loopback one, which
    /// does not reach out of the namespace: give it joins, not creations or password rooms.
    pub fn relay_in_netns(mut self, index: usize, netns: &str, ip: &str) -> Self {
        self.relay_netns
            .push((index, netns.to_string(), ip.to_string()));
        self
    }

    /// Whether `flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|(f, _)| f == flag)
    }

    /// The command-line arguments for a binary that accepts `accepted`.
    pub(super) fn args_for(&self, accepted: &HashSet<String>) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, value) in &self.flags {
            if accepted.contains(flag) {
                out.push(flag.clone());
                out.extend(value.clone());
            }
        }
        out
    }

    /// Panics if some flag is accepted by none of `binaries` (a typo, or a flag that does not
    /// exist in this topology).
    pub(super) fn check_routed(&self, binaries: &[&str]) {
        for (flag, _) in &self.flags {
            if !binaries.iter().any(|bin| flags_of(bin).contains(flag)) {
                panic!("no binary of this topology accepts {flag} ({binaries:?})");
            }
        }
    }
}

/// The long flags a binary's `--help` lists (cached per binary).
pub fn flags_of(bin: &str) -> HashSet<String> {
    static CACHE: LazyLock<Mutex<HashMap<String, HashSet<String>>>> =
        LazyLock::new(Default::default);
    if let Some(flags) = CACHE.lock().expect("help cache").get(bin) {
        return flags.clone();
    }
    let mut cmd = Command::new(bin);
    cmd.arg("--help");
    clean_env(&mut cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} --help: {e}"));
    assert!(out.status.success(), "{bin} --help failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut flags = HashSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        for token in line.split(|c: char| c.is_whitespace() || c == ',') {
            if let Some(name) = token.strip_prefix("--") {
                let name = name.split(['=', '<', '[']).next().unwrap_or_default();
                if !name.is_empty() {
                    flags.insert(format!("--{name}"));
                }
            }
        }
    }
    assert!(
        flags.contains("--listen"),
        "{bin} --help lists no --listen: {text}"
    );
    CACHE
        .lock()
        .expect("help cache")
        .insert(bin.to_string(), flags.clone());
    flags
}
