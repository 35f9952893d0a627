//! Dependent resources and `response_actions` end to end: the demo API's conversations
//! (parent, offset paging) and each conversation's messages (child, page numbers; some
//! conversations answer 404, some "archived", some have no messages), paged by the real
//! extractor into Kafka (Tansu) and merged by the real loader into SQLite, which must then
//! hold exactly what `/admin/conversations` says a client gets.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{API_KEY, Broker, DemoApi, Pipeline, figure, run, run_ok};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(120);
const FAST_RETRY: &str = "{ initial_delay = 0.05, max_delay = 1.0, retry_after_max = 2.0 }";
const QUERY_KEY: &str = r#"{ type = "api_key", name = "api_key", api_key = { secret = "api_key" }, location = "query" }"#;
const MESSAGES_PATH: &str = "/v1/conversations/{conversation}/messages";
const PARENT: &str = r#"{ path = "/v1/conversations", data_selector = "data", paginator = { type = "offset", limit = 10 } }"#;
const CHILD_PAGING: &str = r#"data_selector = "data"
paginator = { type = "page_number", base_page = 1, total_path = "total_pages" }"#;

struct Stand {
    broker: Broker,
    api: DemoApi,
    _dir: tempfile::TempDir,
}

impl Stand {
    fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Ok(Self {
            broker: Broker::start(dir.path())?,
            api: DemoApi::start(10, &[])?,
            _dir: dir,
        })
    }

    /// Conversations (parent) and messages whose `[resources.endpoint]` table is
    /// `child_endpoint` and whose resource table has `child_extra` lines.
    fn pipeline(&self, name: &str, child_extra: &str, child_endpoint: &str) -> Result<Pipeline> {
        let text = format!(
            "[client]\nbase_url = \"{base}\"\nauth = {QUERY_KEY}\nretry = {FAST_RETRY}\n\n\
             [resource_defaults]\nprimary_key = \"id\"\nwrite_disposition = \"merge\"\n\n\
             [[resources]]\nname = \"conversations\"\ntopic = \"{name}.conversations\"\n\
             endpoint = {PARENT}\n\n\
             [[resources]]\nname = \"messages\"\ntopic = \"{name}.messages\"\n{child_extra}\n\
             [resources.endpoint]\n{child_endpoint}\n{CHILD_PAGING}\n",
            base = self.api.url,
        );
        Pipeline::with_config(&self.broker, name, &text)
    }

    /// `/admin/conversations`: the conversations, the messages a client gets, and the
    /// ids whose messages answer 404 or "archived".
    fn truth(&self) -> Result<Value> {
        self.api.get("/admin/conversations")
    }

    /// The demo API's log entries for `endpoint`.
    fn log(&self, endpoint: &str) -> Result<Vec<Value>> {
        let stats = self.api.get("/admin/stats")?;
        Ok(stats["log"]
            .as_array()
            .context("log")?
            .iter()
            .filter(|e| e["endpoint"] == endpoint)
            .cloned()
            .collect())
    }
}

/// `2026-03-01T00:07:00Z` as the destination stores timestamps.
fn stored_timestamp(api: &Value) -> Result<Value> {
    let t = api.as_str().context("timestamp")?;
    Ok(json!(format!(
        "{}.000000Z",
        t.strip_suffix('Z').unwrap_or(t)
    )))
}

fn ids(values: &Value) -> Result<Vec<i64>> {
    values
        .as_array()
        .context("list")?
        .iter()
        .map(|v| v.as_i64().context("id"))
        .collect()
}

