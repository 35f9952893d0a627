//! A parent and a child endpoint, for dependent resources: `GET /v1/conversations`
//! (offset/limit paging with `total`) and `GET /v1/conversations/{conversation}/messages`
//! (page numbers from 1, `per_page`, with `total_pages`), both behind the `api_key` query
//! parameter. `{conversation}` is a conversation's `id` or its `meta.key` (which holds a
//! space, a `/` and a non-ASCII letter, so a client must escape it).
//!
//! The data is a pure function of the conversation id, fixed (not moved by `/admin/state`):
//! [`CONVERSATIONS`] conversations; every 10th has no messages endpoint (404), every 11th
//! answers 200 with `{"data": null, "message": "conversation archived"}`, every 7th has no
//! messages, the others `(id * 13) % 23` (up to 22, several pages). `GET
//! /admin/conversations` lists what a client should end up with.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{
    ApiError, AppState, DEFAULT_LIMIT, DEFAULT_OFFSET, LogEntry, Params, answer, check_limit,
    param, require_query_key,
};

type QueryResult = Result<Query<Params>, QueryRejection>;

fn params_of(query: QueryResult) -> Result<Params, ApiError> {
    query.map(|Query(p)| p).map_err(|_| ApiError::BadQuery)
}

/// How many conversations there are (ids 1..=CONVERSATIONS).
pub const CONVERSATIONS: u64 = 40;
/// `per_page` when the request has none.
const DEFAULT_PER_PAGE: u64 = 5;
const TOPICS: [&str; 4] = ["billing", "support", "sales", "other"];

/// What `/v1/conversations/{id}/messages` does for conversation `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Messages {
    /// 404 `{"error": "conversation <id> not found"}`.
    NotFound,
    /// 200 `{"data": null, "message": "conversation archived"}`.
    Archived,
    /// This many messages.
    Count(u64),
}

pub fn messages_of(id: u64) -> Messages {
    if id.is_multiple_of(10) {
        Messages::NotFound
    } else if id.is_multiple_of(11) {
        Messages::Archived
    } else if id.is_multiple_of(7) {
        Messages::Count(0)
    } else {
        Messages::Count(id * 13 % 23)
    }
}

/// The `meta.key` of conversation `id`.
pub fn conversation_key(id: u64) -> String {
    format!("conv {id}/ü")
}

fn conversation_id(text: &str) -> Option<u64> {
    text.parse()
        .ok()
        .or_else(|| text.strip_prefix("conv ")?.strip_suffix("/ü")?.parse().ok())
}

pub fn conversation(id: u64) -> Value {
    json!({
        "id": id,
        "subject": format!("Conversation {id}: ¿qué tal?"),
        "created_at": format!("2026-02-{:02}T{:02}:00:00Z", id % 28 + 1, id % 24),
        "meta": {
            "key": conversation_key(id),
            "topic": TOPICS[usize::try_from(id % 4).unwrap_or_default()],
        },
    })
}

/// Message `seq` (0-based) of conversation `id`.
pub fn message(id: u64, seq: u64) -> Value {
    json!({
        "id": id * 1000 + seq,
        "seq": seq,
        "author": if seq.is_multiple_of(2) { "customer" } else { "agent" },
        "text": format!("message {seq} of conversation {id} 🚀"),
        "sent_at": format!("2026-03-{:02}T00:{:02}:00Z", id % 28 + 1, seq % 60),
    })
}

/// `GET /v1/conversations?offset=N&limit=M` → `{"data", "total"}`.
pub(crate) async fn list(State(state): State<AppState>, query: QueryResult) -> Response {
    let params = params_of(query);
    let window = params.as_ref().ok().and_then(|p| {
        Some((
            param(p, "offset", DEFAULT_OFFSET).ok()?,
            param(p, "limit", DEFAULT_LIMIT).ok()?,
        ))
    });
    let entry = LogEntry {
        endpoint: Some("/v1/conversations"),
        offset: window.map(|w| w.0),
        limit: window.map(|w| w.1),
        status: 0,
        since: None,
    };
    answer(&state, entry, || {
        let params = params?;
        require_query_key(&state, &params)?;
        let offset = param(&params, "offset", DEFAULT_OFFSET)?;
        let limit = param(&params, "limit", DEFAULT_LIMIT)?;
        check_limit(&state.settings(), limit)?;
        let first = offset.saturating_add(1);
        let last = offset.saturating_add(limit).min(CONVERSATIONS);
        let data: Vec<Value> = (first..=last).map(conversation).collect();
        Ok(Json(json!({ "data": data, "total": CONVERSATIONS })).into_response())
    })
    .await
}

