//! Third-party tools the interop tests run, installed on demand by the repository's
//! `scripts/ensure-*.sh` (each skips what is already there and prints where it is).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{repo_root, tail};

/// Runs `scripts/<script>` and returns the path it prints (its last stdout line).
pub fn ensure(script: &str) -> Result<PathBuf> {
    let path = repo_root().join("scripts").join(script);
    let out = Command::new(&path)
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            path.display(),
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 30)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed = stdout
        .lines()
        .last()
        .with_context(|| format!("{} printed nothing", path.display()))?;
    Ok(PathBuf::from(printed.trim()))
}

/// The classpath of jars in `libs` (a folder an ensure script printed), for `java -cp`.
pub fn classpath(libs: &std::path::Path) -> String {
    format!("{}/*", libs.display())
}
