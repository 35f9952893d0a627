"""dlt's own rest_api source on one of the project's config files, for the differential test
(tests/tests/dlt_parity.rs): the same dict dlt's `rest_api_source({...})` takes, read from
the TOML file, run by dlt 1.31 into a SQLite file through its SQLAlchemy destination (as
bench/dlt_run.py does), then dlt's view of what it loaded written as JSON.

Usage:
  python run_dlt.py --config FILE --base-url URL --db PATH --pipelines-dir DIR \
      --name PIPELINE --out FILE

`http://demo-api` at the start of any string of the config (base_url, an OAuth2 token URL)
is replaced by URL. Secrets (`{ secret = "name" }`) are read as the project reads them:
the environment variable NAME (upper case), then SOURCES__NAME. The pipelines dir keeps
dlt's state between runs, so a second call with the same arguments is dlt's second run.

The output JSON:
  {"state": {resource: {cursor_path: last_value}},   # dlt's incremental state
   "tables": {table: {"parent": table | null,
                      "columns": {column: {"data_type", "nullable", "primary_key"}}}},
   "primary_keys": {table: [column, ...]}}           # as the config orders them
"""

import argparse
import datetime
import json
import os
import sys
import tomllib

import dlt
from dlt.sources.rest_api import rest_api_source

# The project's own keys, which dlt does not know (docs/config.md marks them "ours"); they
# are dropped before the dict reaches dlt. Top level: the Kafka and registry sections.
PROJECT_TOP = ("pipeline", "kafka", "schema_registry")
# `client`: its HTTP timeout, retry policy, rate limit, page cap and trusted link hosts.
PROJECT_CLIENT = ("timeout", "retry", "max_requests_per_second", "max_pages", "trusted_hosts")
# A resource (or resource_defaults): its Kafka topic.
PROJECT_RESOURCE = ("topic",)
# An endpoint: whether `null` at the data selector is an empty page (dlt's behaviour anyway).
PROJECT_ENDPOINT = ("allow_null_data",)
# The demo API's address in the config files.
PLACEHOLDER_URL = "http://demo-api"


def secret(name):
    for var in (name.upper(), "SOURCES__" + name.upper()):
        if var in os.environ:
            return os.environ[var]
    sys.exit(f"run_dlt: the secret `{name}` is in neither {name.upper()} nor SOURCES__{name.upper()}")


def resolve(value, base_url):
    """Secrets filled in, the demo API's address set, TOML datetimes as their text."""
    if isinstance(value, dict):
        if set(value) == {"secret"}:
            return secret(value["secret"])
        return {k: resolve(v, base_url) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, base_url) for v in value]
    if isinstance(value, str) and value.startswith(PLACEHOLDER_URL):
        return base_url + value[len(PLACEHOLDER_URL):]
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    return value


def drop(table, keys):
    if isinstance(table, dict):
        for key in keys:
            table.pop(key, None)


def dlt_config(doc, base_url):
    doc = resolve(doc, base_url)
    for key in PROJECT_TOP:
        doc.pop(key, None)
    drop(doc.get("client"), PROJECT_CLIENT)
    resources = list(doc.get("resources", []))
    defaults = doc.get("resource_defaults")
    for resource in resources + ([defaults] if defaults else []):
        if isinstance(resource, dict):
            drop(resource, PROJECT_RESOURCE)
            drop(resource.get("endpoint"), PROJECT_ENDPOINT)
    return doc


def incremental_state(pipeline, source_name):
    """{resource: {cursor_path: last_value}} from the pipeline's state."""
    sources = pipeline.state.get("sources", {})
    resources = sources.get(source_name, {}).get("resources", {})
    out = {}
    for resource, state in resources.items():
        cursors = state.get("incremental", {})
        if cursors:
            out[resource] = {path: c.get("last_value") for path, c in cursors.items()}
    return out


def primary_keys(doc):
    """{table: [primary key columns]} in the config's order (dlt's schema marks the columns
    but keeps no order, which a composite key's text needs)."""
    defaults = doc.get("resource_defaults") or {}
    out = {}
    for resource in doc.get("resources", []):
        if not isinstance(resource, dict):
            continue
        key = resource.get("primary_key", defaults.get("primary_key"))
        if key:
            table = resource.get("table_name", resource["name"])
            out[table] = [key] if isinstance(key, str) else list(key)
    return out


def tables(pipeline):
    schema = pipeline.default_schema
    out = {}
    for name, table in schema.tables.items():
        if name.startswith("_dlt_"):
            continue
        columns = {
            column: {
                "data_type": info.get("data_type"),
                "nullable": info.get("nullable", True),
                "primary_key": bool(info.get("primary_key", False)),
            }
            for column, info in table.get("columns", {}).items()
        }
        out[name] = {"parent": table.get("parent"), "columns": columns}
    return out


def main():
    parser = argparse.ArgumentParser()
    for flag in ("--config", "--base-url", "--db", "--pipelines-dir", "--name", "--out"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args()
    with open(args.config, "rb") as f:
        doc = tomllib.load(f)
    source = rest_api_source(dlt_config(doc, args.base_url))
    pipeline = dlt.pipeline(
        pipeline_name=args.name,
        destination=dlt.destinations.sqlalchemy(f"sqlite:///{args.db}"),
        dataset_name="main",
        pipelines_dir=args.pipelines_dir,
    )
    try:
        pipeline.run(source)
    except Exception as e:  # the root cause, short, for the test's report
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        sys.exit(f"run_dlt: dlt failed: {type(cause).__name__}: {cause}")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(
            {
                "state": incremental_state(pipeline, source.name),
                "tables": tables(pipeline),
                "primary_keys": primary_keys(doc),
            },
            f,
            indent=1,
            default=str,
        )


if __name__ == "__main__":
    main()
