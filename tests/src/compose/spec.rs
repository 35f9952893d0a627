//! The services of an interpolated compose document as the stack needs them (command,
//! environment, `depends_on`, volumes, healthcheck, `stop_grace_period`, profiles), compose
//! durations, and compose's start order.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_yaml_ng::Value;

/// Compose's default `stop_grace_period`.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// A compose duration: `60s`, `1m30s`, `500ms`, `2h`.
pub fn compose_duration(text: &str) -> Result<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    ensure!(!rest.is_empty(), "empty duration");
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .with_context(|| format!("{text:?}: a number without a unit"))?;
        let number: f64 = rest[..n]
            .parse()
            .with_context(|| format!("{text:?}: not a duration"))?;
        let unit_len = rest[n..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - n);
        let seconds = match &rest[n..n + unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            unit => bail!("{text:?}: unknown unit {unit:?}"),
        };
        total += Duration::from_secs_f64(seconds);
        rest = &rest[n + unit_len..];
    }
    Ok(total)
}

/// A service's healthcheck.
#[derive(Debug, Clone)]
pub struct Healthcheck {
    /// The command after `CMD` / `CMD-SHELL`, as one line.
    pub command: String,
    pub interval: Duration,
    pub retries: u32,
}

impl Healthcheck {
    /// How long compose waits before it calls the service unhealthy.
    pub fn deadline(&self) -> Duration {
        (self.interval * self.retries).max(Duration::from_secs(30))
    }
}

/// One service, interpolated.
#[derive(Debug, Clone)]
pub struct Spec {
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub depends_on: Vec<(String, String)>,
    pub volumes: Vec<String>,
    pub healthcheck: Option<Healthcheck>,
    pub stop_grace_period: Duration,
    pub profiles: Vec<String>,
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(scalar).collect())
        .unwrap_or_default()
}

/// Every service of the (interpolated) document, by name.
pub fn parse_services(doc: &Value) -> Result<BTreeMap<String, Spec>> {
    let mut out = BTreeMap::new();
    for (name, s) in doc["services"].as_mapping().context("services")? {
        let name = name.as_str().context("service name")?.to_owned();
        let environment = environment(&name, s)?;
        let depends_on = depends_on(s)?;
        let healthcheck = healthcheck(&name, s)?;
        let stop_grace_period = match s["stop_grace_period"].as_str() {
            Some(d) => compose_duration(d)?,
            None => DEFAULT_GRACE,
        };
        let _ = out.insert(
            name,
            Spec {
                command: strings(&s["command"]),
                environment,
                depends_on,
                volumes: strings(&s["volumes"]),
                healthcheck,
                stop_grace_period,
                profiles: strings(&s["profiles"]),
            },
        );
    }
    Ok(out)
}

/// A service's `environment`, as a mapping or as `KEY=VALUE` items.
fn environment(name: &str, s: &Value) -> Result<BTreeMap<String, String>> {
    let mut environment = BTreeMap::new();
    match &s["environment"] {
        Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().context("environment key")?.to_owned();
                let v = scalar(v).with_context(|| format!("{name}: {k} has no value"))?;
                let _ = environment.insert(k, v);
            }
        }
        Value::Sequence(items) => {
            for item in items.iter().filter_map(Value::as_str) {
                let (k, v) = item.split_once('=').context("KEY=VALUE")?;
                let _ = environment.insert(k.to_owned(), v.to_owned());
            }
        }
        Value::Null => {}
        other => bail!("{name}: environment is {other:?}"),
    }
    Ok(environment)
}

/// A service's `depends_on`: `(dependency, condition)`, `service_started` unless it says.
fn depends_on(s: &Value) -> Result<Vec<(String, String)>> {
    Ok(match &s["depends_on"] {
        Value::Mapping(m) => m
            .iter()
            .map(|(dep, how)| {
                Ok((
                    dep.as_str().context("depends_on key")?.to_owned(),
                    how["condition"]
                        .as_str()
                        .unwrap_or("service_started")
                        .to_owned(),
                ))
            })
            .collect::<Result<_>>()?,
        Value::Sequence(_) => strings(&s["depends_on"])
            .into_iter()
            .map(|d| (d, "service_started".to_owned()))
            .collect(),
        _ => Vec::new(),
    })
}

/// A service's healthcheck (`CMD` / `CMD-SHELL` tests only), if it has one.
fn healthcheck(name: &str, s: &Value) -> Result<Option<Healthcheck>> {
    Ok(match &s["healthcheck"]["test"] {
        Value::Sequence(_) => {
            let test = strings(&s["healthcheck"]["test"]);
            ensure!(
                matches!(test.first().map(String::as_str), Some("CMD" | "CMD-SHELL")),
                "{name}: healthcheck test {test:?}"
            );
            Some(Healthcheck {
                command: test[1..].join(" "),
                interval: compose_duration(s["healthcheck"]["interval"].as_str().unwrap_or("30s"))?,
                retries: s["healthcheck"]["retries"].as_u64().unwrap_or(3) as u32,
            })
        }
        _ => None,
    })
}

/// The services `targets` need, dependencies first (compose's start order).
pub fn start_order(specs: &BTreeMap<String, Spec>, targets: &[&str]) -> Result<Vec<String>> {
    fn visit(
        specs: &BTreeMap<String, Spec>,
        name: &str,
        seen: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> Result<()> {
        if seen.iter().any(|s| s == name) {
            return Ok(());
        }
        ensure!(
            !path.iter().any(|s| s == name),
            "depends_on cycle: {path:?} → {name}"
        );
        let spec = specs
            .get(name)
            .with_context(|| format!("no service {name}"))?;
        path.push(name.to_owned());
        for (dep, _) in &spec.depends_on {
            visit(specs, dep, seen, path)?;
        }
        let _ = path.pop();
        seen.push(name.to_owned());
        Ok(())
    }
    let mut seen = Vec::new();
    for target in targets {
        visit(specs, target, &mut seen, &mut Vec::new())?;
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::{dotenv, interpolate_doc};
    use crate::repo_root;

    #[test]
    fn durations_and_start_order_follow_compose() -> Result<()> {
        assert_eq!(compose_duration("60s")?, Duration::from_secs(60));
        assert_eq!(compose_duration("1m30s")?, Duration::from_secs(90));
        assert_eq!(compose_duration("500ms")?, Duration::from_millis(500));
        assert!(compose_duration("5").is_err());
        let text = std::fs::read_to_string(repo_root().join("docker-compose.yml"))?;
        let mut doc: Value = serde_yaml_ng::from_str(&text)?;
        let env = dotenv(&std::fs::read_to_string(repo_root().join(".env.example"))?);
        interpolate_doc(&mut doc, &env)?;
        let specs = parse_services(&doc)?;
        let order = start_order(&specs, &["extractor"])?;
        let at = |s: &str| order.iter().position(|o| o == s);
        assert!(at("kafka") < at("schema-registry") && at("schema-registry") < at("extractor"));
        assert!(
            at("demo-api") < at("extractor") && at("postgres").is_none(),
            "{order:?}"
        );
        Ok(())
    }
}
