//! dlt's `header_cursor` paginator: the cursor is the response header `cursor_key`
//! (default `next`) and goes back as the query parameter `cursor_param` (default `cursor`).
//! It stops when the header is missing or empty.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::{NextRequest, PaginateError, Progress, checkpoint_text};

#[derive(Debug, Clone)]
pub struct HeaderCursorPaginator {
    pub cursor_key: String,
    pub cursor_param: String,
    pub progress: Progress,
}

impl HeaderCursorPaginator {
    pub fn new(cursor_key: String, cursor_param: String) -> Self {
        Self {
            cursor_key,
            cursor_param,
            progress: Progress::default(),
        }
    }

    pub fn next(&mut self, headers: &HeaderMap) -> Result<Option<NextRequest>, PaginateError> {
        let cursor = headers
            .get(self.cursor_key.as_str())
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
            .filter(|v| !v.is_empty());
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        self.progress.advance("header_cursor", "cursor", &cursor)?;
        Ok(Some(NextRequest::Params(vec![(
            self.cursor_param.clone(),
            cursor,
        )])))
    }

    /// The checkpoint: the cursor of the next request (`None` before the first response).
    pub fn checkpoint(&self) -> Option<Value> {
        self.progress.last().map(|c| json!({ "cursor": c }))
    }

    /// The request for a checkpoint's cursor; `None` when it has none.
    pub fn resume(&mut self, checkpoint: &Value) -> Option<NextRequest> {
        let cursor = checkpoint_text(checkpoint, "cursor")?;
        self.progress.restore(cursor);
        Some(NextRequest::Params(vec![(
            self.cursor_param.clone(),
            cursor.to_owned(),
        )]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            let _ = h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn follows_the_header_and_stops_without_it() {
        let mut p = HeaderCursorPaginator::new("X-Next-Cursor".into(), "cursor".into());
        assert_eq!(
            p.next(&headers(&[("x-next-cursor", "c1")])).unwrap(),
            Some(NextRequest::Params(vec![("cursor".into(), "c1".into())]))
        );
        assert_eq!(p.next(&headers(&[("x-next-cursor", "")])).unwrap(), None);
        assert_eq!(p.next(&headers(&[])).unwrap(), None);
    }

    #[test]
    fn checkpoint_and_resume() {
        let mut p = HeaderCursorPaginator::new("next".into(), "c".into());
        assert_eq!(p.checkpoint(), None);
        let next = p.next(&headers(&[("next", "c1")])).unwrap();
        let checkpoint = p.checkpoint().unwrap();
        let mut resumed = HeaderCursorPaginator::new("next".into(), "c".into());
        assert_eq!(resumed.resume(&checkpoint), next);
        assert!(resumed.next(&headers(&[("next", "c1")])).is_err());
        assert_eq!(resumed.resume(&json!({})), None);
    }

    #[test]
    fn the_same_cursor_twice_is_an_error() {
        let mut p = HeaderCursorPaginator::new("next".into(), "c".into());
        let _ = p.next(&headers(&[("next", "c1")])).unwrap();
        let e = p.next(&headers(&[("next", "c1")])).unwrap_err();
        assert!(e.to_string().contains("same cursor `c1` twice"), "{e}");
    }
}
