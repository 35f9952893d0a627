#!/usr/bin/env bash
# The whole test suite. Installs or starts what it needs, skipping what is already there:
# the Tansu broker (cargo install), Apache Kafka's jars (Maven Central), a PostgreSQL
# server on 127.0.0.1:5432. Then: formatting, the binaries, every crate's unit tests and
# every end-to-end test on Apache Kafka, and the Tansu subset below on Tansu. The
# end-to-end tests start their own broker, demo API and binaries on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
threads="${TEST_THREADS:-2}"

# The embedded default's honest subset: the seed pipeline, loader kill -9 (once and 20
# times), replay (from a point, and from a time after the last record), three loaders
# scaling through a kill and a join, a stalled group, a broker restart mid-run, and a
# 10 MiB record (which Tansu never delivers: the loader must say so).
tansu_tests=(seed_pipeline loader_delivery stalled_group kafka_behaviour hostile)
tansu_subset=(
  seed_pipeline_end_to_end_then_merge_rerun
  loader_killed_mid_topic_resumes_without_loss_or_duplicates
  twenty_kills_during_one_load_lose_and_duplicate_nothing_sqlite
  replays_rebuild_from_a_point_and_a_version_column_keeps_newer_rows
  three_postgres_loaders_share_six_partitions_through_a_kill_and_a_join
  a_killed_loaders_partitions_are_handed_over_or_the_stall_is_visible
  a_replay_from_a_time_after_the_last_record_reads_nothing
  a_broker_restart_mid_run_loses_nothing_and_the_producer_duplicates_nothing
  a_10_mib_record_loads_whole_once_message_max_bytes_is_raised
)

section() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
section "installs and servers"
scripts/ensure-tansu.sh
scripts/ensure-kafka.sh >/dev/null
scripts/ensure-registry.sh >/dev/null
scripts/ensure-pytools.sh >/dev/null  # tests/tests/interop.rs: confluent-kafka (Python)
scripts/ensure-avro.sh >/dev/null     # tests/tests/interop.rs: Apache Avro (Java)
scripts/ensure-dlt.sh >/dev/null      # tests/tests/dlt_parity.rs: dlt 1.31 (Python)
scripts/ensure-postgres.sh
# The server is there now: a PostgreSQL test that cannot reach it fails, never skips.
export TEST_POSTGRES_REQUIRED=1

section "format and build"
cargo fmt --all --check
cargo build --workspace --bins --locked

section "every test, end-to-end tests on Apache Kafka"
TEST_BROKER=kafka cargo test --workspace --locked -- --test-threads "$threads"

section "the Tansu subset"
TEST_BROKER=tansu cargo test --workspace --locked "${tansu_tests[@]/#/--test=}" \
  -- --exact "${tansu_subset[@]}" --test-threads "$threads"
section "done"