/// `GET /v1/conversations/{conversation}/messages?page=N&per_page=M` →
/// `{"data", "page", "total_pages"}`; logged with the page's first message as `offset`.
pub(crate) async fn messages(
    State(state): State<AppState>,
    Path(conversation): Path<String>,
    query: QueryResult,
) -> Response {
    let params = params_of(query);
    let window = params.as_ref().ok().and_then(|p| {
        let page = param(p, "page", 1).ok()?;
        let per_page = param(p, "per_page", DEFAULT_PER_PAGE).ok()?;
        Some((page.saturating_sub(1).saturating_mul(per_page), per_page))
    });
    let entry = LogEntry {
        endpoint: Some("/v1/conversations/{conversation}/messages"),
        offset: window.map(|w| w.0),
        limit: window.map(|w| w.1),
        status: 0,
        since: None,
    };
    answer(&state, entry, || {
        let params = params?;
        require_query_key(&state, &params)?;
        let page = param(&params, "page", 1)?;
        let per_page = param(&params, "per_page", DEFAULT_PER_PAGE)?;
        if page == 0 || per_page == 0 {
            return Err(ApiError::BadParam("page and per_page count from 1".into()));
        }
        check_limit(&state.settings(), per_page)?;
        let found = conversation_id(&conversation).filter(|id| (1..=CONVERSATIONS).contains(id));
        let Some(id) = found else {
            return Ok(not_found(&conversation));
        };
        let count = match messages_of(id) {
            Messages::NotFound => return Ok(not_found(&conversation)),
            Messages::Archived => {
                return Ok(
                    Json(json!({ "data": null, "message": "conversation archived" }))
                        .into_response(),
                );
            }
            Messages::Count(n) => n,
        };
        let first = (page - 1).saturating_mul(per_page);
        let end = first.saturating_add(per_page).min(count);
        let data: Vec<Value> = (first..end).map(|seq| message(id, seq)).collect();
        Ok(Json(json!({
            "data": data,
            "page": page,
            "total_pages": count.div_ceil(per_page),
        }))
        .into_response())
    })
    .await
}

fn not_found(conversation: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": format!("conversation {conversation} not found") })),
    )
        .into_response()
}

