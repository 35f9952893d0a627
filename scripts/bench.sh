#!/usr/bin/env bash
# The benchmark suite, side by side in one invocation, on the demo API and a local broker
# (Apache Kafka by default, one KRaft node from scripts/kafka-broker.sh; `--broker tansu`
# for the embedded default, Tansu with SQLite storage), release build:
#   1. end to end, 100k records, limit 100, no latency: first load (the extractor also
#      with --no-transactions, to show what transactions cost; case 4's 1M prefill too)
#   2. the same, merge re-run with 10% of the records changed
#   3. 20k records with 20 ms latency per request
#   4. loader alone: replay a pre-filled topic of 1M records into a fresh SQLite file, and
#      into PostgreSQL (TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test);
#      beside it `bare-load`, the same records sent as JSON (untimed) and read back by
#      bench-floor e2e-load alone (partitions in turns, serde, the same SQLite writes)
#   5. floors: a bare fetch of case 1's API and of case 3's (every page, 8 at a time: the
#      ceiling of any extractor of it on this machine); the extractor's own work per record
#      without network or broker (bench-encode: parse, infer, Avro-encode case 1's records
#      on one thread); bare rdkafka producer / consumer of 1M messages of the records' size (the
#      broker's ceiling for the clients the binaries use), on Kafka also Kafka's own
#      kafka-producer-perf-test / kafka-consumer-perf-test (ProducerPerformance,
#      ConsumerPerformance from the same jars as the broker), and a bare rusqlite upsert of
#      1M rows, with `tags` as a JSON column and as child rows (`--children`, the loader's
#      shape), the latter also in partition-by-partition order (`--partitions 6`)
#   6. the Kafka Connect peer (PostgreSQL reachable; skip with --no-connect): a standalone
#      Kafka Connect worker (connect-runtime, the broker's jars) with Debezium's JDBC sink
#      (scripts/ensure-connect.sh; upsert, primary key `id` from the value) loads 100k and
#      1M records from a topic of JSON with schemas (Kafka's JsonConverter; `sender`
#      flattened by the Flatten SMT, `tags` as JSON text), beside the loader replaying the
#      same records from its Avro topic with max_table_nesting = 0 (tags as a JSON column,
#      the same table shape). The worker is timed from its start (JVM and plugin scan
#      included) and, as `steady`, from its first row to its last.
#   Cases 1-3 run stage by stage (extractor, then loader) and again as `pipeline`: both
#   started together on a fresh pipeline, timed until the loader's /metrics counts them all.
#   Beside each pipeline, the broker's and the demo API's CPU over the same time
#   (`pipeline-broker`, `pipeline-api`; their peak_MB is the process's since it started),
#   and the broker's under the bare producer and consumer of case 5 (`producer-broker`,
#   `consumer-broker`) and under bare producers sending 100k at the rate case 1 needs for
#   15x dlt (without --dlt, case 1's extractor rate), transactional as the extractor is
#   and idempotent (`producer-txn-at-rate-broker`, `producer-at-rate-broker`), and under
#   that transactional producer with a bare consumer reading beside it
#   (`bare-pipeline-broker`); the same bare pipeline also runs right after case 1's
#   pipeline at the rate it reached, so the broker is compared in the same state, and
#   with --dlt at the rate 15x dlt needs (`bare-pipeline-at-target-broker`), and as fast
#   as it goes (`bare-pipeline-unpaced`: the wall time of case 1's Kafka part alone).
#   Case 1 also runs with nothing of the project's own in it (`bare-e2e`: bench-floor's
#   e2e-extract and e2e-load side by side: the API fetched, pages parsed by serde, records
#   sent as JSON through a transactional producer, read read_committed and upserted into
#   SQLite with the same child rows), right after case 1's pipeline; case 3 too, on an API
#   of 20 ms per request.
#   dlt's rest_api source on cases 1-3 with --dlt (installs dlt 1.31 into .bench/venv;
#   its case 1 runs before the pipelines, the others after everything else);
#   --dlt-records N runs dlt's cases 1-2 at N records (its merge re-run is slow).
#
#   scripts/bench.sh [--quick] [--broker kafka|tansu] [--dlt] [--dlt-records N] [--no-connect]
#
# BENCH_MAX_TABLE_NESTING=0 keeps lists (the demo's `tags`) as JSON columns instead of the
# `communications_data__tags` child table (to compare the two).
# --quick divides the record counts by 10. Prints the machine, date, commit and broker,
# then a table: wall seconds, rows/s, CPU seconds per 100k rows and peak RSS per stage and
# case. Everything lives in .bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/lib.sh

scale=1; with_dlt=0; dlt_records=""; broker=kafka; with_connect=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) scale=10 ;;
    --dlt) with_dlt=1 ;;
    --dlt-records) dlt_records="$2"; shift ;;
    --broker) broker="$2"; shift ;;
    --no-connect) with_connect=0 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
  shift
done
n1=$((100000 / scale)); n3=$((20000 / scale)); n4=$((1000000 / scale))
dlt_records="${dlt_records:-$n1}"

case "$broker" in
  kafka) kafka_libs=$(scripts/ensure-kafka.sh) ;;
  tansu) scripts/ensure-tansu.sh ;;
  *) echo "--broker kafka or tansu, not $broker" >&2; exit 2 ;;
esac
cargo build --release --locked --bins
load_start=$(cut -d" " -f1-3 /proc/loadavg)
bin=target/release
run=.bench/run
rm -rf "$run" && mkdir -p "$run"
export API_KEY="bench-$RANDOM$RANDOM"
broker_port="${BENCH_BROKER_PORT:-19192}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

if [ "$broker" = kafka ]; then
  scripts/kafka-broker.sh "$run/kafka" "$broker_port" "$((broker_port + 1))" >"$run/kafka.log" 2>&1 &
else
  (cd "$run" && exec tansu broker --storage-engine sqlite://tansu.db \
    --listener-url "tcp://127.0.0.1:$broker_port" \
    --advertised-listener-url "tcp://127.0.0.1:$broker_port" >tansu.log 2>&1) &
fi
pids+=($!)
broker_pid=$!
wait_port "$broker_port"

api_port=0
start_api() { # records latency_ms
  api_port=$(free_port 18100 800)
  DEMO_API_KEY="$API_KEY" "$bin/demo-api" --listen "127.0.0.1:$api_port" --records "$1" \
    --latency-ms "$2" >"$run/api-$api_port.out" 2>"$run/api-$api_port.log" &
  pids+=($!)
  api_pid=$!
  wait_port "$api_port" "$run/api-$api_port.log"
  # The port answering must be this API's (not one started before on the same port).
  if ! kill -0 "$api_pid" 2>/dev/null; then
    echo "the demo API did not start; see $run/api-$api_port.log" >&2
    exit 1
  fi
}

