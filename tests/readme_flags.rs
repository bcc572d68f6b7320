//! The README's configuration table stays true: every flag each binary
//! accepts (from its `--help`) is listed there, with its default.

use std::process::Command;

fn help(bin: &str) -> String {
    let out = Command::new(bin)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{bin} --help: {e}"));
    assert!(out.status.success(), "{bin} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(flag, default)` pairs from clap's help text.
fn flags(help: &str) -> Vec<(String, Option<String>)> {
    let mut found: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let flag = trimmed
            .strip_prefix("-h, ")
            .or_else(|| trimmed.strip_prefix("-V, "))
            .unwrap_or(trimmed);
        if let Some(rest) = flag.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if name != "help" && name != "version" {
                found.push((format!("--{name}"), None));
            }
        }
        if let (Some(start), Some(last)) = (line.find("[default: "), found.last_mut()) {
            let value = &line[start + "[default: ".len()..];
            last.1 = value.split(']').next().map(str::to_owned);
        }
    }
    found
}

fn readme_row(readme: &str, flag: &str) -> Option<String> {
    readme
        .lines()
        .find(|l| l.starts_with(&format!("| `{flag}` |")))
        .map(str::to_owned)
}

#[test]
fn every_flag_of_every_binary_is_in_the_readme_with_its_default() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut missing = Vec::new();
    for bin in [
        env!("CARGO_BIN_EXE_arthas"),
        env!("CARGO_BIN_EXE_relay"),
        env!("CARGO_BIN_EXE_gateway"),
    ] {
        let text = help(bin);
        let found = flags(&text);
        assert!(found.len() > 5, "no flags parsed from {bin} --help");
        for (flag, default) in found {
            match readme_row(&readme, &flag) {
                None => missing.push(format!("{flag} (of {bin}) has no row")),
                Some(row) => {
                    if let Some(default) = default.filter(|d| !d.is_empty() && d != "\"\"") {
                        if !row.contains(&format!("`{default}`")) {
                            missing.push(format!(
                                "{flag} (of {bin}): default `{default}` not in its row"
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README configuration table is out of date:\n{}",
        missing.join("\n")
    );
}