/// The messages table holds exactly the API's messages, each with its conversation's id
/// (and, when `topic` is set, its topic) in the `_conversations_*` columns.
fn assert_messages(pipeline: &Pipeline, truth: &Value, topic: bool) -> Result<()> {
    let topics: HashMap<i64, Value> = truth["conversations"]
        .as_array()
        .context("conversations")?
        .iter()
        .map(|c| Ok((c["id"].as_i64().context("id")?, c["meta"]["topic"].clone())))
        .collect::<Result<_>>()?;
    let conn = pipeline.sqlite()?;
    let topic_column = if topic {
        "_conversations_meta_topic"
    } else {
        "NULL"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT id, seq, author, text, sent_at, _conversations_id, {topic_column} \
         FROM messages ORDER BY id"
    ))?;
    let rows: Vec<Value> = stmt
        .query_map([], |r| {
            Ok(json!([
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<String>>(6)?,
            ]))
        })?
        .collect::<Result<_, _>>()?;
    let mut expected = Vec::new();
    for m in truth["messages"].as_array().context("messages")? {
        let conversation = m["conversation_id"].as_i64().context("conversation_id")?;
        expected.push(json!([
            m["id"],
            m["seq"],
            m["author"],
            m["text"],
            stored_timestamp(&m["sent_at"])?,
            conversation,
            if topic {
                topics[&conversation].clone()
            } else {
                Value::Null
            },
        ]));
    }
    expected.sort_by_key(|m| m[0].as_i64());
    ensure!(!expected.is_empty(), "the API has no messages");
    ensure!(
        rows.len() == expected.len(),
        "{} rows, {} messages",
        rows.len(),
        expected.len()
    );
    for (row, want) in rows.iter().zip(&expected) {
        ensure!(
            row == want,
            "messages: destination {row}\n  expected {want}"
        );
    }
    // None from the conversations the response actions ignored.
    let mut skipped = ids(&truth["not_found"])?;
    skipped.extend(ids(&truth["archived"])?);
    ensure!(skipped.len() == 7, "{skipped:?}");
    for id in skipped {
        let n: i64 = conn.query_row(
            "SELECT count(*) FROM messages WHERE _conversations_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        ensure!(n == 0, "conversation {id}: {n} messages loaded");
    }
    Ok(())
}

fn loaded(out: &std::process::Output) -> Option<f64> {
    figure(&String::from_utf8_lossy(&out.stdout), "loaded", "records")
}

#[test]
fn conversations_feed_messages_with_include_from_parent() -> Result<()> {
    let stand = Stand::start()?;
    // Slow answers, so that requests would overlap if the limits let them.
    let _ = stand.api.post("/admin/state", json!({"latency_ms": 25}))?;
    let pipeline = stand.pipeline(
        "e2e_dependent",
        r#"include_from_parent = ["id", "meta.topic"]"#,
        r#"path = "/v1/conversations/{resources.conversations.meta.key}/messages"
params = { per_page = 4 }
response_actions = [{ status_code = 404, action = "ignore" }, { content = "conversation archived", action = "ignore" }]"#,
    )?;
    let mut extractor = pipeline.extractor()?;
    let _ = extractor.args(["--child-concurrency", "3", "--page-concurrency", "1"]);
    let extract = run_ok(extractor, RUN)?;
    let stdout = String::from_utf8_lossy(&extract.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&extract.stderr).into_owned();

    let truth = stand.truth()?;
    let conversations = truth["conversations"].as_array().context("conversations")?;
    let messages = truth["messages"].as_array().context("messages")?;
    assert_eq!(
        figure(&stdout, "resource=conversations ", "records"),
        Some(conversations.len() as f64),
        "{stdout}"
    );
    assert_eq!(
        figure(&stdout, "resource=messages ", "records"),
        Some(messages.len() as f64),
        "{stdout}"
    );

    // The requests: one or more pages per conversation, each 404 and "archived" answer
    // once.
    let mut pages_expected = 0;
    for c in conversations {
        let id = c["id"].as_i64().context("id")?;
        let n = messages
            .iter()
            .filter(|m| m["conversation_id"] == id)
            .count();
        pages_expected += n.div_ceil(4).max(1);
    }
    let log = stand.log(MESSAGES_PATH)?;
    let statuses = |s: u64| log.iter().filter(|e| e["status"] == s).count();
    assert_eq!(statuses(404), 4, "{log:?}");
    assert_eq!(statuses(200), pages_expected - 4, "{log:?}");
    assert_eq!(log.len(), pages_expected, "{log:?}");
    assert_eq!(stand.log("/v1/conversations")?.len(), 4);
    // A resource's requests in flight are bounded by --page-concurrency, its child
    // requests for all parent records together: one message request at a time whatever
    // --child-concurrency, and at most one parent page beside it (the parent pages first
    // while the run sets up, so the two rarely meet).
    let stats = stand.api.get("/admin/stats")?;
    let peak = stats["peak_in_flight"].as_u64().context("peak")?;
    assert!((1..=2).contains(&peak), "peak in flight {peak}");

    // Each ignored response is logged once, with the key redacted.
    let ignored: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("response ignored"))
        .collect();
    assert_eq!(ignored.len(), 7, "{stderr}");
    assert!(
        ignored
            .iter()
            .all(|l| l.contains("api_key=***") && l.contains("/messages")),
        "{ignored:?}"
    );
    assert!(!format!("{stdout}{stderr}").contains(API_KEY));

    let mut loader = pipeline.loader()?;
    let _ = loader.arg("--until-caught-up");
    let load = run_ok(loader, RUN)?;
    assert_eq!(
        loaded(&load),
        Some((conversations.len() + messages.len()) as f64)
    );

    // The parent's rows, then the children's.
    let conn = pipeline.sqlite()?;
    let mut stmt =
        conn.prepare("SELECT id, subject, meta__key, meta__topic FROM conversations ORDER BY id")?;
    let rows: Vec<Value> = stmt
        .query_map([], |r| {
            Ok(json!([
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ]))
        })?
        .collect::<Result<_, _>>()?;
    let expected: Vec<Value> = conversations
        .iter()
        .map(|c| json!([c["id"], c["subject"], c["meta"]["key"], c["meta"]["topic"]]))
        .collect();
    assert_eq!(rows, expected);
    assert_messages(&pipeline, &truth, true)
}

