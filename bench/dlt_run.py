"""dlt's rest_api source on the seed's config, against the demo API, into SQLite.

Usage: python dlt_run.py BASE_URL DB_PATH PIPELINES_DIR   (API key in env API_KEY)
Prints: dlt rows=N seconds=S
"""
import os
import sys
import time

import dlt
from dlt.sources.rest_api import rest_api_source

base_url, db_path, pipelines_dir = sys.argv[1], sys.argv[2], sys.argv[3]
source = rest_api_source(
    {
        "client": {
            "base_url": base_url,
            "auth": {
                "type": "api_key",
                "name": "api_key",
                "api_key": os.environ["API_KEY"],
                "location": "query",
            },
        },
        "resource_defaults": {"primary_key": "id", "write_disposition": "merge"},
        "resources": [
            {
                "name": "communications_data",
                "endpoint": {
                    "path": "/v1/resource",
                    "data_selector": "data",
                    "paginator": {"type": "offset", "limit": 100, "total_path": "total"},
                },
            }
        ],
    }
)
pipeline = dlt.pipeline(
    pipeline_name="bench_dlt",
    destination=dlt.destinations.sqlalchemy(f"sqlite:///{db_path}"),
    dataset_name="main",
    pipelines_dir=pipelines_dir,
)
started = time.time()
pipeline.run(source)
print(f"dlt seconds={time.time() - started:.3f}")
