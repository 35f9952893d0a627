#!/usr/bin/env bash
# How the order in which the loader gets a replay's records from the broker shapes its
# SQLite work (issue 12, item 4): one topic of N records (6 partitions) is replayed into a
# fresh SQLite file by the release loader under each consumer variant, in turns, R rounds.
# Per run: wall and CPU seconds, and (in a second run under strace) the SQLite file's
# pwrite64/pread64 calls; from the loader's debug log, how many partitions a batch covers.
#
#   scripts/bench-fetch-order.sh [--broker kafka|tansu] [--records N] [--rounds R] [VARIANT...]
#
# A VARIANT is NAME or NAME:key=value,key=value (librdkafka settings for the loader, through
# RDKAFKA_* environment variables; an UPPER_CASE key is passed as an environment variable as
# it is; `bin=PATH` runs another loader build, e.g. one saved from an earlier commit); default: `default` and max.partition.fetch.bytes of
# 64 KiB and 256 KiB. Everything lives in .bench/fetch-order/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
. scripts/lib.sh

broker=kafka; records=200000; rounds=2; variants=()
while [ $# -gt 0 ]; do
  case "$1" in
    --broker) broker="$2"; shift ;;
    --records) records="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    -*) echo "unknown flag $1" >&2; exit 2 ;;
    *) variants+=("$1") ;;
  esac
  shift
done
[ ${#variants[@]} -gt 0 ] || variants=(default "pfb64k:max.partition.fetch.bytes=65536" "pfb256k:max.partition.fetch.bytes=262144")

cargo build --release --locked --bins >&2
bin=target/release
run=.bench/fetch-order
rm -rf "$run" && mkdir -p "$run"
export API_KEY="bench-$RANDOM$RANDOM"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

port=$((19300 + RANDOM % 300)); api_port=$((18700 + RANDOM % 300))
case "$broker" in
  kafka)
    KAFKA_HEAP_OPTS="-Xms1g -Xmx1g" scripts/kafka-broker.sh "$run/kafka" "$port" $((port + 1)) >"$run/broker.log" 2>&1 &
    pids+=($!) ;;
  tansu)
    scripts/ensure-tansu.sh
    (cd "$run" && exec tansu broker --storage-engine sqlite://tansu.db \
      --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" >broker.log 2>&1) &
    pids+=($!) ;;
  *) echo "--broker kafka|tansu" >&2; exit 2 ;;
esac
DEMO_API_KEY="$API_KEY" "$bin/demo-api" --listen "127.0.0.1:$api_port" --records "$records" >"$run/api.out" 2>"$run/api.log" &
pids+=($!)
wait_port "$port"; wait_port "$api_port"

seed_config fetchorder "127.0.0.1:$port" "http://127.0.0.1:$api_port" >"$run/p.toml"
"$bin/extractor" --config "$run/p.toml" >"$run/extractor.out" 2>"$run/extractor.log"

# env_of VARIANT: the RDKAFKA_* assignments of its settings.
env_of() {
  local spec="${1#*:}"
  [ "$spec" = "$1" ] && return 0
  local IFS=,
  for kv in $spec; do
    local k="${kv%%=*}" v="${kv#*=}"
    # An upper-case name is an environment variable of the loader's own.
    if [[ "$k" =~ ^[A-Z_]+$ ]]; then printf '%s=%s\n' "$k" "$v"; continue; fi
    [ "$k" = bin ] && continue
    k="${k//_/__}"; k="${k//./_}"
    printf 'RDKAFKA_%s=%s\n' "${k^^}" "$v"
  done
}

printf '%-10s %5s %8s %8s %10s %9s %9s %14s\n' variant round wall_s cpu_s pwrite64 pread64 fsync partitions/batch
for r in $(seq 1 "$rounds"); do
  for v in "${variants[@]}"; do
    name="${v%%:*}"; mapfile -t envs < <(env_of "$v")
    loader_bin="$bin/loader"
    if [[ "$v" =~ (^|[:,])bin=([^,]*) ]]; then loader_bin="${BASH_REMATCH[2]}"; fi
    db="$run/$name-$r.db"; tdb="$run/$name-$r-trace.db"
    env "${envs[@]}" RUST_LOG=loader=debug /usr/bin/time -f "%e %U %S" -o "$run/time" \
      "$loader_bin" --config "$run/p.toml" --destination "sqlite://$db" --until-caught-up \
      --group-id "fo-$name-$r" >"$run/$name-$r.out" 2>"$run/$name-$r.log"
    read -r wall user sys <"$run/time"
    env "${envs[@]}" strace -f -c -e trace=pwrite64,pread64,fsync -o "$run/$name-$r.strace" \
      "$loader_bin" --config "$run/p.toml" --destination "sqlite://$tdb" --until-caught-up \
      --group-id "fo-$name-$r-trace" >/dev/null 2>&1
    calls() { awk -v s="$1" '$NF == s { print $4 }' "$run/$name-$r.strace"; }
    per_batch=$(awk '/batch written/ { for (i = 1; i <= NF; i++) if ($i ~ /^partitions=/) { split($i, a, "="); n++; t += a[2] } } END { if (n) printf "%.2f", t / n; else print "-" }' "$run/$name-$r.log")
    printf '%-10s %5s %8.2f %8.2f %10s %9s %9s %14s\n' "$name" "$r" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" \
      "$(calls pwrite64)" "$(calls pread64)" "$(calls fsync)" "$per_batch"
  done
done
echo "broker: $broker, records: $records, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD)"
