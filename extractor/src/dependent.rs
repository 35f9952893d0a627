//! Dependent resources, as dlt's rest_api has them: a child resource whose path or params
//! hold `{resources.<parent>.<field>}` placeholders (the config turns dlt's `resolve` params
//! into those) is paged once per record of its parent, with the placeholders filled from
//! that record; `include_from_parent` copies parent fields into each child record as
//! `_<parent>_<field>`.
//!
//! The parent's pages reach its children as they are fetched (a bounded channel per
//! child), and each child pages up to `--child-concurrency` parent records at once. A
//! parent that was not selected on the command line is paged only to feed its children: its
//! records are not published.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use common::config::{PipelineConfig, ResourceConfig};
use common::template::parse_template;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::ExtractError;
use crate::fetch::{FetchStats, Fetcher, Page};
use crate::from_config::{self, BuildError, EndpointPlan};
use crate::incremental::CursorFilter;
use crate::placeholders::{FillError, IncrementalValues, Values};
use crate::records::Records;

/// One page of a parent's records, shared by its children.
pub type ParentPage = Arc<Vec<Value>>;

/// Parent pages queued per child before the parent waits.
pub const PARENT_PAGES_QUEUED: usize = 2;

/// Default of `--child-concurrency`: parent records whose children are paged at once.
pub const DEFAULT_CHILD_CONCURRENCY: usize = 4;

/// A parent record that cannot make a child request: what is missing or unusable in it.
#[derive(Debug, thiserror::Error)]
#[error(
    "resource `{}`: the `{}` record {} {}",
    .0.resource, .0.parent, .0.parent_id, .0.problem
)]
pub struct DependentError(Box<DependentProblem>);

#[derive(Debug)]
pub struct DependentProblem {
    pub resource: String,
    pub parent: String,
    /// The parent record's primary key, e.g. `id=7`.
    pub parent_id: String,
    pub problem: String,
}

/// The resources to run: the selected ones (all when `names` is empty) and, unselected,
/// every parent they need, in config order; `true` for the ones to publish.
pub fn with_parents<'a>(
    cfg: &'a PipelineConfig,
    names: &[String],
) -> Result<Vec<(&'a ResourceConfig, EndpointPlan, bool)>, BuildError> {
    let selected: HashSet<&str> = from_config::select_resources(cfg, names)?
        .into_iter()
        .map(|(r, _)| r.name.as_str())
        .collect();
    let mut needed = selected.clone();
    for name in &selected {
        let mut parent = cfg.resource(name).and_then(|r| r.parent.as_deref());
        // The config has no cycles; the bound keeps a broken one from looping here.
        let mut hops = 0;
        while let Some(p) = parent
            && hops <= cfg.resources.len()
        {
            let _ = needed.insert(p);
            parent = cfg.resource(p).and_then(|r| r.parent.as_deref());
            hops += 1;
        }
    }
    cfg.resources
        .iter()
        .enumerate()
        .filter(|(_, r)| needed.contains(r.name.as_str()))
        .map(|(i, r)| {
            Ok((
                r,
                from_config::endpoint_plan(i, r)?,
                selected.contains(r.name.as_str()),
            ))
        })
        .collect()
}

/// Where a resource's requests come from.
pub enum Source {
    /// Its endpoint, paged once.
    Endpoint(EndpointPlan),
    /// Its endpoint paged once per parent record, the parent's pages arriving here.
    Parents(ChildPlan, mpsc::Receiver<ParentPage>),
}

/// A child's request plan with the placeholders still to fill from a parent record.
#[derive(Debug, Clone)]
pub struct ChildPlan {
    resource: String,
    parent: String,
    parent_key: Vec<String>,
    base: EndpointPlan,
    /// The run's incremental values, when the child has an incremental: one cursor for
    /// all its records, as in dlt.
    incremental: Option<Box<IncrementalValues>>,
    /// `(column, field path)` of `include_from_parent`.
    include: Vec<(String, Vec<String>)>,
}