/// `GET /admin/conversations` → `{"conversations", "messages", "not_found", "archived"}`:
/// every conversation, every message a client gets (each with its `conversation_id`), and
/// the ids of the conversations whose messages answer 404 or "archived".
pub(crate) async fn admin() -> Json<Value> {
    let mut messages = Vec::new();
    let mut not_found = Vec::new();
    let mut archived = Vec::new();
    for id in 1..=CONVERSATIONS {
        match messages_of(id) {
            Messages::NotFound => not_found.push(id),
            Messages::Archived => archived.push(id),
            Messages::Count(n) => {
                messages.extend((0..n).map(|seq| {
                    let mut m = message(id, seq);
                    m["conversation_id"] = json!(id);
                    m
                }));
            }
        }
    }
    let conversations: Vec<Value> = (1..=CONVERSATIONS).map(conversation).collect();
    Json(json!({
        "conversations": conversations,
        "messages": messages,
        "not_found": not_found,
        "archived": archived,
    }))
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;
    use crate::{Settings, serve};

    const KEY: &str = "conv-key-123";

    /// The demo API on a free port; its base URL.
    async fn start() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(KEY.parse().unwrap(), Settings::default());
        drop(tokio::spawn(serve(listener, state, std::future::pending())));
        format!("http://{addr}")
    }

    async fn get(url: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(url)
            .query(query)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    #[tokio::test]
    async fn endpoints_page_the_admin_truth_behind_the_key() {
        let base = start().await;
        let truth = get(&format!("{base}/admin/conversations"), &[]).await.1;

        // Conversations, offset-paged with the total.
        let mut conversations = Vec::new();
        for offset in ["0", "15", "30"] {
            let (status, page) = get(
                &format!("{base}/v1/conversations"),
                &[("api_key", KEY), ("offset", offset), ("limit", "15")],
            )
            .await;
            assert_eq!((status, &page["total"]), (200, &json!(CONVERSATIONS)));
            conversations.extend(page["data"].as_array().unwrap().iter().cloned());
        }
        assert_eq!(json!(conversations), truth["conversations"]);

        // Every conversation's messages, by id or by its (escaped) key, page by page.
        let mut messages = Vec::new();
        for c in &conversations {
            let id = c["id"].as_u64().unwrap();
            let key = c["meta"]["key"].as_str().unwrap();
            let segment = if id % 2 == 0 {
                id.to_string()
            } else {
                key.replace(' ', "%20")
                    .replace('/', "%2F")
                    .replace('ü', "%C3%BC")
            };
            let url = format!("{base}/v1/conversations/{segment}/messages");
            let mut page = 1;
            loop {
                let p = page.to_string();
                let (status, body) =
                    get(&url, &[("api_key", KEY), ("page", &p), ("per_page", "3")]).await;
                match messages_of(id) {
                    Messages::NotFound => assert_eq!(status, 404, "{id}"),
                    Messages::Archived => {
                        assert_eq!(
                            (status, &body["message"]),
                            (200, &json!("conversation archived"))
                        );
                    }
                    Messages::Count(_) => assert_eq!(status, 200, "{id}"),
                }
                let data = body["data"].as_array().cloned().unwrap_or_default();
                messages.extend(data.into_iter().map(|mut m| {
                    m["conversation_id"] = json!(id);
                    m
                }));
                if status != 200 || page >= body["total_pages"].as_u64().unwrap_or(0) {
                    break;
                }
                page += 1;
            }
        }
        assert_eq!(json!(messages), truth["messages"]);
        assert_eq!(truth["not_found"], json!([10, 20, 30, 40]));
        assert_eq!(truth["archived"], json!([11, 22, 33]));

        // The key is required; bad pages and unknown conversations are refused.
        let messages_url = format!("{base}/v1/conversations/1/messages");
        assert_eq!(get(&messages_url, &[]).await.0, 401);
        assert_eq!(
            get(&format!("{base}/v1/conversations"), &[("api_key", "x")])
                .await
                .0,
            401
        );
        assert_eq!(
            get(&messages_url, &[("api_key", KEY), ("page", "0")])
                .await
                .0,
            400
        );
        let unknown = format!("{base}/v1/conversations/41/messages");
        assert_eq!(get(&unknown, &[("api_key", KEY)]).await.0, 404);
    }

    #[test]
    fn every_kind_of_conversation_occurs() {
        let kinds: Vec<Messages> = (1..=CONVERSATIONS).map(messages_of).collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == Messages::NotFound).count(),
            4
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == Messages::Archived).count(),
            3
        );
        assert!(kinds.contains(&Messages::Count(0)));
        // Some conversations span several pages of the default size.
        assert!(
            kinds
                .iter()
                .any(|k| matches!(k, Messages::Count(n) if *n > 2 * DEFAULT_PER_PAGE))
        );
    }

    #[test]
    fn keys_and_ids_name_the_same_conversation() {
        for id in [1, 9, 40] {
            assert_eq!(conversation_id(&conversation_key(id)), Some(id));
            assert_eq!(conversation_id(&id.to_string()), Some(id));
        }
        assert_eq!(conversation_id("conv 3"), None);
        assert_eq!(conversation(2)["meta"]["key"], "conv 2/ü");
    }
}
