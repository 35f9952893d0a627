//! No Docker engine runs here, so the stack is checked by structure: the services users
//! expect, the real images, health-gated start order, and every flag a service passes to
//! one of our binaries accepted by that binary's `--help`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_yaml_ng::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repo")
}

fn compose() -> Result<Value> {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml"))?;
    Ok(serde_yaml_ng::from_str(&text)?)
}

fn flags_in_help(binary: &str) -> Result<BTreeSet<String>> {
    let out = Command::new(e2e::bin(binary)?).arg("--help").output()?;
    ensure!(out.status.success(), "{binary} --help failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split(['=', '<', '[']).next().unwrap_or(w).to_owned())
        .collect())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_names_the_stack_with_real_images() -> Result<()> {
    let doc = compose()?;
    let services = doc["services"].as_mapping().context("services")?;
    for name in [
        "kafka",
        "schema-registry",
        "demo-api",
        "extractor",
        "loader",
    ] {
        ensure!(services.contains_key(name), "service {name} missing");
    }
    let kafka = &doc["services"]["kafka"];
    ensure!(
        kafka["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("apache/kafka:"))
    );
    let roles = kafka["environment"]["KAFKA_PROCESS_ROLES"]
        .as_str()
        .context("KRaft roles")?;
    ensure!(
        roles.contains("broker") && roles.contains("controller"),
        "KRaft mode: {roles}"
    );
    ensure!(
        kafka["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]
            .as_str()
            .is_some()
    );
    ensure!(
        kafka["healthcheck"]["test"].is_sequence(),
        "kafka healthcheck"
    );
    let registry = doc["services"]["schema-registry"]["image"]
        .as_str()
        .context("registry image")?;
    ensure!(
        registry.starts_with("confluentinc/cp-schema-registry:"),
        "{registry}"
    );
    for name in ["demo-api", "extractor", "loader"] {
        let image = doc["services"][name]["image"].as_str().context("image")?;
        ensure!(
            image == "rest-pipeline:latest",
            "{name} runs the image the Dockerfile builds: {image}"
        );
    }
    ensure!(
        doc["services"]["demo-api"]["build"].as_str() == Some("."),
        "the image is built from the Dockerfile"
    );
    Ok(())
}

#[test]
fn compose_starts_in_health_order() -> Result<()> {
    let doc = compose()?;
    for (service, needs) in [
        ("schema-registry", &["kafka"][..]),
        ("extractor", &["kafka", "schema-registry", "demo-api"][..]),
        ("loader", &["kafka", "schema-registry"][..]),
    ] {
        for dep in needs {
            let condition = doc["services"][service]["depends_on"][*dep]["condition"].as_str();
            ensure!(
                condition == Some("service_healthy"),
                "{service} waits for a healthy {dep}: {condition:?}"
            );
            ensure!(
                doc["services"][*dep]["healthcheck"]["test"].is_sequence(),
                "{dep} has a healthcheck"
            );
        }
    }
    Ok(())
}

#[test]
fn compose_commands_use_flags_the_binaries_accept() -> Result<()> {
    let doc = compose()?;
    let mut checked = 0;
    for (service, binary) in [
        ("demo-api", "demo-api"),
        ("extractor", "extractor"),
        ("loader", "loader"),
    ] {
        let command = strings(&doc["services"][service]["command"]);
        ensure!(
            command.first().map(String::as_str) == Some(binary),
            "{service} runs {binary}: {command:?}"
        );
        let known = flags_in_help(binary)?;
        for flag in command.iter().filter(|a| a.starts_with("--")) {
            let name = flag.split('=').next().unwrap_or(flag);
            ensure!(
                known.contains(name),
                "{service}: {binary} does not accept {name} (it has {known:?})"
            );
            checked += 1;
        }
        // Each config file a service mounts exists in the repo.
        for volume in strings(&doc["services"][service]["volumes"]) {
            if let Some(local) = volume.strip_prefix("./") {
                let path = local.split(':').next().unwrap_or(local);
                ensure!(
                    repo().join(path).exists(),
                    "{service} mounts ./{path}, which is missing"
                );
            }
        }
    }
    ensure!(checked >= 5, "only {checked} flags checked");
    Ok(())
}

#[test]
fn dockerfile_builds_all_binaries_and_runs_as_non_root() -> Result<()> {
    let text = std::fs::read_to_string(repo().join("Dockerfile"))?;
    let stages: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    ensure!(
        stages.len() == 2,
        "a build stage and a runtime stage: {stages:?}"
    );
    ensure!(
        stages[0].contains(" AS build") && stages[1].contains("slim"),
        "{stages:?}"
    );
    for binary in ["extractor", "loader", "demo-api"] {
        ensure!(
            text.contains(&format!("target/release/{binary}")),
            "{binary} is copied into the image"
        );
    }
    let user = text
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .context("USER line")?;
    ensure!(!user.contains("root"), "{user}");
    Ok(())
}

#[test]
fn compose_config_parses_with_the_pipeline_config_rules() -> Result<()> {
    let cfg = common::config::load(&repo().join("deploy/pipeline.toml"))?;
    ensure!(cfg.resources.len() == 1 && cfg.resources[0].primary_key == ["id"]);
    Ok(())
}
