#!/usr/bin/env bash
# The whole pipeline on its embedded defaults: a local broker, the bundled demo API, the
# extractor and the loader into a SQLite file; then what landed.
#
#   scripts/demo.sh                     # 10,000 records, on Tansu (SQLite storage)
#   DEMO_RECORDS=100000 scripts/demo.sh
#   DEMO_BROKER=kafka scripts/demo.sh   # on Apache Kafka instead (needs Java 17+ and Maven)
#
# The broker: Tansu, a Kafka-compatible broker in Rust, is the default because it needs
# nothing but the Rust toolchain (scripts/ensure-tansu.sh installs it with cargo); Apache
# Kafka, what the tests and users run, needs a JVM and its jars from Maven Central
# (scripts/ensure-kafka.sh). Everything lives in .demo/ (broker data, logs, config,
# destination); it is started fresh on every run and the broker and the API are stopped on
# exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/lib.sh

records="${DEMO_RECORDS:-10000}"
broker="${DEMO_BROKER:-tansu}"
broker_port="${DEMO_BROKER_PORT:-19092}"
api_port="${DEMO_API_PORT:-18080}"
export API_KEY="${API_KEY:-demo-$RANDOM$RANDOM}"

case "$broker" in
  tansu) scripts/ensure-tansu.sh ;;
  kafka) scripts/ensure-kafka.sh >/dev/null ;;
  *) echo "DEMO_BROKER=$broker: expected tansu or kafka" >&2; exit 2 ;;
esac
cargo build --release --locked --bins
bin=target/release

rm -rf .demo && mkdir -p .demo
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT


if [ "$broker" = kafka ]; then
  scripts/kafka-broker.sh .demo/kafka "$broker_port" $((broker_port + 1)) >.demo/kafka.log 2>&1 &
else
  (cd .demo && exec tansu broker --storage-engine sqlite://tansu.db \
    --listener-url "tcp://127.0.0.1:$broker_port" \
    --advertised-listener-url "tcp://127.0.0.1:$broker_port" >tansu.log 2>&1) &
fi
pids+=($!)
DEMO_API_KEY="$API_KEY" "$bin/demo-api" --listen "127.0.0.1:$api_port" --records "$records" \
  >.demo/demo-api.out 2>.demo/demo-api.log &
pids+=($!)
wait_port "$broker_port" ".demo/*.log"
wait_port "$api_port" ".demo/*.log"

seed_config communications "127.0.0.1:$broker_port" "http://127.0.0.1:$api_port" >.demo/pipeline.toml

echo "== extractor: API -> Kafka ($broker, $records records)"
"$bin/extractor" --config .demo/pipeline.toml 2>.demo/extractor.log
echo "== loader: Kafka -> SQLite (.demo/communications.db)"
"$bin/loader" --config .demo/pipeline.toml --destination sqlite://.demo/communications.db \
  --until-caught-up --show-rows 3 2>.demo/loader.log
