//! What the config tests share: the seed config in each format, and small documents to
//! add a key to.

use super::*;

pub(super) const SEED_TOML: &str = r#"
[pipeline]
name = "communications"

[kafka]
"bootstrap.servers" = "127.0.0.1:9092"
"compression.type" = "zstd"
"linger.ms" = 5
"enable.idempotence" = true

[schema_registry]
url = "http://registry:8081"

[client]
base_url = "https://api.example.com"
auth = { type = "api_key", name = "api_key", api_key = { secret = "api_key" }, location = "query" }

[resource_defaults]
primary_key = "id"
write_disposition = "merge"

[[resources]]
name = "communications_data"
endpoint = { path = "/v1/resource", data_selector = "data", paginator = { type = "offset", limit = 100 } }
columns = { cost = { data_type = "decimal", precision = 12, scale = 4 }, id = { data_type = "bigint" } }
"#;

pub(super) const SEED_JSON: &str = r#"{
  "pipeline": {"name": "communications"},
  "kafka": {"bootstrap.servers": "127.0.0.1:9092", "compression.type": "zstd",
            "linger.ms": 5, "enable.idempotence": true},
  "schema_registry": {"url": "http://registry:8081"},
  "client": {
    "base_url": "https://api.example.com",
    "auth": {"type": "api_key", "name": "api_key", "api_key": {"secret": "api_key"},
             "location": "query"}
  },
  "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
  "resources": [{
    "name": "communications_data",
    "endpoint": {"path": "/v1/resource", "data_selector": "data",
                 "paginator": {"type": "offset", "limit": 100}},
    "columns": {"cost": {"data_type": "decimal", "precision": 12, "scale": 4},
                "id": {"data_type": "bigint"}}
  }]
}"#;

pub(super) const SEED_YAML: &str = r#"
pipeline:
  name: communications
kafka:
  bootstrap.servers: "127.0.0.1:9092"
  compression.type: zstd
  linger.ms: 5
  enable.idempotence: true
schema_registry:
  url: http://registry:8081
client:
  base_url: https://api.example.com
  auth:
    type: api_key
    name: api_key
    api_key:
      secret: api_key
    location: query
resource_defaults:
  primary_key: id
  write_disposition: merge
resources:
  - name: communications_data
    endpoint:
      path: /v1/resource
      data_selector: data
      paginator:
        type: offset
        limit: 100
    columns:
      cost: {data_type: decimal, precision: 12, scale: 4}
      id: {data_type: bigint}
"#;

pub(super) fn toml(text: &str) -> Result<PipelineConfig, ConfigError> {
    parse(text, Format::Toml, "pipeline.toml")
}

pub(super) fn err(result: Result<PipelineConfig, ConfigError>) -> String {
    match result {
        Ok(config) => panic!("expected an error, got {config:#?}"),
        Err(e) => e.to_string(),
    }
}

/// A minimal valid TOML config with `extra` appended (TOML tables after the top keys).
pub(super) fn with(extra: &str) -> String {
    format!(
        "[client]\nbase_url = \"https://api.example.com\"\n\n{extra}\n\n\
         [[resources]]\nname = \"r\"\nprimary_key = \"id\"\n"
    )
}

/// A valid config whose one resource's endpoint is `endpoint`.
pub(super) fn with_endpoint(endpoint: &str) -> String {
    format!(
        "[client]\nbase_url = \"https://api.example.com\"\n\n\
         [[resources]]\nname = \"r\"\nprimary_key = \"id\"\nendpoint = {endpoint}\n"
    )
}
