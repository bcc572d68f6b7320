//! Records the commit the binaries are built from as `ARTHAS_COMMIT`
//! (`arthas_build_info`, the start-up log line, the traces' resource):
//! `ARTHAS_BUILD_COMMIT` when set (the Docker build passes it, as its
//! context has no `.git`), else `git rev-parse --short=12 HEAD`, else
//! "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=ARTHAS_BUILD_COMMIT");
    let commit = match std::env::var("ARTHAS_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => {
            // The reflog grows on every commit, checkout and reset.
            if let Some(reflog) = git(&["rev-parse", "--git-path", "logs/HEAD"]) {
                println!("cargo:rerun-if-changed={reflog}");
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    let commit: String = commit
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    println!("cargo:rustc-env=ARTHAS_COMMIT={commit}");
}
