//! A Confluent-compatible schema registry for the end-to-end tests: Apicurio Registry with
//! in-memory storage (`scripts/registry.sh`), on a free port, killed when dropped.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{Proc, free_port, repo_root, tail, wait_for};

/// A running registry; [`Registry::url`] is its Confluent API (`/apis/ccompat/v7`).
pub struct Registry {
    pub url: String,
    /// How long it took from the start until `GET /subjects` answered.
    pub started_in: Duration,
    proc: Proc,
    http: reqwest::blocking::Client,
}

impl Registry {
    /// Builds the registry if needed (`scripts/ensure-registry.sh`), starts it with its log
    /// in `dir/registry.log`, and waits until `GET <url>/subjects` answers.
    pub fn start(dir: &Path) -> Result<Self> {
        let _ = crate::tools::ensure("ensure-registry.sh")?;
        let started = Instant::now();
        let port = free_port()?;
        let log_path = dir.join("registry.log");
        let log = std::fs::File::create(&log_path)?;
        let script = repo_root().join("scripts/registry.sh");
        let child = Command::new(&script)
            .arg(port.to_string())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let mut proc = Proc {
            child,
            name: "registry".into(),
        };
        let url = format!("http://127.0.0.1:{port}/apis/ccompat/v7");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let subjects = format!("{url}/subjects");
        let up = wait_for("the registry to answer", Duration::from_secs(120), || {
            if let Ok(Some(status)) = proc.child.try_wait() {
                return Some(Err(status));
            }
            let ok = http
                .get(&subjects)
                .send()
                .is_ok_and(|r| r.status().is_success());
            ok.then_some(Ok(()))
        })?;
        if let Err(status) = up {
            bail!(
                "the registry exited ({status}) before it answered; its log:\n{}",
                tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 30)
            );
        }
        Ok(Self {
            url,
            started_in: started.elapsed(),
            proc,
            http,
        })
    }

    /// `GET <url><path>` as JSON (`path` starts with `/`, e.g. `/subjects`).
    pub fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.url);
        let response = self.http.get(&url).send()?;
        let status = response.status();
        let body = response.text()?;
        if !status.is_success() {
            bail!("GET {url}: {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {url}: {body}"))
    }

    /// `PUT <url><path>` with a JSON body; the answer as JSON.
    pub fn put(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.url);
        let response = self.http.put(&url).json(body).send()?;
        let status = response.status();
        let text = response.text()?;
        if !status.is_success() {
            bail!("PUT {url}: {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("PUT {url}: {text}"))
    }

    pub fn stop(&mut self) {
        self.proc.kill();
    }
}
