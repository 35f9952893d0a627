//! The docs match the binaries: every flag and environment variable each binary's
//! `--help` lists is named in README.md or docs/*.md (as `` `--flag`` / `` `NAME` ``).

use std::path::Path;
use std::process::Command;

use anyhow::{Result, ensure};

fn docs() -> Result<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow::anyhow!("tests/ is inside the repo"))?;
    let mut text = std::fs::read_to_string(repo.join("README.md"))?;
    for entry in std::fs::read_dir(repo.join("docs"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "md") {
            text.push_str(&std::fs::read_to_string(path)?);
        }
    }
    Ok(text)
}

/// The long flags and the `[env: NAME=...]` variables of `binary --help`.
fn help(binary: &str) -> Result<(Vec<String>, Vec<String>)> {
    let out = Command::new(e2e::bin(binary)?).arg("--help").output()?;
    ensure!(out.status.success(), "{binary} --help failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Flags from the option lines (`  -c, --config <CONFIG>`), not from descriptions.
    let flags = text
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| {
            l.split(|c: char| c.is_whitespace() || c == ',')
                .take_while(|w| w.is_empty() || w.starts_with('-'))
                .filter(|w| w.starts_with("--"))
                .map(|w| w.split(['=', '<', '[']).next().unwrap_or(w).to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let envs = text
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next().map(str::to_owned))
        .collect();
    Ok((flags, envs))
}

/// `word` in a code span: after `` ` `` or a space (`` `-c, --config` ``), before `` ` ``
/// or a space (`` `--max-rps N` ``), so `--fresh` is not found in `--freshness`.
fn named(docs: &str, word: &str) -> bool {
    docs.match_indices(word).any(|(at, _)| {
        let before = docs[..at].chars().next_back();
        let after = docs[at + word.len()..].chars().next();
        matches!(before, Some('`' | ' ')) && matches!(after, Some('`' | ' '))
    })
}

#[test]
fn every_flag_and_variable_of_each_binary_is_documented() -> Result<()> {
    let docs = docs()?;
    let mut missing = Vec::new();
    let mut checked = 0;
    for binary in ["extractor", "loader", "demo-api"] {
        let (flags, envs) = help(binary)?;
        ensure!(flags.len() >= 5, "{binary}: only {flags:?}");
        for word in flags.iter().chain(&envs) {
            if matches!(word.as_str(), "--help" | "--version") {
                continue;
            }
            checked += 1;
            if !named(&docs, word) {
                missing.push(format!("{binary} {word}"));
            }
        }
    }
    ensure!(checked >= 40, "only {checked} flags and variables checked");
    ensure!(missing.is_empty(), "not in README.md or docs/: {missing:?}");
    Ok(())
}