#[test]
fn resolve_param_with_only_the_child_selected() -> Result<()> {
    let stand = Stand::start()?;
    let pipeline = stand.pipeline(
        "e2e_resolve",
        r#"include_from_parent = ["id"]"#,
        r#"path = "/v1/conversations/{conversation_id}/messages"
params = { conversation_id = { type = "resolve", resource = "conversations", field = "id" }, per_page = 5 }
response_actions = [{ status_code = 404, action = "ignore" }, { status_code = 200, content = "archived", action = "ignore" }]"#,
    )?;
    let mut extractor = pipeline.extractor()?;
    let _ = extractor.args(["--resource", "messages"]);
    let extract = run_ok(extractor, RUN)?;
    let stdout = String::from_utf8_lossy(&extract.stdout).into_owned();
    let truth = stand.truth()?;
    let messages = truth["messages"].as_array().context("messages")?;
    // The parent was paged to feed the child, not published.
    assert_eq!(stand.log("/v1/conversations")?.len(), 4);
    assert!(!stdout.contains("resource=conversations"), "{stdout}");
    assert_eq!(
        figure(&stdout, "total", "records"),
        Some(messages.len() as f64),
        "{stdout}"
    );
    // Messages by the numeric id: the request path is /v1/conversations/<id>/messages.
    let log = stand.log(MESSAGES_PATH)?;
    assert_eq!(log.iter().filter(|e| e["status"] == 404).count(), 4);

    let mut loader = pipeline.loader()?;
    let _ = loader.args(["--until-caught-up", "--resource", "messages"]);
    let load = run_ok(loader, RUN)?;
    assert_eq!(loaded(&load), Some(messages.len() as f64));
    assert_messages(&pipeline, &truth, false)?;
    let tables: i64 = pipeline.sqlite()?.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'conversations'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(tables, 0, "the unselected parent was loaded");
    Ok(())
}

#[test]
fn child_failures_name_the_parent_record() -> Result<()> {
    let stand = Stand::start()?;
    // Without response_actions the first 404 stops the run (`allow_null_data`: the
    // "archived" answers, `data: null`, are empty pages, so they do not stop it first).
    let pipeline = stand.pipeline(
        "e2e_dependent_404",
        "",
        "path = \"/v1/conversations/{resources.conversations.id}/messages\"\nallow_null_data = true",
    )?;
    let out = run(pipeline.extractor()?, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The first conversation whose messages answer 404 (10, 20, ... as the children race).
    let id: u64 = stderr
        .split("for the `conversations` record id=")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("no parent record named:\n{stderr}"))?;
    assert!(id.is_multiple_of(10), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "for the `conversations` record id={id}: resource `messages`: GET "
        )) && stderr.contains(&format!("/v1/conversations/{id}/messages?"))
            && stderr.contains("HTTP 404 after 1 attempt(s)")
            && stderr.contains("api_key=***"),
        "{stderr}"
    );
    assert!(!stderr.contains(API_KEY));

    // A field the parent's records lack.
    let pipeline = stand.pipeline(
        "e2e_dependent_missing",
        "",
        r#"path = "/v1/conversations/{resources.conversations.meta.number}/messages""#,
    )?;
    let out = run(pipeline.extractor()?, RUN)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "resource `messages`: the `conversations` record id=1 has no `meta.number`, which \
             the path needs"
        ),
        "{stderr}"
    );
    Ok(())
}