impl ChildPlan {
    pub fn new(
        index: usize,
        resource: &ResourceConfig,
        parent: &ResourceConfig,
        base: EndpointPlan,
    ) -> Result<Self, BuildError> {
        let invalid = |key: String, message: String| BuildError::Invalid { key, message };
        let _ = parse_template(&base.path)
            .map_err(|e| invalid(format!("resources[{index}].endpoint.path"), e))?;
        for (name, value) in &base.params {
            let _ = parse_template(value)
                .map_err(|e| invalid(format!("resources[{index}].endpoint.params.{name}"), e))?;
        }
        let include = resource
            .include_from_parent
            .iter()
            .map(|field| {
                (
                    format!("_{}_{}", parent.name, field.replace('.', "_")),
                    field.split('.').map(str::to_owned).collect(),
                )
            })
            .collect();
        Ok(Self {
            resource: resource.name.clone(),
            parent: parent.name.clone(),
            parent_key: parent.primary_key.clone(),
            base,
            incremental: None,
            include,
        })
    }

    /// The run's incremental values, which fill the child's `{incremental.…}` placeholders
    /// and its `start_param`/`end_param` for every parent record.
    pub fn set_incremental(&mut self, values: Option<IncrementalValues>) {
        self.incremental = values.map(Box::new);
    }

    /// The request plan for one parent record (placeholders filled, path values escaped),
    /// and the `include_from_parent` columns for each of its child records.
    pub fn for_parent(
        &self,
        record: &Value,
    ) -> Result<(EndpointPlan, Vec<(String, Value)>), DependentError> {
        let mut plan = self.base.clone();
        Values {
            incremental: self.incremental.as_deref(),
            parent: Some(record),
        }
        .fill_plan(&mut plan)
        .map_err(|e| match e {
            FillError::Missing { field, place } => {
                self.problem(record, format!("has no `{field}`, which the {place} needs"))
            }
            FillError::BadValue {
                field,
                place,
                found,
            } => self.problem(
                record,
                format!("has {found} in `{field}`, which cannot fill the {place}"),
            ),
            other => self.problem(record, format!("cannot make the request: {other}")),
        })?;
        let mut include = Vec::with_capacity(self.include.len());
        for (column, field) in &self.include {
            let value = lookup(record, field).ok_or_else(|| {
                self.problem(
                    record,
                    format!(
                        "has no `{}`, which the include_from_parent needs",
                        field.join(".")
                    ),
                )
            })?;
            include.push((column.clone(), value.clone()));
        }
        Ok((plan, include))
    }

