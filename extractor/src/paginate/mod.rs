//! Paginators with dlt's names and stop rules. Each one turns a response into the query
//! parameters of the next request, or says the resource is done. A new paginator is one
//! new file plus one arm here.

pub mod offset;

use serde_json::Value;

pub use offset::OffsetPaginator;

/// Query parameters a paginator sets on a request (added to the endpoint's `params`).
pub type PageParams = Vec<(String, String)>;

#[derive(Debug, thiserror::Error)]
pub enum PaginateError {
    #[error(
        "the response has no `{path}` (total_path), and neither stop_after_empty_page nor maximum_offset \
         can end the paging; set one of them or fix total_path"
    )]
    NoStopRule { path: String },
    #[error("total_path `{path}` found {found}, which is not a non-negative whole number")]
    BadTotal { path: String, found: String },
}

#[derive(Debug, Clone)]
pub enum Paginator {
    Offset(OffsetPaginator),
    /// dlt's `single_page`: one request, no paging.
    SinglePage,
}

impl Paginator {
    /// The parameters of the first request, or `None` when there is nothing to fetch.
    pub fn first(&self) -> Option<PageParams> {
        match self {
            Paginator::Offset(p) => p.has_first_page().then(|| p.params()),
            Paginator::SinglePage => Some(Vec::new()),
        }
    }

    /// The parameters of the next request after `response` (which held `records`
    /// records), or `None` when the resource is done.
    pub fn next(
        &mut self,
        response: &Value,
        records: usize,
    ) -> Result<Option<PageParams>, PaginateError> {
        match self {
            Paginator::Offset(p) => p.next(response, records),
            Paginator::SinglePage => Ok(None),
        }
    }
}
