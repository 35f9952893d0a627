//! Lists become child tables, as dlt does: the demo API's `tags` (0–3 strings per record)
//! land in `communications_data__tags` (`_dlt_parent_id`, `_dlt_list_idx`, `value`, plus
//! `_dlt_root_id` and `_dlt_id`), in SQLite and PostgreSQL. When the API changes records
//! (a revision changes a record's number of tags), a merge re-run replaces each changed
//! record's children: nothing stale remains, and unchanged children keep their ids.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use e2e::{Broker, DemoApi, PgSchema, Pipeline, run_ok};
use serde_json::{Value, json};

const RUN: Duration = Duration::from_secs(180);
const N: u64 = 800;

/// `(_dlt_parent_id, _dlt_list_idx)` → `(value, _dlt_root_id, _dlt_id)`.
type Children = BTreeMap<(String, i64), (String, String, String)>;

/// The API's tags as `(parent id, position)` → value.
fn expected(records: &[Value]) -> Result<BTreeMap<(String, i64), String>> {
    let mut out = BTreeMap::new();
    for rec in records {
        let id = rec["id"].as_i64().context("id")?.to_string();
        for (i, tag) in rec["tags"].as_array().context("tags")?.iter().enumerate() {
            let tag = tag.as_str().context("tag")?.to_owned();
            let _ = out.insert((id.clone(), i as i64), tag);
        }
    }
    Ok(out)
}

const SELECT: &str = "SELECT _dlt_parent_id, _dlt_list_idx, value, _dlt_root_id, _dlt_id \
                      FROM {table}";

fn sqlite_children(pipeline: &Pipeline) -> Result<Children> {
    let conn = pipeline.sqlite()?;
    let mut stmt = conn.prepare(&SELECT.replace("{table}", "communications_data__tags"))?;
    let rows: Vec<(String, i64, String, String, String)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    collect(rows)
}

fn pg_children(pg: &mut PgSchema) -> Result<Children> {
    let rows = pg
        .query(&SELECT.replace("{table}", "{schema}.communications_data__tags"))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    collect(rows)
}

/// Keyed by `(parent, position)`; a duplicate is an error.
fn collect(rows: Vec<(String, i64, String, String, String)>) -> Result<Children> {
    let mut out = Children::new();
    for (parent, idx, value, root, id) in rows {
        let previous = out.insert((parent.clone(), idx), (value, root, id));
        ensure!(
            previous.is_none(),
            "two rows for parent {parent} index {idx}"
        );
    }
    Ok(out)
}

/// The child rows are exactly the API's tags; ids are well-formed and distinct.
fn check(name: &str, children: &Children, records: &[Value]) -> Result<()> {
    let want = expected(records)?;
    let got: BTreeMap<(String, i64), String> = children
        .iter()
        .map(|(k, (value, _, _))| (k.clone(), value.clone()))
        .collect();
    ensure!(
        got.len() == want.len(),
        "{name}: {} child rows, the API has {} tags",
        got.len(),
        want.len()
    );
    for (key, value) in &want {
        ensure!(
            got.get(key) == Some(value),
            "{name}: parent {} index {}: {:?}, expected {value:?}",
            key.0,
            key.1,
            got.get(key)
        );
    }
    let mut ids = std::collections::HashSet::new();
    for ((parent, idx), (_, root, id)) in children {
        ensure!(root == parent, "{name}: root {root} != parent {parent}");
        ensure!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: _dlt_id {id:?} of {parent}/{idx}"
        );
        ensure!(ids.insert(id.clone()), "{name}: _dlt_id {id} twice");
    }
    Ok(())
}

fn load(pipeline: &Pipeline, url: Option<&str>) -> Result<()> {
    let mut cmd = match url {
        Some(url) => pipeline.loader_to(url)?,
        None => pipeline.loader()?,
    };
    let _ = cmd.arg("--until-caught-up");
    let _ = run_ok(cmd, RUN)?;
    Ok(())
}

#[test]
fn tags_become_a_child_table_replaced_on_merge() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let broker = Broker::start(tmp.path())?;
    let api = DemoApi::start(N, &[])?;
    let pipeline = Pipeline::new(&broker, &api, "e2e_child", "")?;
    let mut pg = PgSchema::create("e2e_child")?;

    let _ = run_ok(pipeline.extractor()?, RUN)?;
    load(&pipeline, None)?;
    if let Some(pg) = &pg {
        load(&pipeline, Some(&pg.url))?;
    }
    let before = api.records()?;
    ensure!(
        expected(&before)?.len() > N as usize,
        "the demo data has too few tags"
    );
    let sqlite_before = sqlite_children(&pipeline)?;
    check("sqlite", &sqlite_before, &before)?;
    if let Some(pg) = &mut pg {
        let pg_before = pg_children(pg)?;
        check("postgres", &pg_before, &before)?;
        // Both destinations give a record's children the same ids.
        ensure!(pg_before == sqlite_before, "postgres and sqlite differ");
    }
    // The parent table has no list column any more.
    let conn = pipeline.sqlite()?;
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('communications_data')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    ensure!(columns.contains(&"id".to_owned()), "{columns:?}");
    ensure!(!columns.contains(&"tags".to_owned()), "{columns:?}");

    // Half the records change; a revision changes a record's number of tags.
    let _ = api.post(
        "/admin/state",
        json!({"revision": 1, "changed_percent": 50}),
    )?;
    let after = api.records()?;
    let count = |r: &Value| r["tags"].as_array().map_or(0, Vec::len);
    let shrunk = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| count(b) < count(a))
        .count();
    let grown = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| count(b) > count(a))
        .count();
    ensure!(
        shrunk > 50 && grown > 50,
        "{shrunk} records lost tags, {grown} gained some"
    );

    let _ = run_ok(pipeline.extractor()?, RUN)?;
    load(&pipeline, None)?;
    let sqlite_after = sqlite_children(&pipeline)?;
    check("sqlite after the change", &sqlite_after, &after)?;
    // A child row that is still there kept its id (ids depend on parent and position).
    for (key, (_, _, id)) in &sqlite_after {
        if let Some((_, _, old)) = sqlite_before.get(key) {
            ensure!(old == id, "{key:?}: id {old} became {id}");
        }
    }
    if let Some(pg) = &mut pg {
        load(&pipeline, Some(&pg.url))?;
        let pg_after = pg_children(pg)?;
        check("postgres after the change", &pg_after, &after)?;
        ensure!(pg_after == sqlite_after, "postgres and sqlite differ");
    }
    Ok(())
}
