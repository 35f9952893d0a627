//! `extractor --check [--fetch]`: config problems with their key paths (exit 1), and the
//! first page of each resource described against the demo API, with no broker at all.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{API_KEY, DemoApi, bin, run};
use serde_json::Value;

const RUN: Duration = Duration::from_secs(60);

/// A config whose broker does not exist: `--check` must not need one.
fn write_config(dir: &std::path::Path, base: &str, resource: &str) -> Result<std::path::PathBuf> {
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            r#"[pipeline]
name = "e2e_check"

[kafka]
"bootstrap.servers" = "127.0.0.1:1"

[client]
base_url = "{base}"
auth = {{ type = "api_key", name = "api_key", api_key = {{ secret = "api_key" }}, location = "query" }}

[resource_defaults]
primary_key = "id"

{resource}"#
        ),
    )?;
    Ok(path)
}

const GOOD: &str = r#"[[resources]]
name = "communications_data"
endpoint = { path = "/v1/resource", data_selector = "data", paginator = { type = "offset", limit = 20 } }
"#;

fn extractor(config: &std::path::Path, args: &[&str], key: Option<&str>) -> Result<Command> {
    let mut cmd = Command::new(bin("extractor")?);
    let _ = cmd
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("API_KEY")
        .env_remove("SOURCES__API_KEY")
        .current_dir(config.parent().context("config dir")?);
    if let Some(key) = key {
        let _ = cmd.env("API_KEY", key);
    }
    Ok(cmd)
}

#[test]
fn fetch_prints_the_schema_and_three_records_of_the_first_page() -> Result<()> {
    let api = DemoApi::start(50, &[])?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &api.url, GOOD)?;
    let out = run(
        extractor(&config, &["--check", "--fetch"], Some(API_KEY))?,
        RUN,
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{stdout}\n{stderr}");
    ensure!(stdout.contains(": ok (1 resources)"), "{stdout}");
    ensure!(
        stdout.contains("resource `communications_data` (")
            && stdout.contains("): 20 records on the first page"),
        "{stdout}"
    );
    // The API key is redacted from the shown URL.
    ensure!(!stdout.contains(API_KEY), "the key leaked: {stdout}");
    let field = |name: &str| -> Option<Vec<&str>> {
        stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.first() == Some(&name))
    };
    assert_eq!(
        field("id"),
        Some(vec!["id", "bigint", "no", "(primary", "key)"])
    );
    assert_eq!(field("created_at").map(|w| w[1]), Some("timestamp"));
    assert_eq!(field("sender__address__city").map(|w| w[1]), Some("text"));
    // The three records, as the API has them.
    let shown: Vec<Value> = stdout
        .lines()
        .skip_while(|l| !l.contains("first 3 records:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l.trim()))
        .collect::<Result<_, _>>()?;
    let expected = api.records()?;
    assert_eq!(shown, expected[..3].to_vec());
    // One request: the first page only.
    let stats = api.get("/admin/stats")?;
    let log = stats["log"].as_array().context("log")?;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["offset"], 0);
    Ok(())
}

#[test]
fn every_problem_is_printed_with_its_key_path() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // (resource table, API key given, the problems printed, in order)
    let cases: [(&str, bool, &[&str]); 5] = [
        (
            "[[resources]]\nname = \"a\"\nendpoint = { pathh = \"/a\" }\n",
            true,
            &["resources[0].endpoint.pathh: unknown field `pathh`"],
        ),
        (
            "[[resources]]\nname = \"a\"\nendpoint = { path = \"/a\", paginator = { type = \"offset\", limit = \"ten\" } }\n",
            true,
            &["resources[0].endpoint.paginator.limit: invalid type: string \"ten\""],
        ),
        (
            "[[resources]]\nname = \"a\"\nendpoint = { path = \"/a\", data_selector = \"$[\" }\n\
             [[resources]]\nname = \"b\"\nwrite_disposition = \"upsert\"\nendpoint = { path = \"/b\" }\n",
            true,
            &["resources[1].write_disposition: unknown write disposition `upsert`"],
        ),
        (
            "[[resources]]\nname = \"a\"\nendpoint = { path = \"/a\", data_selector = \"$[\" }\n\
             [[resources]]\nname = \"b\"\nendpoint = { path = \"/b\", paginator = { type = \"offset\", limit = 0 } }\n",
            true,
            &[
                "resources[0].endpoint.data_selector: ",
                "resources[1].endpoint.paginator.limit: ",
            ],
        ),
        (
            GOOD,
            false,
            &["secret \"api_key\" for client.auth.api_key not found"],
        ),
    ];
    for (resource, with_key, wanted) in cases {
        let config = write_config(dir.path(), "http://127.0.0.1:1", resource)?;
        let key = with_key.then_some(API_KEY);
        let out = run(extractor(&config, &["--check"], key)?, RUN)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{resource}: {stdout}");
        let problems: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("problem: "))
            .collect();
        assert_eq!(problems.len(), wanted.len(), "{resource}: {stdout}");
        for (problem, wanted) in problems.iter().zip(wanted) {
            ensure!(
                problem.starts_with(wanted),
                "{resource}: {problem:?} should start with {wanted:?}"
            );
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            stderr.contains(&format!("{} problem(s)", wanted.len())),
            "{stderr}"
        );
    }
    Ok(())
}

#[test]
fn fetch_follows_a_dependent_resource_from_its_parents_first_record() -> Result<()> {
    let api = DemoApi::start(10, &[])?;
    let dir = tempfile::tempdir()?;
    // The child is listed first: its parent is fetched before it all the same.
    let resources = r#"[[resources]]
name = "messages"
include_from_parent = ["id"]
[resources.endpoint]
path = "/v1/conversations/{resources.conversations.id}/messages"
data_selector = "data"
paginator = { type = "page_number", base_page = 1, total_path = "total_pages" }

[[resources]]
name = "conversations"
endpoint = { path = "/v1/conversations", data_selector = "data", paginator = { type = "offset", limit = 10 } }
"#;
    let config = write_config(dir.path(), &api.url, resources)?;
    let out = run(
        extractor(&config, &["--check", "--fetch"], Some(API_KEY))?,
        RUN,
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{stdout}");
    let conversations = stdout
        .find("resource `conversations` (")
        .context("conversations")?;
    let messages = stdout
        .find("resource `messages`: for the `conversations` record id=1")
        .context("messages")?;
    ensure!(conversations < messages, "{stdout}");
    let section = &stdout[messages..];
    ensure!(
        section.contains("/v1/conversations/1/messages"),
        "{section}"
    );
    // The include_from_parent column is part of the inferred schema and the records.
    ensure!(
        section
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["_conversations_id", "bigint", "yes"]),
        "{section}"
    );
    let shown: Vec<Value> = section
        .lines()
        .skip_while(|l| !l.contains("first 3 records:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l.trim()))
        .collect::<Result<_, _>>()?;
    let truth = api.get("/admin/conversations")?;
    let expected: Vec<Value> = truth["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter(|m| m["conversation_id"] == 1)
        .take(3)
        .map(|m| {
            let mut m = m.clone();
            let object = m.as_object_mut().context("object")?;
            let _ = object.remove("conversation_id");
            let _ = object.insert("_conversations_id".into(), serde_json::json!(1));
            Ok(m)
        })
        .collect::<Result<_>>()?;
    assert_eq!(shown.len(), 3);
    assert_eq!(shown, expected);
    Ok(())
}
