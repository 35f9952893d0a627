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
        "extractor-scheduled",
        "loader",
        "postgres",
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
    let postgres = &doc["services"]["postgres"];
    ensure!(
        postgres["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("postgres:")),
        "the official PostgreSQL image"
    );
    ensure!(
        strings(&postgres["volumes"])
            .iter()
            .any(|v| v.starts_with("postgres-data:")),
        "PostgreSQL keeps its data in a named volume"
    );
    for name in ["demo-api", "extractor", "extractor-scheduled", "loader"] {
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
        (
            "extractor-scheduled",
            &["kafka", "schema-registry", "demo-api"][..],
        ),
        ("loader", &["kafka", "schema-registry", "postgres"][..]),
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
    let services = doc["services"].as_mapping().context("services")?;
    let ours: Vec<(&str, String)> = services
        .iter()
        .filter(|(_, s)| s["image"].as_str() == Some("rest-pipeline:latest"))
        .filter_map(|(name, s)| Some((name.as_str()?, strings(&s["command"]).first()?.clone())))
        .collect();
    ensure!(ours.len() == 4, "{ours:?}");
    for (service, binary) in &ours {
        let (service, binary) = (*service, binary.as_str());
        let command = strings(&doc["services"][service]["command"]);
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
    // The healthchecks ask /health with curl, so the runtime stage has it.
    let runtime = text.split(stages[1]).nth(1).context("runtime stage")?;
    ensure!(
        runtime.contains(" curl"),
        "curl is installed in the runtime stage"
    );
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

/// `KEY` of each `${KEY...}` in `text`.
fn interpolated(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            Some(rest[..end].to_owned())
        })
        .collect()
}

#[test]
fn loaders_scale_postgres_is_the_destination_and_health_is_asked() -> Result<()> {
    let doc = compose()?;
    let loader = &doc["services"]["loader"];
    // `--scale loader=3`: nothing that can exist only once.
    for fixed in ["container_name", "ports", "hostname"] {
        ensure!(loader.get(fixed).is_none(), "the loader sets {fixed}");
    }
    let command = strings(&loader["command"]);
    ensure!(
        !command.iter().any(|a| a.starts_with("--group-instance-id")),
        "{command:?}"
    );
    let env = loader["environment"]
        .as_mapping()
        .context("loader environment")?;
    ensure!(!env.contains_key("LOADER_GROUP_INSTANCE_ID"));
    let destination = loader["environment"]["LOADER_DESTINATION"]
        .as_str()
        .context("LOADER_DESTINATION")?;
    ensure!(
        destination.starts_with("postgres://") && destination.contains("@postgres:5432/"),
        "{destination}"
    );
    // The password comes from the environment, never written into the file.
    ensure!(destination.contains("${POSTGRES_PASSWORD"), "{destination}");
    // The binaries' health endpoint, on the port their --metrics-addr serves.
    for service in ["loader", "extractor-scheduled"] {
        let s = &doc["services"][service];
        let command = strings(&s["command"]);
        let at = command
            .iter()
            .position(|a| a == "--metrics-addr")
            .context("--metrics-addr")?;
        let port = command[at + 1].rsplit(':').next().context("port")?;
        let test = strings(&s["healthcheck"]["test"]).join(" ");
        ensure!(
            test.contains(&format!("127.0.0.1:{port}/health")),
            "{service}: {test}"
        );
    }
    let scheduled = &doc["services"]["extractor-scheduled"];
    ensure!(strings(&scheduled["profiles"]) == ["scheduled"]);
    ensure!(
        strings(&scheduled["command"])
            .iter()
            .any(|a| a == "--interval")
    );
    ensure!(
        doc["services"]["extractor"]["profiles"].is_null(),
        "the one-shot extractor runs by default"
    );
    Ok(())
}

#[test]
fn env_example_names_every_variable_the_compose_file_uses() -> Result<()> {
    let compose = std::fs::read_to_string(repo().join("docker-compose.yml"))?;
    let example = std::fs::read_to_string(repo().join(".env.example"))?;
    let defined: BTreeSet<String> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .collect();
    let used = interpolated(&compose);
    ensure!(used.len() >= 5, "{used:?}");
    let missing: Vec<&String> = used.difference(&defined).collect();
    ensure!(missing.is_empty(), ".env.example lacks {missing:?}");
    let unused: Vec<&String> = defined.difference(&used).collect();
    ensure!(
        unused.is_empty(),
        ".env.example sets {unused:?}, which compose never uses"
    );
    Ok(())
}

#[test]
fn environment_given_to_the_binaries_is_theirs() -> Result<()> {
    // Each variable a service of ours sets is one its binary reads (`[env: X=]` in its
    // --help), or a secret the config names (`API_KEY`), or the demo API's key.
    let doc = compose()?;
    for (service, binary) in [
        ("extractor", "extractor"),
        ("extractor-scheduled", "extractor"),
        ("loader", "loader"),
    ] {
        let out = Command::new(e2e::bin(binary)?).arg("--help").output()?;
        let help = String::from_utf8_lossy(&out.stdout);
        let env = doc["services"][service]["environment"]
            .as_mapping()
            .context("environment")?;
        for key in env.keys().filter_map(Value::as_str) {
            ensure!(
                key == "API_KEY" || help.contains(&format!("[env: {key}=")),
                "{service}: {binary} does not read {key}"
            );
        }
    }
    Ok(())
}

#[test]
fn kafka_image_is_the_version_the_tests_run() -> Result<()> {
    // The tests run the Kafka jars scripts/kafka/pom.xml names; the stack runs the image.
    let pom = std::fs::read_to_string(repo().join("scripts/kafka/pom.xml"))?;
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .context("kafka.version in scripts/kafka/pom.xml")?
        .trim();
    let doc = compose()?;
    let image = doc["services"]["kafka"]["image"]
        .as_str()
        .context("kafka image")?;
    ensure!(
        image == format!("apache/kafka:{version}"),
        "the compose file runs {image}, the tests Kafka {version}"
    );
    Ok(())
}