    /// The parent this plan takes its values from.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// The parent record's primary key, as errors name it: `id=7`.
    pub fn parent_id(&self, record: &Value) -> String {
        self.parent_key
            .iter()
            .map(|k| match record.get(k) {
                Some(Value::String(s)) => format!("{k}={s}"),
                Some(v) => format!("{k}={v}"),
                None => format!("{k}=?"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn problem(&self, record: &Value, problem: String) -> DependentError {
        DependentError(Box::new(DependentProblem {
            resource: self.resource.clone(),
            parent: self.parent.clone(),
            parent_id: self.parent_id(record),
            problem,
        }))
    }
}

/// The value at a dotted path of object keys.
fn lookup<'a>(record: &'a Value, field: &[String]) -> Option<&'a Value> {
    field.iter().try_fold(record, |v, key| v.get(key))
}

/// Forwards each fetched page to the children (shared) and then to the publisher, if the
/// resource is published. Stops when the fetcher ends or a receiver has gone (its error
/// is the one reported).
pub(crate) async fn feed_children(
    mut pages: mpsc::Receiver<Page>,
    children: Vec<mpsc::Sender<ParentPage>>,
    publish: Option<mpsc::Sender<Page>>,
) {
    while let Some(page) = pages.recv().await {
        let page = if children.is_empty() {
            Some(page)
        } else {
            // One copy of the records for the children, only when the page is published too.
            let (shared, page) = if publish.is_some() {
                (Arc::new(page.records.to_values()), Some(page))
            } else {
                (Arc::new(page.records.into_values()), None)
            };
            for child in &children {
                if child.send(Arc::clone(&shared)).await.is_err() {
                    return;
                }
            }
            page
        };
        if let (Some(publish), Some(page)) = (&publish, page)
            && publish.send(page).await.is_err()
        {
            return;
        }
    }
}

/// The name of the resource at the top of `resource`'s parent chain (itself when it has no
/// parent).
pub fn root_of<'a>(cfg: &'a PipelineConfig, resource: &'a ResourceConfig) -> &'a str {
    let mut current = resource;
    // The config refuses cycles; the bound only guards against a loop all the same.
    for _ in 0..=cfg.resources.len() {
        match current.parent.as_deref().and_then(|p| cfg.resource(p)) {
            Some(parent) => current = parent,
            None => break,
        }
    }
    &current.name
}

/// Pages the child's endpoint once per parent record, `child_concurrency` records at a
/// time, sending every page (with the `include_from_parent` columns added, its records
/// kept by the child's incremental `filter`, one range for all parent records) to `tx`.
pub(crate) async fn fetch_children(
    fetcher: &Fetcher<'_>,
    child: &ChildPlan,
    parents: mpsc::Receiver<ParentPage>,
    tx: mpsc::Sender<Page>,
    filter: Option<&CursorFilter>,
    child_concurrency: usize,
) -> Result<FetchStats, ExtractError> {
    let totals = Mutex::new(FetchStats::default());
    let numbers = AtomicU64::new(0);
    let records = futures::stream::unfold(parents, |mut rx| async move {
        rx.recv().await.map(|page| (page, rx))
    })
    .flat_map(|page| futures::stream::iter((0..page.len()).map(move |i| (Arc::clone(&page), i))))
    .take_until(fetcher.cancel.clone().cancelled_owned());
    let (totals_ref, numbers, tx) = (&totals, &numbers, &tx);
    records
        .map(Ok::<_, ExtractError>)
        .try_for_each_concurrent(child_concurrency, |(page, i)| async move {
            let record = &page[i];
            let (plan, include) = child.for_parent(record)?;
            let (page_tx, mut page_rx) = mpsc::channel::<Page>(1);
            let fetch = fetcher.pages(plan, page_tx, filter, None);
            let forward = async {
                while let Some(mut page) = page_rx.recv().await {
                    if !include.is_empty() {
                        let mut records = std::mem::take(&mut page.records).into_values();
                        for r in &mut records {
                            if let Some(object) = r.as_object_mut() {
                                for (column, value) in &include {
                                    let _ = object.insert(column.clone(), value.clone());
                                }
                            }
                        }
                        page.records = Records::Values(records);
                    }
                    page.number = numbers.fetch_add(1, Ordering::Relaxed) + 1;
                    // Where one parent's child paging stands says nothing about the
                    // resource: a child run resumes from its start.
                    page.resume = None;
                    if tx.send(page).await.is_err() {
                        break;
                    }
                }
                // Dropping the receiver ends the fetcher if the publisher stopped.
                drop(page_rx);
            };
            let (stats, ()) = tokio::join!(fetch, forward);
            let stats = stats.map_err(|source| ExtractError::Child {
                parent: child.parent.clone(),
                parent_id: child.parent_id(record),
                source: Box::new(source),
            })?;
            let mut totals = totals_ref.lock().unwrap_or_else(PoisonError::into_inner);
            totals.pages += stats.pages;
            totals.retries += stats.retries;
            totals.bytes += stats.bytes;
            Ok(())
        })
        .await?;
    Ok(totals.into_inner().unwrap_or_else(PoisonError::into_inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(text: &str) -> PipelineConfig {
        common::config::parse(
            &format!(
                "[client]\nbase_url = \"https://api.example.com\"\n\
                 [resource_defaults]\nprimary_key = \"id\"\n\
                 [[resources]]\nname = \"conversations\"\nendpoint = \"/c\"\n{text}"
            ),
            common::config::Format::Toml,
            "test.toml",
        )
        .unwrap()
    }

    fn child_plan(cfg: &PipelineConfig, name: &str) -> ChildPlan {
        let (index, resource) = cfg
            .resources
            .iter()
            .enumerate()
            .find(|(_, r)| r.name == name)
            .unwrap();
        let parent = cfg.resource(resource.parent.as_deref().unwrap()).unwrap();
        ChildPlan::new(
            index,
            resource,
            parent,
            from_config::endpoint_plan(index, resource).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn fills_path_and_params_from_the_parent_record() {
        let cfg = config(
            "[[resources]]\nname = \"messages\"\ninclude_from_parent = [\"id\", \"meta.topic\"]\n\
             endpoint = { path = \"/c/{resources.conversations.meta.key}/m\", \
             params = { since = \"{resources.conversations.created}\", kind = \"a/b\" } }\n",
        );
        let plan = child_plan(&cfg, "messages");
        let record = json!({
            "id": 7,
            "created": "2026-01-01T00:00:00Z",
            "meta": {"key": "a b/c?d#é", "topic": {"x": 1}},
        });
        let (request, include) = plan.for_parent(&record).unwrap();
        assert_eq!(request.path, "/c/a%20b%2Fc%3Fd%23%C3%A9/m");
        // Params are not path-escaped: the query encoder escapes them.
        assert_eq!(
            request.params,
            vec![
                ("kind".to_owned(), "a/b".to_owned()),
                ("since".to_owned(), "2026-01-01T00:00:00Z".to_owned()),
            ]
        );
        assert_eq!(
            include,
            vec![
                ("_conversations_id".to_owned(), json!(7)),
                ("_conversations_meta_topic".to_owned(), json!({"x": 1})),
            ]
        );
        // Numbers and booleans fill as text, a boolean as dlt's `str.format` writes it.
        let record = json!({"id": 8, "created": true, "meta": {"key": 12, "topic": null}});
        let (request, _) = plan.for_parent(&record).unwrap();
        assert_eq!(request.path, "/c/12/m");
        assert_eq!(request.params[1].1, "True");
    }

    #[test]
    fn resolve_param_fills_the_path() {
        let cfg = config(
            "[[resources]]\nname = \"comments\"\nendpoint = { path = \"/issues/{n}/comments\", \
             params = { n = { type = \"resolve\", resource = \"conversations\", field = \"number\" } } }\n",
        );
        let plan = child_plan(&cfg, "comments");
        let (request, include) = plan.for_parent(&json!({"id": 1, "number": 42})).unwrap();
        assert_eq!(request.path, "/issues/42/comments");
        assert!(request.params.is_empty());
        assert!(include.is_empty());
    }

    #[test]
    fn missing_or_unusable_values_name_resource_record_and_field() {
        let cfg = config(
            "[[resources]]\nname = \"messages\"\ninclude_from_parent = [\"owner\"]\n\
             endpoint = \"/c/{resources.conversations.meta.key}/m\"\n",
        );
        let plan = child_plan(&cfg, "messages");
        let cases = [
            (
                json!({"id": 3, "owner": 1, "meta": {}}),
                "resource `messages`: the `conversations` record id=3 has no `meta.key`, which \
                 the path needs",
            ),
            (
                json!({"id": "x", "owner": 1}),
                "resource `messages`: the `conversations` record id=x has no `meta.key`",
            ),
            (
                json!({"id": 4, "owner": 1, "meta": {"key": null}}),
                "the `conversations` record id=4 has null in `meta.key`, which cannot fill the \
                 path",
            ),
            (
                json!({"id": 5, "owner": 1, "meta": {"key": [1]}}),
                "record id=5 has a list in `meta.key`",
            ),
            (
                json!({"id": 6, "owner": 1, "meta": {"key": ".."}}),
                "record id=6 has `..` (it would change the path) in `meta.key`",
            ),
            (
                json!({"id": 9, "meta": {"key": "k"}}),
                "the `conversations` record id=9 has no `owner`, which the include_from_parent \
                 needs",
            ),
            (json!({"meta": {"key": {}}}), "record id=? has an object"),
        ];
        for (record, needle) in cases {
            let e = plan.for_parent(&record).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
    }

    #[test]
    fn unselected_parents_run_unpublished() {
        let cfg = config(
            "[[resources]]\nname = \"messages\"\nendpoint = \"/c/{resources.conversations.id}/m\"\n\
             [[resources]]\nname = \"reactions\"\nendpoint = \"/r/{resources.messages.id}\"\n\
             [[resources]]\nname = \"other\"\n",
        );
        let run = |names: &[&str]| -> Vec<(String, bool)> {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            with_parents(&cfg, &names)
                .unwrap()
                .into_iter()
                .map(|(r, _, publish)| (r.name.clone(), publish))
                .collect()
        };
        let owned = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect()
        };
        assert_eq!(
            run(&["reactions"]),
            owned(&[
                ("conversations", false),
                ("messages", false),
                ("reactions", true)
            ])
        );
        assert_eq!(
            run(&["messages", "conversations"]),
            owned(&[("conversations", true), ("messages", true)])
        );
        assert_eq!(run(&[]).len(), 4);
        assert!(run(&[]).iter().all(|(_, p)| *p));
    }
}

/// The client's `response_actions` hook, against a server that answers canned responses.
#[cfg(test)]
mod response_action_tests {
    use std::time::Duration;

    use common::config::{ResponseAction, ResponseActionKind};
    use common::retry::RetryPolicy;
    use reqwest::header::HeaderMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use crate::client::{Auth, FetchError, HttpClient, Method, Request, Response};

    /// Serves `answers` (status, body) in order, one per connection; returns the base URL.
    async fn serve(answers: Vec<(u16, &'static str)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let _server = tokio::spawn(async move {
            for (status, body) in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        base
    }

    async fn fetch(
        answers: Vec<(u16, &'static str)>,
        actions: Vec<ResponseAction>,
    ) -> Result<Response, FetchError> {
        let base = serve(answers).await;
        let policy = RetryPolicy {
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            jitter: false,
            ..RetryPolicy::default()
        };
        let client = HttpClient::new(
            &base,
            Auth::None,
            HeaderMap::new(),
            Duration::from_secs(5),
            policy,
        )
        .unwrap();
        let request = Request {
            method: Method::Get,
            path: "/x".into(),
            params: Vec::new(),
            json: None,
            headers: Vec::new(),
            data: None,
            response_actions: actions,
        };
        client.fetch(&request).await
    }

    fn ignore(status_code: Option<u16>, content: Option<&str>) -> ResponseAction {
        ResponseAction {
            status_code,
            content: content.map(str::to_owned),
            action: ResponseActionKind::Ignore,
        }
    }

    #[tokio::test]
    async fn ignores_matching_responses_after_the_retries() {
        // A 404 it names is an ignored (empty) response.
        let r = fetch(vec![(404, "{}")], vec![ignore(Some(404), None)])
            .await
            .unwrap();
        assert_eq!((r.ignored, r.retries), (Some(404), 0));
        assert!(r.body.is_null());

        // Retryable statuses retry first: 503, 503, then the 404.
        let r = fetch(
            vec![(503, "{}"), (503, "{}"), (404, "{}")],
            vec![ignore(Some(404), None)],
        )
        .await
        .unwrap();
        assert_eq!((r.ignored, r.retries), (Some(404), 2));

        // A retryable status it names is ignored once the retries are spent.
        let r = fetch(vec![(503, "{}"); 4], vec![ignore(Some(503), None)])
            .await
            .unwrap();
        assert_eq!((r.ignored, r.retries), (Some(503), 3));

        // By content, on a success too; both keys must match when both are set.
        let archived = r#"{"data": null, "message": "conversation archived"}"#;
        let r = fetch(vec![(200, archived)], vec![ignore(None, Some("archived"))])
            .await
            .unwrap();
        assert_eq!(r.ignored, Some(200));
        let r = fetch(
            vec![(200, archived)],
            vec![ignore(Some(404), Some("archived"))],
        )
        .await
        .unwrap();
        assert_eq!(r.ignored, None);
        assert_eq!(r.body["message"], "conversation archived");

        // Without a matching action a 404 is the error it always was.
        let e = fetch(
            vec![(404, r#"{"error":"gone"}"#)],
            vec![ignore(Some(410), None)],
        )
        .await
        .unwrap_err();
        assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");
    }
}