config() { # name base_url
  seed_config "$1" "127.0.0.1:$broker_port" "$2" "$1.communications_data" \
    "${BENCH_MAX_TABLE_NESTING:+max_table_nesting = $BENCH_MAX_TABLE_NESTING}" >"$run/$1.toml"
}

results="$run/results.tsv"
: >"$results"
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# jit_ticks PID: the CPU ticks of the JVM's JIT compiler threads (C1, C2) in process PID;
# 0 for a process without them (Tansu, the demo API).
jit_ticks() {
  local t name sum=0
  for t in /proc/"$1"/task/*; do
    { read -r name <"$t/comm"; } 2>/dev/null || continue
    case "$name" in
      "C1 CompilerThre"* | "C2 CompilerThre"*)
        sum=$((sum + $(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null || echo 0))) ;;
    esac
  done
  echo "$sum"
}
# broker_ticks: the broker's CPU ticks and those of its JIT compiler threads, as TOTAL:JIT.
# A broker that has run for a while has compiled its hot code; a fresh one compiles while
# it serves the first runs (on a 2-core machine, up to two thirds of the broker's CPU
# in the bench's first pipelines), so the JIT's share is shown apart (`STAGE-jit` rows).
broker_ticks() { echo "$(cpu_ticks "$broker_pid"):$(jit_ticks "$broker_pid")"; }
# other CASE STAGE ROWS PID TICKS0 T0: a row for another process (the broker, the demo API)
# over what ran since T0: its CPU since it had TICKS0, peak_MB its peak since it started.
# TICKS0 from broker_ticks (TOTAL:JIT) adds a row STAGE-jit: the JIT compiler threads' CPU
# over the same time (included in STAGE's).
other() {
  local wall
  wall=$(awk -v a="$6" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$wall" \
    "$(awk -v a="${5%%:*}" -v b="$(cpu_ticks "$4")" -v t="$tck" 'BEGIN { print (b - a) / t }')" \
    "$(awk '/^VmHWM/ { print $2 }' "/proc/$4/status")" >>"$results"
  if [[ "$5" == *:* ]]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2-jit" "$3" "$wall" \
      "$(awk -v a="${5#*:}" -v b="$(jit_ticks "$4")" -v t="$tck" 'BEGIN { d = (b - a) / t; print (d > 0 ? d : 0) }')" \
      0 >>"$results"
  fi
}
# measure CASE STAGE ROWS command...: runs it under /usr/bin/time, records the figures.
measure() {
  local case="$1" stage="$2" rows="$3"; shift 3
  local t="$run/time.$$"
  if ! /usr/bin/time -f "%e %U %S %M" -o "$t" "$@" >"$run/$case-$stage.out" 2>"$run/$case-$stage.log"; then
    echo "$case $stage failed; see $run/$case-$stage.log" >&2
    tail -5 "$run/$case-$stage.log" >&2
    printf '%s\t%s\t%s\tFAILED\n' "$case" "$stage" "$rows" >>"$results"
    return 0
  fi
  read -r wall user sys rss <"$t"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$stage" "$rows" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$rss" >>"$results"
}

pg_url="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

# loaded RECORDS: the loader's own count of records written (its /metrics on port $1).
loaded() {
  curl -s "http://127.0.0.1:$1/metrics" | awk '/^loader_records_total/ { n += $NF } END { print n + 0 }'
}

# pipeline CASE ROWS CONFIG DB: the extractor and the loader started together, as a
# deployment runs them. Wall time runs from the start until the loader has written ROWS
# records (read from its /metrics); CPU is both processes', peak_MB the larger of the two.
pipeline() {
  local case="$1" rows="$2" cfg="$3" db="$4" mport
  mport=$(free_port 19500 400)
  local tl="$run/time.loader.$$" te="$run/time.extractor.$$" t0 t1 lpid b0 a0
  b0=$(broker_ticks); a0=$(cpu_ticks "$api_pid")
  t0=$(date +%s.%N)
  /usr/bin/time -f "%e %U %S %M" -o "$tl" "$bin/loader" --config "$cfg" --destination "sqlite://$db" \
    --metrics-addr "127.0.0.1:$mport" >"$run/$case-pipeline-loader.out" 2>"$run/$case-pipeline-loader.log" &
  lpid=$!
  if ! /usr/bin/time -f "%e %U %S %M" -o "$te" "$bin/extractor" --config "$cfg" \
    >"$run/$case-pipeline-extractor.out" 2>"$run/$case-pipeline-extractor.log"; then
    echo "$case pipeline: the extractor failed; see $run/$case-pipeline-extractor.log" >&2
    pkill -TERM -P "$lpid" || true; wait "$lpid" || true
    printf '%s\t%s\t%s\tFAILED\n' "$case" pipeline "$rows" >>"$results"
    return 0
  fi
  local deadline=$((SECONDS + 300))
  while [ "$(loaded "$mport")" -lt "$rows" ]; do
    if [ $SECONDS -gt $deadline ] || ! kill -0 "$lpid" 2>/dev/null; then
      echo "$case pipeline: the loader did not write $rows records; see $run/$case-pipeline-loader.log" >&2
      pkill -TERM -P "$lpid" || true; wait "$lpid" || true
      printf '%s\t%s\t%s\tFAILED\n' "$case" pipeline "$rows" >>"$results"
      return 0
    fi
    sleep 0.02
  done
  t1=$(date +%s.%N)
  other "$case" pipeline-broker "$rows" "$broker_pid" "$b0" "$t0"
  other "$case" pipeline-api "$rows" "$api_pid" "$a0" "$t0"
  pkill -TERM -P "$lpid" || true
  wait "$lpid" || true
  local ew eu es em lw lu ls lm
  read -r ew eu es em <"$te"
  read -r lw lu ls lm <"$tl"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" pipeline "$rows" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
    "$(awk -v a="$eu" -v b="$es" -v c="$lu" -v d="$ls" 'BEGIN { print a + b + c + d }')" \
    "$((em > lm ? em : lm))" >>"$results"
}

# bare_pipeline CASE RATE SIZE TOPIC [STAGE]: the broker's CPU under a bare pipeline of n1
# messages of SIZE bytes: a transactional producer as the extractor's (bench-floor's
# --commit-ms 100) sending no faster than RATE a second (an empty RATE: as fast as it
# can) and, beside it, a bare consumer
# (read_committed, as the loader) reading the topic while it is written. Rows STAGE-consumer
# and STAGE-broker (STAGE: bare-pipeline unless given).
bare_pipeline() {
  local case="$1" rate="$2" size="$3" topic="$4" stage="${5:-bare-pipeline}" b0 t0 ppid
  b0=$(broker_ticks); t0=$(date +%s.%N)
  "$bin/bench-floor" produce --brokers "127.0.0.1:$broker_port" --topic "$topic" --count "$n1" --size "$size" --commit-ms 100 ${rate:+--rate "$rate"} >"$run/$case-$stage-producer.out" 2>&1 &
  ppid=$!
  measure "$case" "$stage-consumer" "$n1" "$bin/bench-floor" consume --brokers "127.0.0.1:$broker_port" --topic "$topic" --count "$n1"
  wait "$ppid" || echo "$case $stage producer failed; see $run/$case-$stage-producer.out" >&2
  other "$case" "$stage-broker" "$n1" "$broker_pid" "$b0" "$t0"
}

# bare_e2e CASE ROWS [LATENCY_MS]: the case with none of the project's own work in it, on
# a demo API of ROWS records of its own (LATENCY_MS per request): bench-floor e2e-extract
# (the API fetched as the bare fetch does, each page parsed by serde, each record written
# back as JSON and sent keyed by id through a transactional producer committing every
# 100 ms) and, started beside it, e2e-load (a read_committed consumer reading the
# partitions in turns as the loader does, each record parsed by serde and upserted into
# SQLite with its tags as child rows, 5,000 a transaction, offsets in the same
# transaction). Rows bare-e2e (wall from the start until both exit; CPU both processes'),
# bare-e2e-broker, bare-e2e-api.
bare_e2e() {
  local case="$1" rows="$2" topic="floor-e2e-$1" te="$run/time.e2e-extract.$$" tl="$run/time.e2e-load.$$"
  local keep_port=$api_port keep_pid=$api_pid b0 a0 t0 t1 lpid failed=0
  start_api "$rows" "${3:-0}"
  b0=$(broker_ticks); a0=$(cpu_ticks "$api_pid"); t0=$(date +%s.%N)
  /usr/bin/time -f "%e %U %S %M" -o "$tl" "$bin/bench-floor" e2e-load --brokers "127.0.0.1:$broker_port" \
    --topic "$topic" --count "$rows" --db "$run/floor-e2e-$case.db" >"$run/$case-bare-e2e-load.out" 2>&1 &
  lpid=$!
  /usr/bin/time -f "%e %U %S %M" -o "$te" "$bin/bench-floor" e2e-extract --base-url "http://127.0.0.1:$api_port" \
    --api-key "$API_KEY" --count "$rows" --brokers "127.0.0.1:$broker_port" --topic "$topic" \
    >"$run/$case-bare-e2e-extract.out" 2>&1 || failed=1
  wait "$lpid" || failed=1
  t1=$(date +%s.%N)
  if [ "$failed" = 1 ]; then
    echo "$case bare-e2e failed; see $run/$case-bare-e2e-extract.out and $run/$case-bare-e2e-load.out" >&2
    printf '%s\t%s\t%s\tFAILED\n' "$case" bare-e2e "$rows" >>"$results"
  else
    other "$case" bare-e2e-broker "$rows" "$broker_pid" "$b0" "$t0"
    other "$case" bare-e2e-api "$rows" "$api_pid" "$a0" "$t0"
    local ew eu es em lw lu ls lm
    read -r ew eu es em <"$te"
    read -r lw lu ls lm <"$tl"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" bare-e2e "$rows" \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" \
      "$(awk -v a="$eu" -v b="$es" -v c="$lu" -v d="$ls" 'BEGIN { print a + b + c + d }')" \
      "$((em > lm ? em : lm))" >>"$results"
  fi
  api_port=$keep_port; api_pid=$keep_pid
}

# A broker's first transactional producer waits about a second while the broker creates
# its transaction log (`__transaction_state`, 50 partitions): once per broker, not per run.
# A warm-up run of case 1's size pays it before anything is timed, and warms the broker's
# JVM somewhat (it was 1,000 records). The JVM goes on warming: on a fresh broker after one
# 100k warm-up run, three transactional runs of 100k took 0.82, 0.71 and 0.70 s, the
# idempotent runs between them 0.66, 0.65 and 0.63 s.
start_api "$n1" 0; config warmup "http://127.0.0.1:$api_port"
"$bin/extractor" --config "$run/warmup.toml" >"$run/warmup.out" 2>"$run/warmup.log"
# The consumer side too (fetches, group coordination), so that its code is compiled.
"$bin/loader" --config "$run/warmup.toml" --destination "sqlite://$run/warmup.db" --until-caught-up >"$run/warmup-loader.out" 2>"$run/warmup-loader.log"

# 1 + 2: first load and a merge re-run with 10% changed.
start_api "$n1" 0; config c1 "http://127.0.0.1:$api_port"; api1=$api_port
measure "1-first-load" extractor "$n1" "$bin/extractor" --config "$run/c1.toml"
# The cost of transactions (the default where the broker has them): the same first load
# from the same API as an idempotent producer, on a pipeline of its own.
config c1i "http://127.0.0.1:$api1"
measure "1-first-load" extractor-idempotent "$n1" "$bin/extractor" --config "$run/c1i.toml" --no-transactions
measure "1-first-load" loader "$n1" "$bin/loader" --config "$run/c1.toml" --destination "sqlite://$run/c1.db" --until-caught-up
curl -s -X POST -H 'content-type: application/json' -d '{"revision": 1, "changed_percent": 10}' "http://127.0.0.1:$api1/admin/state" >/dev/null
measure "2-merge-rerun" extractor "$n1" "$bin/extractor" --config "$run/c1.toml"
measure "2-merge-rerun" loader "$n1" "$bin/loader" --config "$run/c1.toml" --destination "sqlite://$run/c1.db" --until-caught-up

# 3: 20 ms per request.
start_api "$n3" 20; config c3 "http://127.0.0.1:$api_port"; api3=$api_port
measure "3-latency-20ms" extractor "$n3" "$bin/extractor" --config "$run/c3.toml"
measure "3-latency-20ms" loader "$n3" "$bin/loader" --config "$run/c3.toml" --destination "sqlite://$run/c3.db" --until-caught-up

# dlt's first load runs before the pipelines (with --dlt), so that the rate case 1 needs
# for 15x dlt is known right after case 1's pipeline (below).
if [ "$with_dlt" = 1 ]; then
  if ! .bench/venv/bin/python -c "import dlt, sqlalchemy" 2>/dev/null; then
    python3 -m venv .bench/venv
    .bench/venv/bin/pip install -q "dlt[sqlalchemy]==1.31.0" >.bench/pip.log 2>&1
  fi
  py=.bench/venv/bin/python
  start_api "$dlt_records" 0; d1=$api_port
  measure "1-first-load" dlt "$dlt_records" "$py" bench/dlt_run.py "http://127.0.0.1:$d1" "$run/dlt1.db" "$run/dlt-pipelines"
fi

# 1-3 as a deployment runs them: extractor and loader side by side, each case on its own
# pipeline (topics, group, database) and its own demo API.
start_api "$n1" 0; config p1 "http://127.0.0.1:$api_port"
pipeline "1-first-load" "$n1" "$run/p1.toml" "$run/p1.db"
# The same broker work from bare clients, right after (the broker in the same state): a
# bare pipeline at the rate this one reached, of messages of the records' average size,
# and (with --dlt) one at the rate case 1 needs for 15x dlt.
p1_rate=$(awk -F'\t' '$1 == "1-first-load" && $2 == "pipeline" && $4 != "FAILED" && $4 > 0 { printf "%d", $3 / $4 }' "$results")
p1_size=$(awk -v n="$n1" '/^total/ { for (i = 1; i <= NF; i++) if ($i ~ /^bytes=/) { split($i, a, "="); print int(a[2] / n * 0.6) } }' "$run/1-first-load-extractor.out")
[ -n "$p1_rate" ] && bare_pipeline "1-first-load" "$p1_rate" "${p1_size:-300}" floor-pair-p1
p1_target=$(awk -F'\t' '$1 == "1-first-load" && $2 == "dlt" && $4 != "FAILED" && $4 > 0 { printf "%d", 15 * $3 / $4 }' "$results")
[ -n "$p1_target" ] && bare_pipeline "1-first-load" "$p1_target" "${p1_size:-300}" floor-pair-p1t bare-pipeline-at-target
# Case 1 with nothing of the project's own in it, the broker in the same state.
bare_e2e "1-first-load" "$n1"
# And as fast as librdkafka and the broker go: the wall time of case 1's Kafka part alone
# (transactions every 100 ms, read_committed), without the API, Avro or SQLite.
bare_pipeline "1-first-load" "" "${p1_size:-300}" floor-pair-p1u bare-pipeline-unpaced
curl -s -X POST -H 'content-type: application/json' -d '{"revision": 1, "changed_percent": 10}' "http://127.0.0.1:$api_port/admin/state" >/dev/null
pipeline "2-merge-rerun" "$n1" "$run/p1.toml" "$run/p1.db"
start_api "$n3" 20; config p3 "http://127.0.0.1:$api_port"
pipeline "3-latency-20ms" "$n3" "$run/p3.toml" "$run/p3.db"
# Case 3 with nothing of the project's own in it, right after its pipeline.
bare_e2e "3-latency-20ms" "$n3" 20

# 4: the loader alone over a pre-filled topic of n4 records.
start_api "$n4" 0; config c4 "http://127.0.0.1:$api_port"
measure "4-prefill" extractor "$n4" "$bin/extractor" --config "$run/c4.toml"
# The cost of transactions over a longer run: the same n4 records as an idempotent producer.
config c4i "http://127.0.0.1:$api_port"
measure "4-prefill" extractor-idempotent "$n4" "$bin/extractor" --config "$run/c4i.toml" --no-transactions
measure "4-replay" loader-sqlite "$n4" "$bin/loader" --config "$run/c4.toml" --destination "sqlite://$run/c4.db" --until-caught-up
# The same replay with nothing of the project's own in it: case 4's records sent as JSON by
# `bench-floor e2e-extract` (not timed), then read back by `e2e-load` (read_committed, each
# partition from a queue of its own in turns of 100 as the loader reads, serde, the loader's
# SQLite writes with the same child rows and offsets): the floor of any loader of these
# records from Kafka into SQLite, beside the bare upsert (SQLite alone) below.
if "$bin/bench-floor" e2e-extract --base-url "http://127.0.0.1:$api_port" --api-key "$API_KEY" --count "$n4" \
  --brokers "127.0.0.1:$broker_port" --topic floor-e2e-replay >"$run/4-replay-bare-extract.out" 2>&1; then
  measure "4-replay" bare-load "$n4" "$bin/bench-floor" e2e-load --brokers "127.0.0.1:$broker_port" \
    --topic floor-e2e-replay --count "$n4" --db "$run/floor-e2e-replay.db"
else
  echo "4-replay: sending the JSON records failed; see $run/4-replay-bare-extract.out" >&2
  printf '%s\t%s\t%s\tFAILED\n' "4-replay" bare-load "$n4" >>"$results"
fi
if psql "$pg_url" -qc "DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench" >/dev/null 2>&1; then
  measure "4-replay" loader-postgres "$n4" "$bin/loader" --config "$run/c4.toml" --destination "$pg_url?schema=bench" --until-caught-up --group-id c4-pg
else
  echo "PostgreSQL at TEST_POSTGRES_URL unreachable: case 4 into PostgreSQL skipped" >&2
fi

# 5: floors. Message size = the records' average size on the wire.
size=$(awk -v n="$n4" '/^total/ { for (i = 1; i <= NF; i++) if ($i ~ /^bytes=/) { split($i, a, "="); print int(a[2] / n * 0.6) } }' "$run/4-prefill-extractor.out")
size=${size:-300}
# The broker's own CPU for each: what any client of it costs the broker at the least.
b0=$(broker_ticks); t0=$(date +%s.%N)
measure "5-floor" producer "$n4" "$bin/bench-floor" produce --brokers "127.0.0.1:$broker_port" --topic floor --count "$n4" --size "$size"
other "5-floor" producer-broker "$n4" "$broker_pid" "$b0" "$t0"
b0=$(broker_ticks); t0=$(date +%s.%N)
measure "5-floor" consumer "$n4" "$bin/bench-floor" consume --brokers "127.0.0.1:$broker_port" --topic floor --count "$n4"
other "5-floor" consumer-broker "$n4" "$broker_pid" "$b0" "$t0"
# The API's own ceiling: every page of case 1's API, 8 requests at a time (the extractor's
# page concurrency), each body read and dropped.
measure "5-floor" api-fetch "$n1" "$bin/bench-floor" fetch --base-url "http://127.0.0.1:$api1" --api-key "$API_KEY" --count "$n1"
# The same for case 3's API (20 ms per request): what its latency leaves at that concurrency.
measure "5-floor" api-fetch-20ms "$n3" "$bin/bench-floor" fetch --base-url "http://127.0.0.1:$api3" --api-key "$API_KEY" --count "$n3"
# The extractor's own work on case 1's records (parse, infer, encode), without HTTP or Kafka.
measure "5-floor" extract-cpu "$n1" "$bin/bench-encode" --count "$n1"
# Its wall and CPU are the seconds it timed itself on its one thread: making the pages
# (the demo API's work) is left out.
if secs=$(grep -o 'seconds=[0-9.]*' "$run/5-floor-extract-cpu.out" | cut -d= -f2) && [ -n "$secs" ]; then
  awk -F'\t' -v OFS='\t' -v s="$secs" '$1 == "5-floor" && $2 == "extract-cpu" && $4 != "FAILED" { $4 = s; $5 = s } 1' "$results" >"$results.tmp" && mv "$results.tmp" "$results"
fi
if [ "$broker" = kafka ]; then
  java_tool=(java -Xms256m -Xmx1g -Dlog4j2.configurationFile=scripts/kafka/log4j2.properties -cp "$kafka_libs/*")
  measure "5-floor" kafka-producer-perf "$n4" "${java_tool[@]}" org.apache.kafka.tools.ProducerPerformance \
    --bootstrap-server "127.0.0.1:$broker_port" --topic floor-java --num-records "$n4" \
    --record-size "$size" --throughput -1 \
    --command-property acks=all linger.ms=20 batch.size=1048576 enable.idempotence=true
  measure "5-floor" kafka-consumer-perf "$n4" "${java_tool[@]}" org.apache.kafka.tools.ConsumerPerformance \
    --bootstrap-server "127.0.0.1:$broker_port" --topic floor-java --num-records "$n4" --timeout 60000
fi
measure "5-floor" rusqlite-upsert "$n4" "$bin/bench-floor" upsert --db "$run/floor.db" --count "$n4"
measure "5-floor" rusqlite-upsert-children "$n4" "$bin/bench-floor" upsert --db "$run/floor-children.db" --count "$n4" --children
measure "5-floor" rusqlite-upsert-child-p6 "$n4" "$bin/bench-floor" upsert --db "$run/floor-children-p6.db" --count "$n4" --children --partitions 6

# 6: the Kafka Connect peer, beside the loader on the same records and table shape.
# connect_peer CASE ROWS TOPIC: a standalone worker with Debezium's JDBC sink upserts the
# topic's JSON records into PostgreSQL; timed until the table holds ROWS rows.
connect_peer() {
  local case="$1" rows="$2" topic="$3" dir="$run/connect-$1" table="bench_connect_${1//-/_}"
  local hz t0 t1 tf="" cf=0 nf=0 c1 hwm pid n deadline
  hz=$(getconf CLK_TCK)
  mkdir -p "$dir"
  psql "$pg_url" -qc "DROP TABLE IF EXISTS public.$table" >/dev/null 2>&1
  cat >"$dir/worker.properties" <<PROPS
bootstrap.servers=127.0.0.1:$broker_port
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=true
offset.storage.file.filename=$dir/offsets
plugin.path=$connect_plugins
listeners=http://127.0.0.1:$((broker_port + 2))
consumer.max.poll.records=5000
PROPS
  cat >"$dir/sink.properties" <<PROPS
name=bench-$case
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max=1
topics=$topic
connection.url=jdbc:${pg_jdbc}
connection.username=${pg_user}
connection.password=
insert.mode=upsert
primary.key.mode=record_value
primary.key.fields=id
schema.evolution=basic
collection.name.format=$table
batch.size=5000
transforms=flatten
transforms.flatten.type=org.apache.kafka.connect.transforms.Flatten\$Value
transforms.flatten.delimiter=__
PROPS
  t0=$(date +%s.%N)
  "${java_tool[@]}" org.apache.kafka.connect.cli.ConnectStandalone "$dir/worker.properties" \
    "$dir/sink.properties" >"$dir/connect.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  deadline=$((SECONDS + 1200))
  while :; do
    n=$(psql "$pg_url" -tAc "SELECT count(*) FROM public.$table" 2>/dev/null || echo 0)
    n=${n:-0}
    if [ -z "$tf" ] && [ "$n" -gt 0 ]; then tf=$(date +%s.%N); cf=$(cpu_ticks "$pid"); nf=$n; fi
    [ "$n" -ge "$rows" ] && break
    if [ $SECONDS -gt $deadline ] || ! kill -0 "$pid" 2>/dev/null; then
      echo "$case connect: $n of $rows rows; see $dir/connect.log" >&2
      kill "$pid" 2>/dev/null || true
      printf '%s\t%s\t%s\tFAILED\n' "$case" connect-jdbc "$rows" >>"$results"
      return 0
    fi
    sleep 0.25
  done
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid"); hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
  kill "$pid" 2>/dev/null || true
  # A worker's shutdown hung once (Jetty: "Unable to destroy ... IllegalStateException:
  # STARTED"): it gets 30 s, then it is killed.
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  awk -v c="$case" -v r="$rows" -v nf="$nf" -v t0="$t0" -v tf="$tf" -v t1="$t1" -v cf="$cf" -v c1="$c1" -v hz="$hz" -v m="$hwm" 'BEGIN {
    printf "%s\tconnect-jdbc\t%d\t%.2f\t%.2f\t%d\n", c, r, t1 - t0, c1 / hz, m
    printf "%s\tconnect-jdbc-steady\t%d\t%.2f\t%.2f\t%d\n", c, r - nf, t1 - tf, (c1 - cf) / hz, m
  }' >>"$results"
}
if [ "$with_connect" = 1 ] && [ "$broker" = kafka ] && psql "$pg_url" -qc "SELECT 1" >/dev/null 2>&1; then
  connect_plugins=$(scripts/ensure-connect.sh)
  # The same server as pg_url, as a JDBC URL (host, port, database; user separately).
  pg_user=$(echo "$pg_url" | sed -E 's#^postgres(ql)?://([^:@/]+).*#\2#')
  pg_jdbc="postgresql://$(echo "$pg_url" | sed -E 's#^postgres(ql)?://([^@]*@)?##')"
  start_api "$n1" 0; config c6 "http://127.0.0.1:$api_port"
  sed -i 's/^\[resource_defaults\]$/[resource_defaults]\nmax_table_nesting = 0/' "$run/c6.toml"
  # The same pipeline (its schema topic names the writer schemas), read by another group.
  sed 's/^\[resource_defaults\]$/[resource_defaults]\nmax_table_nesting = 0/' "$run/c4.toml" >"$run/c4flat.toml"
  measure "6-prefill" extractor "$n1" "$bin/extractor" --config "$run/c6.toml"
  measure "6-prefill" connect-json "$n1" "$bin/bench-floor" connect-json --brokers "127.0.0.1:$broker_port" --topic connect-100k --count "$n1"
  measure "6-prefill" connect-json "$n4" "$bin/bench-floor" connect-json --brokers "127.0.0.1:$broker_port" --topic connect-1m --count "$n4"
  for c in "6-connect-$n1:$n1:c6:connect-100k" "6-connect-$n4:$n4:c4flat:connect-1m"; do
    IFS=: read -r case rows cfg topic <<<"$c"
    schema="bench_${cfg}"
    psql "$pg_url" -qc "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null 2>&1
    measure "$case" loader-postgres-flat "$rows" "$bin/loader" --config "$run/$cfg.toml" --destination "$pg_url?schema=$schema" --until-caught-up --group-id "$cfg-pg"
    connect_peer "$case" "$rows" "$topic"
  done
fi

# dlt on cases 2-3 (its case 1 ran before the pipelines).
if [ "$with_dlt" = 1 ]; then
  curl -s -X POST -H 'content-type: application/json' -d '{"revision": 1, "changed_percent": 10}' "http://127.0.0.1:$d1/admin/state" >/dev/null
  measure "2-merge-rerun" dlt "$dlt_records" "$py" bench/dlt_run.py "http://127.0.0.1:$d1" "$run/dlt1.db" "$run/dlt-pipelines"
  start_api "$n3" 20
  measure "3-latency-20ms" dlt "$n3" "$py" bench/dlt_run.py "http://127.0.0.1:$api_port" "$run/dlt3.db" "$run/dlt-pipelines3"
fi

# The broker's work for messages sent at the rate case 1 needs for 15x dlt (with --dlt;
# without, case 1's extractor rate): a broker does more per message when batches are
# small, as they are at such a rate. Once transactional as the extractor is (its
# linger.ms, a commit every 100 ms once the open transaction is acknowledged), once
# idempotent, each 100k messages of the size of case 5.
floor_rate=$(awk -F'\t' '$1 == "1-first-load" && $2 == "dlt" && $4 != "FAILED" && $4 > 0 { printf "%d", 15 * $3 / $4 }' "$results")
floor_rate_of="15x dlt"
if [ -z "$floor_rate" ]; then
  floor_rate=$(awk -F'\t' '$1 == "1-first-load" && $2 == "extractor" && $4 != "FAILED" && $4 > 0 { printf "%d", $3 / $4 }' "$results")
  floor_rate_of="the extractor"
fi
if [ -n "$floor_rate" ]; then
  b0=$(broker_ticks); t0=$(date +%s.%N)
  measure "5-floor" producer-txn-at-rate "$n1" "$bin/bench-floor" produce --brokers "127.0.0.1:$broker_port" --topic floor-txn --count "$n1" --size "$size" --commit-ms 100 --rate "$floor_rate"
  other "5-floor" producer-txn-at-rate-broker "$n1" "$broker_pid" "$b0" "$t0"
  b0=$(broker_ticks); t0=$(date +%s.%N)
  measure "5-floor" producer-at-rate "$n1" "$bin/bench-floor" produce --brokers "127.0.0.1:$broker_port" --topic floor-rate --count "$n1" --size "$size" --rate "$floor_rate"
  other "5-floor" producer-at-rate-broker "$n1" "$broker_pid" "$b0" "$t0"
  bare_pipeline "5-floor" "$floor_rate" "$size" floor-pair
fi

echo
echo "machine: $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(date -u +%Y-%m-%dT%H:%MZ)"
# Another process's CPU changes every figure: the load average says whether there was one.
echo "load average (1, 5, 15 min): $load_start at the start, $(cut -d" " -f1-3 /proc/loadavg) at the end"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)'); broker: $broker$([ "$broker" = kafka ] && basename "$(dirname "$kafka_libs")" | sed 's/^/ (/; s/$/)/')"
printf '%-16s %-24s %9s %9s %10s %14s %9s\n' case stage rows wall_s rows/s cpu_s/100k peak_MB
awk -F'\t' '{
  if ($4 == "FAILED") { printf "%-16s %-24s %9s %9s\n", $1, $2, $3, "FAILED"; next }
  printf "%-16s %-24s %9d %9.2f %10.0f %14.2f %9.1f\n", $1, $2, $3, $4, $3 / ($4 > 0 ? $4 : 1e-9), $5 / $3 * 100000, $6 / 1024
}' "$results"
echo
echo "end to end = extractor + loader run one after the other (wall seconds add up):"
awk -F'\t' '$4 != "FAILED" && ($2 == "extractor" || $2 ~ /^loader/) && $1 !~ /^[46]/ {
  w[$1] += $4; c[$1] += $5; r[$1] = $3
} END { for (k in w) printf "  %-16s %9.2f s %10.0f rows/s %8.2f cpu_s/100k\n", k, w[k], r[k] / w[k], c[k] / r[k] * 100000 }' "$results" | sort
echo
echo "ratios (this run): pipeline = extractor and loader side by side"
awk -F'\t' -v n1="$n1" -v n3="$n3" -v cores="$(nproc)" -v floor_rate="${floor_rate:-0}" -v floor_rate_of="${floor_rate_of:-}" '$4 != "FAILED" {
  key = $1 "/" $2; rate[key] = $3 / ($4 > 0 ? $4 : 1e-9); cpu[key] = $5 / $3 * 100000
} END {
  split("1-first-load 2-merge-rerun 3-latency-20ms", cases, " ")
  for (i = 1; i <= 3; i++) {
    c = cases[i]
    if ((c "/pipeline") in rate && (c "/dlt") in rate)
      printf "  %-16s pipeline %.1fx dlt rows/s, CPU per row 1/%.1f of dlt\n", c, rate[c "/pipeline"] / rate[c "/dlt"], cpu[c "/dlt"] / cpu[c "/pipeline"]
  }
  if ("1-first-load/extractor-idempotent" in rate && "1-first-load/extractor" in rate)
    printf "  1-first-load     extractor with transactions %.0f%% of its rows/s as an idempotent producer\n", 100 * rate["1-first-load/extractor"] / rate["1-first-load/extractor-idempotent"]
  if ("4-prefill/extractor-idempotent" in rate && "4-prefill/extractor" in rate)
    printf "  4-prefill        extractor with transactions %.0f%% of its rows/s as an idempotent producer\n", 100 * rate["4-prefill/extractor"] / rate["4-prefill/extractor-idempotent"]
  if ("5-floor/api-fetch" in rate && "1-first-load/pipeline" in rate)
    printf "  1-first-load     pipeline %.0f%% of the bare API fetch, extractor stage %.0f%%\n", 100 * rate["1-first-load/pipeline"] / rate["5-floor/api-fetch"], 100 * rate["1-first-load/extractor"] / rate["5-floor/api-fetch"]
  if ("5-floor/api-fetch-20ms" in rate && "3-latency-20ms/extractor" in rate) {
    ideal = n3 / 100 * 0.020 / 8
    printf "  3-latency-20ms   extractor %.2fx the ideal %.2f s (pages x 20 ms / 8), the bare API fetch %.2fx it; pipeline %.0f%% of the bare fetch rows/s\n", n3 / rate["3-latency-20ms/extractor"] / ideal, ideal, n3 / rate["5-floor/api-fetch-20ms"] / ideal, 100 * rate["3-latency-20ms/pipeline"] / rate["5-floor/api-fetch-20ms"]
    if ("3-latency-20ms/dlt" in rate)
      printf "  3-latency-20ms   the bare API fetch alone %.1fx dlt rows/s\n", rate["5-floor/api-fetch-20ms"] / rate["3-latency-20ms/dlt"]
  }
  if ("1-first-load/bare-e2e" in rate && "1-first-load/dlt" in rate)
    printf "  1-first-load     bare end to end (HTTP, serde, librdkafka, SQLite with the same child rows; nothing of the project): %.1fx dlt rows/s, CPU per row of its two processes 1/%.1f of dlt\n", rate["1-first-load/bare-e2e"] / rate["1-first-load/dlt"], cpu["1-first-load/dlt"] / cpu["1-first-load/bare-e2e"]
  if ("3-latency-20ms/bare-e2e" in rate && "3-latency-20ms/dlt" in rate)
    printf "  3-latency-20ms   bare end to end (nothing of the project): %.1fx dlt rows/s; the pipeline %.0f%% of its rows/s, %.2fx its CPU per row\n", rate["3-latency-20ms/bare-e2e"] / rate["3-latency-20ms/dlt"], 100 * rate["3-latency-20ms/pipeline"] / rate["3-latency-20ms/bare-e2e"], cpu["3-latency-20ms/pipeline"] / cpu["3-latency-20ms/bare-e2e"]
  if ("1-first-load/bare-e2e" in rate && "1-first-load/pipeline" in rate)
    printf "  1-first-load     pipeline %.0f%% of the bare end to end rows/s, %.2fx its CPU per row (extractor + loader %.2f, bare %.2f; broker %.2f, bare %.2f; API %.2f, bare %.2f CPU s per 100k)\n", 100 * rate["1-first-load/pipeline"] / rate["1-first-load/bare-e2e"], cpu["1-first-load/pipeline"] / cpu["1-first-load/bare-e2e"], cpu["1-first-load/pipeline"], cpu["1-first-load/bare-e2e"], cpu["1-first-load/pipeline-broker"], cpu["1-first-load/bare-e2e-broker"], cpu["1-first-load/pipeline-api"], cpu["1-first-load/bare-e2e-api"]
  if ("5-floor/extract-cpu" in cpu && "1-first-load/extractor-idempotent" in cpu)
    printf "  1-first-load     extractor CPU per row %.1fx its own record work (parse, infer, encode: bench-encode), %.1fx as an idempotent producer\n", cpu["1-first-load/extractor"] / cpu["5-floor/extract-cpu"], cpu["1-first-load/extractor-idempotent"] / cpu["5-floor/extract-cpu"]
  # What case 1 at 15x dlt leaves for our code: the CPU seconds the machine has in
  # that wall time, less the floors of the parts outside it (the broker under a bare
  # producer and consumer, the API serving the records, and in our processes librdkafka,
  # HTTP and SQLite: the bare producer, consumer, API fetch and upsert with child rows).
  if ("1-first-load/dlt" in rate && "1-first-load/pipeline-api" in cpu && "5-floor/producer-broker" in cpu && "5-floor/rusqlite-upsert-children" in cpu) {
    budget = cores * 100000 / (15 * rate["1-first-load/dlt"])
    broker = cpu["5-floor/producer-broker"] + cpu["5-floor/consumer-broker"]
    inproc = cpu["5-floor/producer"] + cpu["5-floor/consumer"] + cpu["5-floor/api-fetch"] + cpu["5-floor/rusqlite-upsert-children"]
    printf "  1-first-load     pipeline CPU s per 100k: extractor + loader %.2f, broker %.2f, API %.2f (%d cores x %.2f s wall = %.2f)\n", cpu["1-first-load/pipeline"], cpu["1-first-load/pipeline-broker"], cpu["1-first-load/pipeline-api"], cores, 100000 / rate["1-first-load/pipeline"], cores * 100000 / rate["1-first-load/pipeline"]
    if ("1-first-load/pipeline-broker-jit" in cpu)
      printf "  1-first-load     broker CPU s per 100k in the pipeline %.2f, of which its JIT compiler threads %.2f (a long-running broker has compiled its code)\n", cpu["1-first-load/pipeline-broker"], cpu["1-first-load/pipeline-broker-jit"]
    printf "  1-first-load     at 15x dlt (%.2f s per 100k) the machine has %.2f CPU s; floors outside the project take %.2f (broker %.2f, API %.2f, librdkafka + HTTP + SQLite in our processes %.2f), leaving %.2f for our own code, which spends %.2f\n", 100000 / (15 * rate["1-first-load/dlt"]), budget, broker + cpu["1-first-load/pipeline-api"] + inproc, broker, cpu["1-first-load/pipeline-api"], inproc, budget - broker - cpu["1-first-load/pipeline-api"] - inproc, cpu["1-first-load/pipeline"] - inproc
    printf "  1-first-load     CPU per row 1/20 of dlt is %.2f s per 100k for extractor + loader; their floors outside the project (librdkafka, HTTP, SQLite) are %.2f\n", cpu["1-first-load/dlt"] / 20, inproc
    # The same with the broker floor for transactions at that rate in place
    # of its floor under a producer sending as fast as it can.
    if ("5-floor/producer-txn-at-rate-broker" in cpu) {
      txn = cpu["5-floor/producer-txn-at-rate-broker"] + cpu["5-floor/consumer-broker"]
      printf "  1-first-load     broker CPU s per 100k sent at %d rows/s (%s): under a bare transactional producer %.2f, a bare idempotent one %.2f (as fast as it can: %.2f); in the pipeline %.2f\n", floor_rate, floor_rate_of, cpu["5-floor/producer-txn-at-rate-broker"], cpu["5-floor/producer-at-rate-broker"], cpu["5-floor/producer-broker"], cpu["1-first-load/pipeline-broker"]
      printf "  1-first-load     with that transactional floor for the broker, the floors outside the project take %.2f of the %.2f CPU s at 15x dlt, leaving %.2f for our own code\n", txn + cpu["1-first-load/pipeline-api"] + inproc, budget, budget - txn - cpu["1-first-load/pipeline-api"] - inproc
    }
    if ("1-first-load/bare-pipeline-broker" in cpu)
      printf "  1-first-load     broker CPU s per 100k under a bare pipeline at the pipeline rate (%d rows/s), run right after it: %.2f; in the pipeline %.2f\n", rate["1-first-load/pipeline"], cpu["1-first-load/bare-pipeline-broker"], cpu["1-first-load/pipeline-broker"]
    # The broker floor in the pipeline state and at the rate the target needs.
    if ("1-first-load/bare-pipeline-at-target-broker" in cpu) {
      at = cpu["1-first-load/bare-pipeline-at-target-broker"]
      printf "  1-first-load     broker CPU s per 100k under a bare pipeline asked for 15x dlt (%d rows/s), right after the pipeline: %.2f (its consumer read %d rows/s)\n", 15 * rate["1-first-load/dlt"], at, rate["1-first-load/bare-pipeline-at-target-consumer"]
      printf "  1-first-load     with that floor for the broker, the floors outside the project take %.2f of the %.2f CPU s at 15x dlt, leaving %.2f for our own code, which spends %.2f\n", at + cpu["1-first-load/pipeline-api"] + inproc, budget, budget - at - cpu["1-first-load/pipeline-api"] - inproc, cpu["1-first-load/pipeline"] - inproc
    }
    if ("5-floor/bare-pipeline-broker" in cpu) {
      pair = cpu["5-floor/bare-pipeline-broker"]
      printf "  1-first-load     broker CPU s per 100k under a bare pipeline (that transactional producer and a bare consumer reading beside it): %.2f; in the pipeline %.2f\n", pair, cpu["1-first-load/pipeline-broker"]
      printf "  1-first-load     with the bare pipeline as the broker floor, the floors outside the project take %.2f of the %.2f CPU s at 15x dlt, leaving %.2f for our own code, which spends %.2f\n", pair + cpu["1-first-load/pipeline-api"] + inproc, budget, budget - pair - cpu["1-first-load/pipeline-api"] - inproc, cpu["1-first-load/pipeline"] - inproc
      if ("5-floor/bare-pipeline-broker-jit" in cpu) {
        net = pair - cpu["5-floor/bare-pipeline-broker-jit"]
        printf "  1-first-load     the same without the JIT compilation in the broker (%.2f of %.2f): the floors outside the project take %.2f, leaving %.2f for our own code\n", cpu["5-floor/bare-pipeline-broker-jit"], pair, net + cpu["1-first-load/pipeline-api"] + inproc, budget - net - cpu["1-first-load/pipeline-api"] - inproc
      }
    }
  }
  if ("1-first-load/bare-pipeline-unpaced-consumer" in rate && "1-first-load/dlt" in rate)
    printf "  1-first-load     the bare pipeline as fast as it goes (its consumer timed from its start to the last record): %.2f s for %d records, %.1fx dlt rows/s; 15x dlt needs %.2f s, the pipeline took %.2f s\n", n1 / rate["1-first-load/bare-pipeline-unpaced-consumer"], n1, rate["1-first-load/bare-pipeline-unpaced-consumer"] / rate["1-first-load/dlt"], n1 / (15 * rate["1-first-load/dlt"]), n1 / rate["1-first-load/pipeline"]
  if ("5-floor/consumer" in rate && "1-first-load/pipeline" in rate)
    printf "  1-first-load     pipeline %.0f%% of the bare consumer, loader stage %.0f%%\n", 100 * rate["1-first-load/pipeline"] / rate["5-floor/consumer"], 100 * rate["1-first-load/loader"] / rate["5-floor/consumer"]
  for (k in rate) if (k ~ /^6-connect-[0-9]+\/loader-postgres-flat$/) {
    c = substr(k, 1, index(k, "/") - 1)
    if ((c "/connect-jdbc-steady") in rate)
      printf "  %-16s loader-postgres %.1fx the Kafka Connect JDBC sink rows/s (steady; %.1fx from its start), CPU per row 1/%.1f of it\n", c, rate[k] / rate[c "/connect-jdbc-steady"], rate[k] / rate[c "/connect-jdbc"], cpu[c "/connect-jdbc-steady"] / cpu[k]
  }
  if ("5-floor/rusqlite-upsert" in cpu && "4-replay/loader-sqlite" in cpu)
    printf "  4-replay         loader-sqlite CPU per row %.1fx the bare upsert\n", cpu["4-replay/loader-sqlite"] / cpu["5-floor/rusqlite-upsert"]
  if ("5-floor/rusqlite-upsert-children" in cpu && "4-replay/loader-sqlite" in cpu)
    printf "  4-replay         loader-sqlite CPU per row %.1fx the bare upsert with the same child rows\n", cpu["4-replay/loader-sqlite"] / cpu["5-floor/rusqlite-upsert-children"]
  if ("4-replay/bare-load" in cpu && "4-replay/loader-sqlite" in cpu)
    printf "  4-replay         loader-sqlite CPU per row %.2fx the bare load (Kafka in turns, serde, the same SQLite writes; nothing of the project), rows/s %.0f%% of it\n", cpu["4-replay/loader-sqlite"] / cpu["4-replay/bare-load"], 100 * rate["4-replay/loader-sqlite"] / rate["4-replay/bare-load"]
  if ("4-replay/bare-load" in cpu && "5-floor/rusqlite-upsert-children" in cpu)
    printf "  4-replay         the bare load CPU per row %.1fx the bare upsert with the same child rows\n", cpu["4-replay/bare-load"] / cpu["5-floor/rusqlite-upsert-children"]
  if ("5-floor/rusqlite-upsert-child-p6" in cpu && "4-replay/loader-sqlite" in cpu)
    printf "  4-replay         loader-sqlite CPU per row %.1fx the same, rows in the order the broker delivers them\n", cpu["4-replay/loader-sqlite"] / cpu["5-floor/rusqlite-upsert-child-p6"]
}' "$results"
