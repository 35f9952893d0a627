//! A page's records as the fetcher hands them on: read flat from the page's body (a
//! [`Tape`], the usual case, without a `serde_json::Value` tree), or as `Value`s where a
//! stage needs them as values (an incremental filter, a parent's records for its
//! children, `include_from_parent` columns, a full JSONPath `data_selector`).

use common::json::tape::Tape;
use common::json::view::JsonView;
use common::schema::{PageRows, SchemaBuilder, SchemaError};
use serde_json::Value;

use crate::paginate::RepeatGuard;

pub(crate) enum Records {
    Values(Vec<Value>),
    /// The records are the nodes `ids` of `tape` (the page's whole body).
    Flat {
        tape: Tape,
        ids: Vec<u32>,
    },
}

impl Default for Records {
    fn default() -> Self {
        Records::Values(Vec::new())
    }
}

impl Records {
    pub(crate) fn len(&self) -> usize {
        match self {
            Records::Values(values) => values.len(),
            Records::Flat { ids, .. } => ids.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records as `Value`s.
    pub(crate) fn into_values(self) -> Vec<Value> {
        match self {
            Records::Values(values) => values,
            Records::Flat { .. } => self.to_values(),
        }
    }

    /// A copy of the records as `Value`s.
    pub(crate) fn to_values(&self) -> Vec<Value> {
        match self {
            Records::Values(values) => values.clone(),
            Records::Flat { tape, ids } => ids.iter().map(|&id| tape.at(id).to_value()).collect(),
        }
    }

    /// Whether the records repeat the last non-empty page's ([`RepeatGuard::repeats`]).
    pub(crate) fn repeat(&self, guard: &mut RepeatGuard, primary_key: &[String]) -> bool {
        match self {
            Records::Values(values) => guard.repeats(values, primary_key),
            Records::Flat { tape, ids } => guard.repeats_of(
                &ids.iter().map(|&id| tape.at(id)).collect::<Vec<_>>(),
                primary_key,
            ),
        }
    }

    /// The records added to `builder` ([`SchemaBuilder::add_records`]).
    pub(crate) fn add_to(&self, builder: &mut SchemaBuilder) -> Result<PageRows, SchemaError> {
        match self {
            Records::Values(values) => builder.add_page(values),
            Records::Flat { tape, ids } => {
                builder.add_records(&ids.iter().map(|&id| tape.at(id)).collect::<Vec<_>>())
            }
        }
    }
}
