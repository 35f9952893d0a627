//! Shared by the extractor and the loader: the config model (a mirror of dlt's
//! `rest_api_source` dict), the record schema and its Avro forms, and the retry policy.

pub mod avro;
pub mod broker;
pub mod cli;
pub mod config;
pub mod cursor;
pub mod json;
pub mod redact;
pub mod registry;
pub mod retry;
pub mod run_markers;
pub mod schema;
pub mod secret;
pub mod telemetry;
pub mod template;
pub mod terminal;
pub mod topic;
